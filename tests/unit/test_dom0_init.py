"""dom0/__init__.py: the version a user sees is pyproject.toml's, and the Debian package's private copies of the
disk-image readers are used only when this Python has none (tests/integration/test_package.py installs both ways)."""

from __future__ import annotations

import importlib
import secrets
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from unitkit import dom0

import dom0 as package

REPO = Path(__file__).resolve().parents[2]


def test_version_is_pyprojects() -> None:
    with (REPO / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    r = dom0("--version")
    assert (r.rc, r.out) == (0, f"dom0 {version}\n")
    assert package.__version__ == version


@pytest.fixture
def import_path() -> Iterator[list[str]]:
    """sys.path, put back as it was (and modules imported from it forgotten) after the test."""
    saved = list(sys.path)
    before = set(sys.modules)
    yield sys.path
    sys.path[:] = saved
    for name in set(sys.modules) - before:
        del sys.modules[name]
    importlib.invalidate_caches()


def _private_copy(directory: Path) -> str:
    """A namespace package with one module, shaped like dissect.volume, that no installed Python has."""
    name = f"dom0probe{secrets.token_hex(4)}"
    (directory / name).mkdir(parents=True)
    (directory / name / "volume.py").write_text("READER = 'private copy'\n")
    return name


def test_private_copies_are_appended_when_the_system_has_none(tmp_path: Path, import_path: list[str]) -> None:
    name = _private_copy(tmp_path)
    assert package.use_private_libraries(str(tmp_path), probe=f"{name}.volume")
    assert import_path[-1] == str(tmp_path)  # after everything the system has
    assert importlib.import_module(f"{name}.volume").READER == "private copy"
    assert not package.use_private_libraries(str(tmp_path), probe=f"{name}.volume")  # once only
    assert import_path.count(str(tmp_path)) == 1


def test_the_systems_copy_wins(tmp_path: Path, import_path: list[str]) -> None:
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "__init__.py").write_text("raise ImportError('the private copy was used')\n")
    before = list(import_path)
    assert not package.use_private_libraries(str(tmp_path), probe="json")
    assert import_path == before


def test_no_private_directory_changes_nothing(tmp_path: Path, import_path: list[str]) -> None:
    before = list(import_path)
    assert not package.use_private_libraries(str(tmp_path / "absent"), probe="dom0probe_absent.volume")
    assert import_path == before
