"""`make man`: dom0's manual pages into a directory (default build/man): dom0(1) and one page per command,
generated from the parser the command itself uses (dom0.cli.manpage), plus the hand-written section-5 pages in man/.

    scripts/manpages.py [DIRECTORY]

The date on the pages is $SOURCE_DATE_EPOCH's when set (reproducible builds), else today's; the version is
pyproject.toml's (setup.py runs this while building a wheel, before any dom0 is installed).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import tomllib
from pathlib import Path

from dom0.cli.main import build_parser
from dom0.cli.manpage import pages

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else REPO / "build" / "man"
    out.mkdir(parents=True, exist_ok=True)
    when = time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH", time.time())))
    with (REPO / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    for page in pages(build_parser(), date=time.strftime("%Y-%m-%d", when), version=version):
        (out / page.name).write_text(page.text)
    for written in sorted((REPO / "man").glob("*.5")):
        shutil.copyfile(written, out / written.name)
    print(f"manual pages written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
