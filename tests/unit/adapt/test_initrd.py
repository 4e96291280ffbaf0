"""The names inside a guest's initrd, read from its bytes: every compression distributions use, the early
microcode layout, and hostile initrds (cut, damaged, bombs, FIFOs, symlinks to host files) that give a note."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import random
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import lz4.block
import lz4.frame
import pytest
import zstandard

from dom0.adapt import initrd
from dom0.adapt.initrd import InitrdListing, initrd_files, modules_in
from dom0.image.tree import DirectoryTree

MODULES = (
    "usr/lib/modules/6.1.0-13-amd64/kernel/drivers/block/virtio_blk.ko",
    "usr/lib/modules/6.1.0-13-amd64/kernel/drivers/block/xen-blkfront.ko.xz",
    "usr/lib/modules/6.1.0-13-amd64/kernel/drivers/net/virtio_net.ko.zst",
    "usr/lib/modules/6.1.0-13-amd64/kernel/drivers/virtio/virtio_pci.ko.gz",
)
MAIN = [(".", 0o40755, b""), ("./init", 0o100755, b"#!/bin/sh\nexec /sbin/init\n"), ("usr", 0o40755, b"")] + [
    (m, 0o100644, b"\x7fELF module " + m.encode() * 40) for m in MODULES
]
EARLY = [("kernel", 0o40755, b""), ("kernel/x86/microcode/GenuineIntel.bin", 0o100644, b"\x01" * 3000)]


def newc(entries: list[tuple[str, int, bytes]], magic: bytes = b"070701") -> bytes:
    """A cpio archive in the kernel's 'newc' format, with its trailer."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        out += magic + b"".join(b"%08x" % f for f in fields) + encoded
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def lz4_legacy(data: bytes) -> bytes:
    """`lz4 -l`: what initramfs-tools and dracut write, the only lz4 the kernel unpacks."""
    out = bytearray(b"\x02\x21\x4c\x18")
    for i in range(0, len(data), 8 << 20):
        block = lz4.block.compress(data[i : i + (8 << 20)], store_size=False)
        out += len(block).to_bytes(4, "little") + block
    return bytes(out)


def zstd_frames(data: bytes) -> bytes:
    """Several frames back to back, as `zstd -T0` writes a large initrd."""
    half = len(data) // 2
    c = zstandard.ZstdCompressor()
    return c.compress(data[:half]) + c.compress(data[half:])


CODECS: dict[str, Callable[[bytes], bytes]] = {
    "none": lambda d: d,
    "gzip": gzip.compress,
    "xz": lambda d: lzma.compress(d, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32),
    "lzma": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE),
    "zstd": zstandard.ZstdCompressor().compress,
    "zstd-frames": zstd_frames,
    "lz4-frame": lz4.frame.compress,
    "lz4-legacy": lz4_legacy,
    "bzip2": lambda d: bz2.compress(d, 1),  # blocks of 100 kB, so a cut initrd still has whole blocks
}

EXPECTED = frozenset({"init", "usr", *MODULES})


def guest(tmp_path: Path, data: bytes, name: str = "initrd.img-6.1.0-13-amd64") -> DirectoryTree:
    root = tmp_path / "guest"
    (root / "boot").mkdir(parents=True, exist_ok=True)
    (root / "boot" / name).write_bytes(data)
    return DirectoryTree(root)


def listing(tmp_path: Path, data: bytes) -> InitrdListing:
    return initrd_files(guest(tmp_path, data), "/boot/initrd.img-6.1.0-13-amd64")


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_each_compression_lists_the_names_and_modules(tmp_path: Path, codec: str) -> None:
    got = listing(tmp_path, CODECS[codec](newc(MAIN)))
    assert got == InitrdListing(EXPECTED, (), True)
    assert modules_in(got) == {"virtio_blk", "xen_blkfront", "virtio_net", "virtio_pci"}


@pytest.mark.parametrize("codec", ["gzip", "zstd", "xz", "lz4-legacy"])
def test_early_microcode_archive_then_padding_then_compressed_main(tmp_path: Path, codec: str) -> None:
    early = newc(EARLY)
    data = early + b"\0" * (-len(early) % 512) + CODECS[codec](newc(MAIN, magic=b"070702"))
    got = listing(tmp_path, data)
    assert got.complete, got.notes
    assert got.names == EXPECTED | {"kernel", "kernel/x86/microcode/GenuineIntel.bin"}


