"""Recognising a swap disk from the host by its signature."""

from __future__ import annotations

from pathlib import Path

import pytest

from dom0 import run
from dom0.image.swapsig import SwapProbe, has_signature, probe_path
from dom0.model import Disk, DiskSource


def _image(path: Path, magic: bytes, page: int, size: int = 1 << 20) -> Path:
    data = bytearray(size)
    data[page - len(magic) : page] = magic
    path.write_bytes(bytes(data))
    return path


def test_a_real_mkswap_area_is_recognised(tmp_path: Path) -> None:
    if not run.available("mkswap"):
        pytest.skip("mkswap is not installed")
    image = tmp_path / "swap.img"
    image.write_bytes(bytes(4 << 20))
    run.run(["mkswap", str(image)])
    assert probe_path(str(image)) is True


@pytest.mark.parametrize(
    ("magic", "page"),
    [(b"SWAPSPACE2", 4096), (b"SWAP-SPACE", 4096), (b"SWAPSPACE2", 16384), (b"SWAPSPACE2", 65536)],
)
def test_crafted_signatures_for_every_page_size(tmp_path: Path, magic: bytes, page: int) -> None:
    assert probe_path(str(_image(tmp_path / "d.img", magic, page))) is True


def test_a_signature_at_the_wrong_offset_is_not_swap(tmp_path: Path) -> None:
    # 3000 is no page size: a file system that happens to hold the word must not look like swap
    assert probe_path(str(_image(tmp_path / "d.img", b"SWAPSPACE2", 3000))) is False


def test_ordinary_data_and_short_files_are_not_swap(tmp_path: Path) -> None:
    data = tmp_path / "data.img"
    data.write_bytes(b"hello world\n" * 100_000)
    short = tmp_path / "short.img"
    short.write_bytes(b"SWAPSPACE2")
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    assert [probe_path(str(p)) for p in (data, short, empty)] == [False, False, False]


def test_missing_paths_and_directories_are_unknown_not_errors(tmp_path: Path) -> None:
    assert probe_path(str(tmp_path / "nope.img")) is None
    assert probe_path(str(tmp_path)) is None
    assert probe_path("") is None


def test_has_signature_on_bytes() -> None:
    head = bytearray(65536)
    assert not has_signature(bytes(head))
    head[8192 - 10 : 8192] = b"SWAPSPACE2"
    assert has_signature(bytes(head))
    assert not has_signature(bytes(head), page_sizes=(4096,))


def _disk(source: str, kind: DiskSource = DiskSource.FILE, fmt: str = "raw", device: str = "disk") -> Disk:
    return Disk(target="vdb", source_kind=kind, source=source, format=fmt, device=device)


def test_probe_answers_per_disk_kind(tmp_path: Path) -> None:
    swap = str(_image(tmp_path / "swap.img", b"SWAPSPACE2", 4096))
    probe = SwapProbe()
    assert probe.is_swap(_disk(swap)) is True
    assert probe.is_swap(_disk(swap, fmt="")) is True  # no <driver type>: raw
    assert probe.is_swap(_disk(swap, fmt="qcow2")) is None  # the guest's bytes are not the file's bytes
    assert probe.is_swap(_disk("rbd:pool/img", kind=DiskSource.NETWORK)) is None
    assert probe.is_swap(_disk("pool/vol", kind=DiskSource.VOLUME)) is None
    assert probe.is_swap(_disk(swap, device="cdrom")) is False
    assert SwapProbe(local=False).is_swap(_disk(swap)) is None  # the path names a file on another host


def test_probe_reads_each_source_once_per_run(tmp_path: Path) -> None:
    path = _image(tmp_path / "swap.img", b"SWAPSPACE2", 4096)
    probe = SwapProbe()
    assert probe.is_swap(_disk(str(path))) is True
    path.write_bytes(bytes(8192))
    assert probe.is_swap(_disk(str(path))) is True
    assert SwapProbe().is_swap(_disk(str(path))) is False


def test_probe_never_writes(tmp_path: Path) -> None:
    path = _image(tmp_path / "swap.img", b"SWAPSPACE2", 4096)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    path.chmod(0o444)
    SwapProbe().is_swap(_disk(str(path)))
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
