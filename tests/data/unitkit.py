"""Helpers for the fast tests: run the real `dom0` console script, and compare output with golden files.

Set DOM0_UPDATE_GOLDEN=1 to rewrite the golden files from the current output instead of comparing.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dom0 import run

DATA = Path(__file__).resolve().parent
GOLDEN = DATA / "golden"
# The console script of the venv running the tests, so the tests exercise what users run.
DOM0 = Path(sys.executable).parent / "dom0"


@dataclass(frozen=True, slots=True)
class Result:
    """What a `dom0` run left: exit code and both streams as text."""

    rc: int
    out: str
    err: str


def dom0(*args: str, timeout: float = 60) -> Result:
    """Run `dom0 ARGS` with stdin not a terminal (an empty pipe), as in cron or CI."""
    proc = run.run([str(DOM0), *args], check=False, input=b"", timeout=timeout)
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


# libvirt's test driver reports the wall clock as every guest's CPU time, so those fields change every run.
_SECONDS = re.compile(r"\b\d{9,}\.\d\b")
_DURATION = re.compile(r"\b\d+ d \d+ h\b")


def mask_cpu_time(text: str) -> str:
    """Replace the test driver's ever-changing CPU times with placeholders, and collapse table padding.

    Padding depends on the width of the masked values, so runs of 2+ spaces become exactly two; column
    alignment is checked on the raw output by a separate test.
    """
    text = _SECONDS.sub("<seconds>", text)
    text = _DURATION.sub("<duration>", text)
    return "\n".join(re.sub(r"(?<=\S) {2,}", "  ", line) for line in text.splitlines()) + "\n"


def check_golden(name: str, actual: str) -> None:
    """Assert `actual` equals tests/data/golden/NAME, or rewrite that file when DOM0_UPDATE_GOLDEN is set."""
    path = GOLDEN / name
    if os.environ.get("DOM0_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    assert path.exists(), f"{path} is missing; run with DOM0_UPDATE_GOLDEN=1 to create it"
    expected = path.read_text()
    assert actual == expected, f"output differs from {path} (DOM0_UPDATE_GOLDEN=1 rewrites it after review)"


def inspected_applications(root: Path) -> dict[str, Any]:
    """`dom0 image inspect ROOT --applications --json`'s applications of its first OS (the run must succeed)."""
    r = dom0("image", "inspect", str(root), "--applications", "--json")
    assert r.rc == 0, r.err
    assert "Traceback" not in r.err
    apps: dict[str, Any] = json.loads(r.out)["operating_systems"][0]["applications"]
    return apps
