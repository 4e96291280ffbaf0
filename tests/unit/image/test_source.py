"""ImageSource: bounded reads, windows, file objects for dissect, holes, and qcow2 backing chains that misbehave."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dom0 import run
from dom0.errors import Dom0Error
from dom0.image.source import BytesSource, MappedSource, open_image

MiB = 1024 * 1024


def test_reads_stop_at_the_end() -> None:
    src = BytesSource(b"0123456789")
    assert src.read_at(8, 100) == b"89"
    assert src.read_at(10, 5) == b""
    assert src.read_at(-1, 5) == b""
    win = src.window(2, 5)
    assert (win.size, win.read_at(0, 100)) == (5, b"23456")
    assert win.window(1, 2).read_at(0, 10) == b"34"


def test_window_outside_is_an_error() -> None:
    with pytest.raises(Dom0Error, match="lies outside the image"):
        BytesSource(b"x" * 10).window(5, 6)


def test_as_file_seeks_and_reads() -> None:
    fh = BytesSource(bytes(range(256)) * 4).as_file()
    fh.seek(250)
    assert fh.read(4) == bytes([250, 251, 252, 253])
    assert fh.tell() == 254
    fh.seek(-2, os.SEEK_END)
    assert fh.read(10) == bytes([254, 255])
    assert fh.read(10) == b""


def test_mapped_source_stitches_runs_and_zero_fills_gaps() -> None:
    disk = BytesSource(b"A" * 100 + b"B" * 100)
    mapped = MappedSource("lv", 60, [(0, 20, disk, 150), (40, 20, disk, 10)])
    assert mapped.read_at(0, 60) == b"B" * 20 + b"\0" * 20 + b"A" * 20
    assert mapped.read_at(15, 10) == b"B" * 5 + b"\0" * 5
    assert list(mapped.data_extents()) == [(0, 20), (40, 20)]


def test_data_extents_skip_holes(tmp_path: Path) -> None:
    path = tmp_path / "sparse.img"
    with path.open("wb") as fh:
        fh.truncate(16 * MiB)
        fh.seek(4 * MiB)
        fh.write(b"x" * 4096)
    with open_image(path) as src:
        extents = list(src.data_extents())
        assert sum(n for _, n in extents) < 1 * MiB
        assert any(start <= 4 * MiB < start + n for start, n in extents)
        # a window reports the same data at its own offsets
        win = src.window(2 * MiB, 4 * MiB)
        assert any(start <= 2 * MiB < start + n for start, n in win.data_extents())


def test_directory_missing_and_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Dom0Error, match="is a directory, not a disk image"):
        open_image(tmp_path)
    with pytest.raises(Dom0Error, match="no such file"):
        open_image(tmp_path / "missing.img")
    img = tmp_path / "x.img"
    img.write_bytes(b"\0" * 1024)

    def denied(*_args: object, **_kw: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(Dom0Error, match="permission denied") as err:
        open_image(img)
    assert "run as root or add read permission" in err.value.hint


def _qcow2(path: Path, backing: str | None = None, fmt: str = "raw") -> Path:
    cmd = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing:
        cmd += ["-u", "-b", backing, "-F", fmt]
    run.run([*cmd, str(path), "4M"])
    return path


def test_qcow2_over_a_raw_base_in_another_directory(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    raw = tmp_path / "base" / "disk.raw"
    raw.write_bytes(b"BASE" * 1024 * 1024)
    (tmp_path / "top").mkdir()
    top = _qcow2(tmp_path / "top" / "over.qcow2", "../base/disk.raw")
    with pytest.raises(Dom0Error, match="is outside"):
        open_image(top)
    with open_image(top, backing_dirs=[tmp_path / "base"]) as src:
        assert src.kind == "qcow2 image"
        assert src.read_at(4 * MiB - 4, 4) == b"BASE"


def test_qcow2_chain_that_loops(tmp_path: Path) -> None:
    a = _qcow2(tmp_path / "a.qcow2")
    _qcow2(tmp_path / "b.qcow2", "a.qcow2", "qcow2")
    run.run(["qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", str(a)])
    with pytest.raises(Dom0Error, match="backing chain loops"):
        open_image(a)


def test_qcow2_backing_missing_or_absolute(tmp_path: Path) -> None:
    rel = _qcow2(tmp_path / "rel.qcow2", "gone.raw")
    with pytest.raises(Dom0Error, match="not found next to it") as err:
        open_image(rel)
    assert "qemu-img rebase" in err.value.hint
    absent = _qcow2(tmp_path / "abs.qcow2", "/nonexistent/dom0-base.raw")
    with pytest.raises(Dom0Error, match=r"backing file /nonexistent/dom0-base\.raw is outside"):
        open_image(absent)
    with pytest.raises(Dom0Error, match=r"not found$"):
        open_image(absent, backing_dirs=["/"])
    real = tmp_path / "real.raw"
    real.write_bytes(b"R" * 4 * MiB)
    present = _qcow2(tmp_path / "abs2.qcow2", str(real))
    with open_image(present) as src:
        assert src.read_at(0, 1) == b"R"


def test_damaged_qcow2_header(tmp_path: Path) -> None:
    bad = tmp_path / "bad.qcow2"
    bad.write_bytes(b"QFI\xfb" + b"\0\0\0\x07" + bytes(100))
    with pytest.raises(Dom0Error, match="unsupported qcow2 version 7"):
        open_image(bad)
    short = tmp_path / "short.qcow2"
    short.write_bytes(b"QFI\xfb\0\0")
    with pytest.raises(Dom0Error, match="truncated qcow2 header"):
        open_image(short)


def test_block_device(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("attaching a loop device needs root")
    img = tmp_path / "dev.img"
    img.write_bytes(b"\0" * 512 + b"BLOCK" + b"\0" * (MiB - 517))
    loop = run.output(["losetup", "-f", "--show", "-r", str(img)]).strip()
    try:
        with open_image(loop) as src:
            assert (src.kind, src.size) == ("block device", MiB)
            assert src.read_at(512, 5) == b"BLOCK"
    finally:
        run.run(["losetup", "-d", loop], check=False)