def test_an_archive_appended_after_the_compressed_one_is_read_too(tmp_path: Path) -> None:
    extra = [("lib/modules/extra/xen-netfront.ko", 0o100644, b"m" * 999)]
    got = listing(tmp_path, gzip.compress(newc(MAIN)) + b"\0" * 8 + gzip.compress(newc(extra)))
    assert got.complete
    assert "xen_netfront" in modules_in(got)


@pytest.mark.parametrize("codec", ["none", "gzip", "zstd", "xz", "bzip2", "lz4-frame", "lz4-legacy"])
def test_truncated_initrd_gives_what_was_read_and_a_note(tmp_path: Path, codec: str) -> None:
    # lz4 legacy gives nothing of a block until it is whole (8 MiB): 20 entries of 1 MiB there
    size = 1 << 20 if codec == "lz4-legacy" else 20_000
    entries = [(f"lib/modules/m{i}.ko", 0o100644, os.urandom(500) * (size // 500)) for i in range(20)]
    whole = CODECS[codec](newc(entries))
    got = listing(tmp_path, whole[: len(whole) * 6 // 10])
    assert not got.complete
    assert len(got.notes) == 1
    note = got.notes[0]
    assert note.startswith(f"/boot/initrd.img-6.1.0-13-amd64: initrd truncated after {len(got.names)} entries")
    assert 1 <= len(got.names) < 20
    assert got.names <= {name for name, _, _ in entries}


@pytest.mark.parametrize("codec", ["gzip", "xz", "lzma", "zstd", "bzip2", "lz4-frame", "lz4-legacy"])
def test_damaged_and_foreign_data_give_notes_never_an_exception(tmp_path: Path, codec: str) -> None:
    rng = random.Random(14)
    whole = CODECS[codec](newc(MAIN))
    for _ in range(200):
        data = bytearray(whole)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        got = listing(tmp_path, bytes(data[: rng.randint(0, len(data))]))
        assert got.complete or got.notes
    got = listing(tmp_path, b"\x89LZO\x00 not a format dom0 reads")
    assert got.names == frozenset()
    assert not got.complete
    assert "neither a cpio archive nor a compression dom0 reads" in got.notes[0]


def test_a_name_longer_than_the_bound_stops_the_listing(tmp_path: Path) -> None:
    got = listing(tmp_path, newc([("init", 0o100755, b"x"), ("a" * 5000, 0o100644, b"")]))
    assert got.names == {"init"}
    assert not got.complete
    assert "initrd truncated after 1 entries: a cpio entry declares a name of 5001 bytes" in got.notes[0]


def test_entries_past_the_bound_are_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(initrd, "MAX_ENTRIES", 4)
    got = listing(tmp_path, gzip.compress(newc(MAIN)))
    assert got.names == {"init", "usr", MODULES[0]}  # and "."
    assert "initrd truncated after 4 entries: it holds more than 4 entries" in got.notes[0]


def _zstd_rle_bomb(blocks: int, declared: int | None) -> bytes:
    """A zstd frame of `blocks` RLE blocks of 128 KiB each (4 bytes apiece), declaring `declared` bytes of content
    in its header (or no size): a few dozen KiB that stand for GiB of zeros."""
    if declared is None:
        header = b"\x28\xb5\x2f\xfd" + bytes([0x00]) + bytes([0x70])  # no content size, window 2^(10+14)
    else:
        header = b"\x28\xb5\x2f\xfd" + bytes([0x80]) + bytes([0x70]) + declared.to_bytes(4, "little")
    rle = 128 * 1024
    body = bytearray()
    for i in range(blocks):
        last = 1 if i == blocks - 1 else 0
        body += ((rle << 3) | (1 << 1) | last).to_bytes(3, "little") + b"\0"
    return header + bytes(body)


def _peak_during(fn: Callable[[], InitrdListing]) -> tuple[InitrdListing, int]:
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("declared", [None, 4096])
def test_zstd_bomb_is_cut_at_the_bound_and_stays_within_memory(tmp_path: Path, declared: int | None) -> None:
    # a real archive first, then a frame whose zeros run past the 2 GiB bound: the cpio reader skips zero padding
    # between archives, so only the bound stops it
    head = zstandard.ZstdCompressor().compress(newc(MAIN))
    bomb = _zstd_rle_bomb((initrd.MAX_DECOMPRESSED >> 17) + 64, declared)
    assert len(bomb) < 100_000
    tree = guest(tmp_path, head + bomb)
    got, peak = _peak_during(lambda: initrd_files(tree, "/boot/initrd.img-6.1.0-13-amd64"))
    assert got.names == EXPECTED
    assert not got.complete
    assert len(got.notes) == 1
    assert "initrd truncated after" in got.notes[0]
    if declared is None:
        assert "decompresses to more than 2048 MiB" in got.notes[0]
    assert peak < 128 * 1024 * 1024


def test_fifo_initrd_is_a_note_not_a_hang(tmp_path: Path) -> None:
    root = tmp_path / "guest"
    (root / "boot").mkdir(parents=True)
    os.mkfifo(root / "boot" / "initrd.img-6.1.0-13-amd64")
    result: list[InitrdListing] = []
    worker = threading.Thread(
        target=lambda: result.append(initrd_files(DirectoryTree(root), "/boot/initrd.img-6.1.0-13-amd64")),
        daemon=True,
    )
    worker.start()
    worker.join(10)
    assert result, "reading a FIFO initrd hung"
    assert result[0].names == frozenset()
    assert not result[0].complete
    assert "not a regular file" in result[0].notes[0]


def test_symlink_to_a_host_initrd_is_not_followed_out_of_the_guest(tmp_path: Path) -> None:
    host_initrd = tmp_path / "host-initrd.img"
    host_initrd.write_bytes(gzip.compress(newc(MAIN)))
    root = tmp_path / "guest"
    (root / "boot").mkdir(parents=True)
    (root / "boot" / "initrd.img-6.1.0-13-amd64").symlink_to(host_initrd)
    (root / "boot" / "initrd-rel.img").symlink_to("../../host-initrd.img")
    tree = DirectoryTree(root)
    for path in ("/boot/initrd.img-6.1.0-13-amd64", "/boot/initrd-rel.img"):
        got = initrd_files(tree, path)
        assert got.names == frozenset()
        assert not got.complete
        assert "initrd not read" in got.notes[0]


def test_modules_named_as_modprobe_names_them() -> None:
    names = frozenset(
        {
            "lib/modules/2.6.18-128.el5xen/kernel/drivers/xen/netfront/xennet.ko",
            "usr/lib/modules/6.6/kernel/drivers/net/xen-netfront.ko.zst",
            "usr/lib/modules/6.6/kernel/drivers/block/virtio_blk.ko.xz",
            "usr/lib/modules/6.6/modules.dep",
            "usr/lib/modules/6.6/kernel/drivers/notamodule.ko.bak",
        }
    )
    assert modules_in(InitrdListing(names, (), True)) == {"xennet", "xen_netfront", "virtio_blk"}


@pytest.mark.parametrize("codec", ["gzip", "zstd", "xz"])
def test_reading_stops_once_every_module_asked_about_is_found(tmp_path: Path, codec: str) -> None:
    # the drivers first, then 16 MiB of firmware-like zeros and damaged data: once the drivers are seen, neither
    # is decompressed (a distribution's initrd is 100+ MiB, most of it after the block drivers)
    tail = [("usr/lib/firmware/big.bin", 0o100644, bytes(16 << 20)), ("usr/lib/late.so", 0o100644, b"x")]
    data = CODECS[codec](newc(MAIN + tail))
    tree = guest(tmp_path, data + b"not an archive")
    asked = (frozenset({"xen_blkfront", "xenblk"}), frozenset({"virtio_blk"}))
    got = initrd_files(tree, "/boot/initrd.img-6.1.0-13-amd64", asked)
    assert {"xen_blkfront", "virtio_blk"} <= modules_in(got)
    assert "usr/lib/late.so" not in got.names
    assert got.notes == ()  # the damage after the modules was never reached
    assert not got.complete  # not read to its end: the listing says so
    whole = initrd_files(tree, "/boot/initrd.img-6.1.0-13-amd64")  # asking nothing reads it all, damage included
    assert "usr/lib/late.so" in whole.names
    assert "neither a cpio archive nor a compression" in whole.notes[0]
