"""`dom0 save` / `dom0 restore` refusals through the real command: one line (+ hint), the right exit code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from unitkit import Result, dom0

T = "test:///default"


def _error(r: Result, rc: int, message: str, hint: str | None = None) -> None:
    assert r.rc == rc, (r.rc, r.err)
    assert r.out == ""
    assert "Traceback" not in r.err
    lines = r.err.splitlines()
    assert lines[0].startswith("dom0: error: ")
    assert message in lines[0]
    if hint is None:
        assert len(lines) == 1, r.err
    else:
        assert len(lines) == 2, r.err
        assert lines[1].strip().startswith("hint: ")
        assert hint in lines[1]


def _abandoned_work_dir(directory: Path) -> Path:
    work = directory / ".dom0-save-web1-k3x9q1"
    work.mkdir()
    os.mkfifo(work / "stream", 0o600)
    (work / "lock").write_bytes(b"")
    return work


def test_save_without_guests_or_all_is_a_usage_error(tmp_path: Path) -> None:
    r = dom0("-c", T, "save", "-d", str(tmp_path / "saves"))
    _error(r, 2, "name the guests to save, or --all")
    assert not (tmp_path / "saves").exists()


def test_save_with_guests_and_all_is_a_usage_error(tmp_path: Path) -> None:
    _error(dom0("-c", T, "save", "test", "--all", "-d", str(tmp_path)), 2, "not both")


def test_restore_with_files_and_all_is_a_usage_error(tmp_path: Path) -> None:
    r = dom0("-c", T, "restore", str(tmp_path / "web1.manifest.json"), "--all", str(tmp_path))
    _error(r, 2, "give images or --all DIR, not both")


def test_restore_without_anything_is_a_usage_error() -> None:
    _error(dom0("-c", T, "restore"), 2, "or --all DIR")


def test_restore_usage_error_changes_nothing(tmp_path: Path) -> None:
    work = _abandoned_work_dir(tmp_path)
    r = dom0("-c", T, "restore", str(tmp_path / "web1.manifest.json"), "--all", str(tmp_path))
    assert r.rc == 2
    assert work.exists()


@pytest.mark.parametrize(
    ("compress", "level", "low", "high"),
    [("zstd", "40", 1, 19), ("zstd", "0", 1, 19), ("gzip", "10", 1, 9), ("lz4", "17", 0, 16), ("none", "1", 0, 0)],
)
def test_save_level_out_of_range_names_the_range(
    tmp_path: Path, compress: str, level: str, low: int, high: int
) -> None:
    target = tmp_path / "saves"
    r = dom0("-c", T, "save", "--all", "--compress", compress, "--level", level, "-d", str(target))
    _error(r, 2, f"{compress} has no level {level}", f"from {low} to {high}")
    assert not target.exists()


def test_save_level_40_with_a_named_guest(tmp_path: Path) -> None:
    _error(dom0("-c", T, "save", "test", "--level", "40", "-d", str(tmp_path)), 2, "zstd has no level 40", "1 to 19")


def test_save_on_a_driver_that_cannot_save_says_so(tmp_path: Path) -> None:
    r = dom0("-c", T, "save", "test", "-d", str(tmp_path))
    _error(r, 1, "test:///default cannot save guests", "QEMU or Xen")


def test_save_of_an_unknown_guest_names_it(tmp_path: Path) -> None:
    _error(dom0("-c", T, "save", "no-such-guest", "-d", str(tmp_path)), 1, "no-such-guest", "dom0 list --all")


def test_save_dry_run_checks_even_before_the_directory_exists(tmp_path: Path) -> None:
    # The default directory does not exist before the first save: the dry run must still say what would fail.
    r = dom0("-c", T, "save", "--all", "--dry-run", "-d", str(tmp_path / "new"))
    _error(r, 1, "test:///default cannot save guests", "QEMU or Xen")


def test_restore_of_a_missing_manifest_names_it(tmp_path: Path) -> None:
    path = tmp_path / "web1.manifest.json"
    _error(dom0("-c", T, "restore", str(path)), 1, f"{path} does not exist", "NAME.manifest.json")


def test_restore_all_of_a_missing_directory_names_it(tmp_path: Path) -> None:
    _error(dom0("-c", T, "restore", "--all", str(tmp_path / "nope")), 1, "nope does not exist", "dom0 save -d")


def test_restore_of_a_compressed_image_without_manifest_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "web1.save.zst"
    image.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(100))
    _error(dom0("-c", T, "restore", str(image)), 1, "compressed but has no manifest", "manifest.json")
    assert image.exists()  # a refused image is never removed


@pytest.mark.parametrize(
    "command",
    [("save", "--all", "-d"), ("save", "--all", "--dry-run", "-d"), ("restore", "--all"), ("host", "stop", "--dir")],
)
def test_a_save_directory_others_can_write_to_is_refused(tmp_path: Path, command: tuple[str, ...]) -> None:
    saves = tmp_path / "saves"
    saves.mkdir()
    work = _abandoned_work_dir(saves)
    saves.chmod(0o777)
    r = dom0("-c", T, *command, str(saves))
    _error(r, 1, f"{saves} is writable by other users (mode 0777)", f"chmod go-w {saves}")
    assert work.exists()  # its leftovers are not touched either


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"format_version": 1, "name": ["web1"]}', "name should be text"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_restore_of_a_hostile_manifest_is_one_line_with_a_hint(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "web1.manifest.json"
    path.write_text(text)
    r = dom0("-c", T, "restore", str(path))
    assert r.rc == 1, r.err
    assert "Traceback" not in r.err
    lines = r.err.splitlines()
    assert message in lines[0]
    assert str(path) in lines[0]
    assert len(lines) == 2
    assert lines[1].strip().startswith("hint: ")
