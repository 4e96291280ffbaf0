"""What is not a disk image, given where one is expected: one line with a hint, exit 1, no hang, nothing written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from unitkit import dom0

MiB = 1024 * 1024


def _refused(*args: str) -> list[str]:
    result = dom0("image", *args, timeout=20)
    assert result.rc == 1, result
    lines = result.err.splitlines()
    assert len(lines) == 2, result.err
    assert lines[1].startswith("  hint: ")
    return lines


@pytest.mark.parametrize("verb", ["inspect", "extract", "wrap", "kernel"])
def test_a_symlink_loop_as_the_image(tmp_path: Path, verb: str) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    out = str(tmp_path / "out")
    extra = {"extract": ["--partition", "1", "-o", out], "wrap": ["-o", out], "kernel": ["-o", out]}
    lines = _refused(verb, str(tmp_path / "a"), *extra.get(verb, []))
    assert lines[0] == f"dom0: error: {tmp_path}/a: too many levels of symbolic links (a symlink loop)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


@pytest.mark.parametrize("verb", ["extract", "wrap"])
def test_a_directory_where_a_disk_image_is_expected(tmp_path: Path, verb: str) -> None:
    extra = ["--partition", "1"] if verb == "extract" else []
    lines = _refused(verb, str(tmp_path), *extra, "-o", str(tmp_path / "out.img"))
    assert lines[0] == f"dom0: error: {tmp_path} is a directory, not a disk image"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("verb", ["inspect", "extract", "wrap"])
def test_fifo_and_character_device_as_the_image_do_not_hang(tmp_path: Path, verb: str) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    extra = (["--partition", "1"] if verb == "extract" else []) + (
        ["-o", str(tmp_path / "o")] if verb != "inspect" else []
    )
    assert _refused(verb, str(fifo), *extra)[0] == f"dom0: error: {fifo} is a FIFO, not a disk image"
    for raw in ([], ["--format", "raw"]):
        lines = _refused(verb, *raw, "/dev/zero", *extra)
        assert lines[0] == "dom0: error: /dev/zero is a character device, not a disk image"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]


def test_a_backing_dir_that_is_not_a_directory(tmp_path: Path) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * MiB)
    lines = _refused("inspect", "--backing-dir", str(tmp_path / "nope"), str(img))
    assert lines[0] == f"dom0: error: --backing-dir {tmp_path}/nope is not a directory"
