"""The two build steps pyproject.toml cannot declare (it holds everything else, the version included), and the
licence (see pyproject.toml for why it is given here):

- dom0/VERSION: pyproject.toml's version, which dom0/__init__.py reads (cheaper than importlib.metadata at every
  start), in the wheel, or in src/dom0 for an editable install (which runs src/ itself; .gitignore has it);
- the manual pages, share/man/man1 and man5: dom0(1) and a page per command generated from the parser the command
  parses with (scripts/manpages.py), plus the hand-written man/*.5, beside the data files pyproject.toml lists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.install_data import install_data
except ImportError:  # setuptools before 70 (Debian 12 has 66) keeps it in distutils
    from distutils.command.install_data import install_data

HERE = Path(__file__).resolve().parent


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        package = (
            Path(self.get_package_dir("dom0"))
            if getattr(self, "editable_mode", False)
            else Path(self.build_lib) / "dom0"
        )
        (package / "VERSION").write_text(self.distribution.get_version() + "\n")


class InstallData(install_data):
    def run(self) -> None:
        pages = Path(self.get_finalized_command("build").build_base) / "man-pages"
        shutil.rmtree(pages, ignore_errors=True)  # no page of a command that no longer exists
        # its own interpreter and only the standard library: the parser imports no dependency
        env = {**os.environ, "PYTHONPATH": str(HERE / "src")}
        subprocess.run([sys.executable, str(HERE / "scripts" / "manpages.py"), str(pages)], env=env, check=True)
        self.data_files = [
            *(self.data_files or []),
            ("share/man/man1", sorted(str(p) for p in pages.glob("*.1"))),
            ("share/man/man5", sorted(str(p) for p in pages.glob("*.5"))),
        ]
        super().run()


setup(license="GPL-2.0-or-later", cmdclass={"build_py": BuildPy, "install_data": InstallData})
