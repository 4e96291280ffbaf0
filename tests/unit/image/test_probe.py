"""probe(): filesystems made by the real mkfs tools are named, with UUID and label, exactly as blkid names them;
SwapProbe: a running guest's swap disk is told by its signature, read-only."""

from __future__ import annotations

import struct
from pathlib import Path

import imagebuild
import pytest

from dom0 import run
from dom0.image.probe import SwapProbe, has_swap_signature, probe, probe_bytes, probe_swap_path
from dom0.image.source import BytesSource, open_image
from dom0.model import Disk, DiskSource

MiB = 1024 * 1024


def _probe(path: Path) -> tuple[str, str, str, str]:
    with open_image(path) as src:
        fs = probe(src)
    assert fs is not None, path
    return fs.type, fs.uuid, fs.label, fs.version


def _blkid(path: Path) -> tuple[str, str, str]:
    seen = imagebuild.blkid(path, 0)
    return seen.get("TYPE", ""), seen.get("UUID", ""), seen.get("LABEL", "")


@pytest.mark.parametrize(
    ("mkfs", "expected_type"),
    [
        (["mkfs.ext2"], "ext2"),
        (["mkfs.ext3"], "ext3"),
        (["mkfs.ext4"], "ext4"),
        # no journal but extents: blkid calls it ext4, not ext2
        (["mkfs.ext4", "-O", "^has_journal"], "ext4"),
        # a journal but only ext3 features: ext3
        (["mkfs.ext2", "-j"], "ext3"),
        # ext4 with 64bit and flex_bg but no journal
        (["mkfs.ext4", "-O", "^has_journal,64bit"], "ext4"),
    ],
)
def test_ext_variants_told_apart_like_blkid(tmp_path: Path, mkfs: list[str], expected_type: str) -> None:
    img = imagebuild.sparse(tmp_path / "fs.img", 8 * MiB)
    uuid = "12345678-9abc-4def-8123-456789abcdef"
    run.run([*mkfs, "-q", "-F", "-U", uuid, "-L", "lbl", str(img)])
    fs_type, fs_uuid, label, _ = _probe(img)
    assert (fs_type, fs_uuid, label) == (expected_type, uuid, "lbl")
    assert _blkid(img) == (fs_type, fs_uuid, label)


@pytest.mark.parametrize(
    ("kind", "size", "version"),
    [("vfat12", 2 * MiB, "FAT12"), ("vfat16", 32 * MiB, "FAT16"), ("vfat32", 64 * MiB, "FAT32")],
)
def test_vfat_versions_label_and_volume_id(tmp_path: Path, kind: str, size: int, version: str) -> None:
    img = imagebuild.sparse(tmp_path / "fat.img", size)
    run.run(["mkfs.vfat", "-F", version[3:], "-i", "a1b2c3d4", "-n", "BOOTME", str(img)])
    assert _probe(img) == ("vfat", "A1B2-C3D4", "BOOTME", version)
    assert _blkid(img) == ("vfat", "A1B2-C3D4", "BOOTME")


def test_vfat_without_label(tmp_path: Path) -> None:
    img = imagebuild.sparse(tmp_path / "fat.img", 8 * MiB)
    run.run(["mkfs.vfat", "-i", "00ff00ff", str(img)])
    assert _probe(img)[:3] == ("vfat", "00FF-00FF", "")


def test_swap_uuid_label_and_size(tmp_path: Path) -> None:
    img = imagebuild.mkfs("swap", tmp_path / "swap.img", 16 * MiB, "0d0e0000-0000-4000-8000-0000000000aa", "sw")
    with open_image(img) as src:
        fs = probe(src)
    assert fs is not None
    assert (fs.type, fs.uuid, fs.label, fs.version, fs.size) == (
        "swap",
        "0d0e0000-0000-4000-8000-0000000000aa",
        "sw",
        "1",
        16 * MiB,
    )
    assert _blkid(img) == ("swap", fs.uuid, "sw")


def test_old_swap_signature() -> None:
    page = bytearray(4096)
    page[4086:] = b"SWAP-SPACE"
    fs = probe(BytesSource(bytes(page) + bytes(4096)))
    assert fs is not None
    assert (fs.type, fs.uuid, fs.version, fs.size) == ("swap", "", "0", 8192)


