"""storage.probe of raw disks on a host without qemu-img (a Xen dom0: Debian's xen-utils only suggests qemu-utils)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dom0.errors import Dom0Error
from dom0.storage import VolumeKind, probe

MiB = 1 << 20


@pytest.fixture
def no_qemu_img(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH holds nothing: any program probe started would not be found."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_a_raw_disk_is_measured_without_qemu_img(tmp_path: Path, no_qemu_img: None) -> None:
    disk = tmp_path / "web-disk.img"
    with disk.open("wb") as f:
        f.truncate(48 * MiB + 512)
        f.seek(3 * MiB)
        f.write(b"x" * MiB)
    volume = probe(disk, "raw")
    assert (volume.kind, volume.format, volume.size_bytes) == (VolumeKind.FILE, "raw", 48 * MiB + 512)
    assert MiB <= volume.allocated_bytes < 48 * MiB  # sparse: what it takes on the host, not its size
    assert (volume.backing, volume.chain_dirs) == ("", ())


def test_a_disk_of_unknown_format_still_needs_qemu_img_to_say_what_it_is(tmp_path: Path, no_qemu_img: None) -> None:
    disk = tmp_path / "web-disk.img"
    disk.write_bytes(bytes(MiB))
    with pytest.raises(Dom0Error, match=r"cannot read .* as a disk image"):
        probe(disk)