@pytest.mark.parametrize("kind", ["xfs", "btrfs"])
def test_xfs_and_btrfs(tmp_path: Path, kind: str) -> None:
    size = 300 * MiB if kind == "xfs" else 128 * MiB
    uuid = "0d0e0000-0000-4000-8000-0000000000bb"
    img = imagebuild.mkfs(kind, tmp_path / "fs.img", size, uuid, "mydata")
    with open_image(img) as src:
        fs = probe(src)
    assert fs is not None
    assert (fs.type, fs.uuid, fs.label, fs.size) == (kind, uuid, "mydata", size)
    assert _blkid(img) == (kind, uuid, "mydata")


def test_lvm_pv_label(tmp_path: Path) -> None:
    label = bytearray(512)
    label[0:8] = b"LABELONE"
    label[8:16] = struct.pack("<Q", 1)
    label[20:24] = struct.pack("<I", 32)
    label[24:32] = b"LVM2 001"
    label[32:64] = b"AbCdEf1234567890AbCdEf1234567890"
    label[64:72] = struct.pack("<Q", 40 * MiB)
    fs = probe(BytesSource(bytes(512) + bytes(label) + bytes(4096)))
    assert fs is not None
    assert (fs.type, fs.uuid, fs.size) == ("LVM2_member", "AbCdEf-1234-5678-90Ab-CdEf-1234-567890", 40 * MiB)


def test_iso9660_volume_id_and_date_uuid() -> None:
    data = bytearray(0x8800)
    pvd = bytearray(2048)
    pvd[0], pvd[1:6], pvd[6] = 1, b"CD001", 1
    pvd[40:72] = b"DEBIAN_12".ljust(32)
    pvd[80:84] = struct.pack("<I", 1000)
    pvd[128:130] = struct.pack("<H", 2048)
    pvd[813:830] = b"2023061012345600\x00"
    pvd[830:847] = b"0000000000000000\x00"
    data[0x8000:0x8800] = pvd
    fs = probe_bytes(bytes(data))
    assert fs is not None
    assert (fs.type, fs.label, fs.uuid, fs.size) == ("iso9660", "DEBIAN_12", "2023-06-10-12-34-56-00", 1000 * 2048)


def test_nothing_to_find() -> None:
    assert probe(BytesSource(b"")) is None
    assert probe(BytesSource(bytes(1 * MiB))) is None
    # an ext magic with an impossible block size is not ext
    sb = bytearray(2048)
    sb[1024 + 0x38 : 1024 + 0x3A] = b"\x53\xef"
    sb[1024 + 0x18 : 1024 + 0x1C] = struct.pack("<I", 40)
    assert probe_bytes(bytes(sb)) is None


# --- swap disks of running guests (dom0 top): the signature of a whole raw disk, read-only ---------------------


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
    assert probe_swap_path(str(image)) is True


@pytest.mark.parametrize(
    ("magic", "page"),
    [(b"SWAPSPACE2", 4096), (b"SWAP-SPACE", 4096), (b"SWAPSPACE2", 16384), (b"SWAPSPACE2", 65536)],
)
def test_crafted_signatures_for_every_page_size(tmp_path: Path, magic: bytes, page: int) -> None:
    assert probe_swap_path(str(_image(tmp_path / "d.img", magic, page))) is True


def test_a_signature_at_the_wrong_offset_is_not_swap(tmp_path: Path) -> None:
    # 3000 is no page size: a file system that happens to hold the word must not look like swap
    assert probe_swap_path(str(_image(tmp_path / "d.img", b"SWAPSPACE2", 3000))) is False


def test_ordinary_data_and_short_files_are_not_swap(tmp_path: Path) -> None:
    data = tmp_path / "data.img"
    data.write_bytes(b"hello world\n" * 100_000)
    short = tmp_path / "short.img"
    short.write_bytes(b"SWAPSPACE2")
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    assert [probe_swap_path(str(p)) for p in (data, short, empty)] == [False, False, False]


def test_missing_paths_and_directories_are_unknown_not_errors(tmp_path: Path) -> None:
    assert probe_swap_path(str(tmp_path / "nope.img")) is None
    assert probe_swap_path(str(tmp_path)) is None
    assert probe_swap_path("") is None


def test_has_signature_on_bytes() -> None:
    head = bytearray(65536)
    assert not has_swap_signature(bytes(head))
    head[8192 - 10 : 8192] = b"SWAPSPACE2"
    assert has_swap_signature(bytes(head))
    assert not has_swap_signature(bytes(head), page_sizes=(4096,))


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
