"""dom0.storage.lvm on real LVs: snapshot a busy origin, copy it, overflow a snapshot, remove by UUID only."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from dom0 import run
from dom0.errors import Dom0Error
from dom0.storage import VolumeKind, lvm, probe, remove_created
from dom0.storage.swap import make_swap, swap_identity

MiB = 1 << 20


def _write(device: Path, offset: int, data: bytes) -> None:
    fd = os.open(device, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest(device: Path, size: int) -> str:
    h = hashlib.sha256()
    with open(device, "rb") as fh:
        left = size
        while left:
            chunk = fh.read(min(MiB, left))
            assert chunk
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def _origin(vg: str, size: int = 64 * MiB) -> Path:
    created = lvm.create_lv(vg, "origin", size)
    _write(created.path, 0, b"\xee" * size)  # old data everywhere, as on a used disk
    _write(created.path, 4 * MiB, os.urandom(8 * MiB))
    _write(created.path, 20 * MiB, bytes(4 * MiB))  # a zero run in the middle
    return created.path


def test_probe_sees_an_lv(vg: str) -> None:
    path = _origin(vg)
    vol = probe(path, "raw")
    assert (vol.kind, vol.vg, vol.lv, vol.size_bytes) == (VolumeKind.LV, vg, "origin", 64 * MiB)
    assert vol.lv_uuid


def test_snapshot_copy_remove(vg: str) -> None:
    origin_path = _origin(vg)
    origin = probe(origin_path, "raw")
    frozen = _digest(origin_path, origin.size_bytes)
    size = lvm.snapshot_size(origin)
    snap = lvm.snapshot(origin, "origin-snap", size)
    _write(origin_path, 0, os.urandom(MiB))  # the guest keeps writing
    target = lvm.create_lv(vg, "clone", origin.size_bytes)
    lvm.copy_to_lv(snap.path, target.path, origin.size_bytes)
    assert not lvm.snapshot_overflowed(snap)
    remove_created(snap)
    assert lvm.lv_info(vg, "origin-snap") is None
    assert _digest(target.path, origin.size_bytes) == frozen  # the copy is the origin at snapshot time
    assert lvm.lv_info(vg, "origin") is not None


def test_existing_names_refused(vg: str) -> None:
    _origin(vg)
    with pytest.raises(Dom0Error, match="already exists"):
        lvm.create_lv(vg, "origin", MiB)


def test_snapshot_overflow_is_detected(vg: str) -> None:
    origin_path = _origin(vg)
    origin = probe(origin_path, "raw")
    snap = lvm.snapshot(origin, "tiny-snap", 8 * MiB)
    assert not lvm.snapshot_overflowed(snap)
    _write(origin_path, 0, os.urandom(32 * MiB))  # far more than 8 MiB of changes
    assert lvm.snapshot_overflowed(snap)
    target = lvm.create_lv(vg, "clone", origin.size_bytes)
    with pytest.raises(Dom0Error, match="I/O error"):
        lvm.copy_to_lv(snap.path, target.path, origin.size_bytes)
    remove_created(snap)
    remove_created(target)
    assert lvm.lv_info(vg, "tiny-snap") is None
    assert lvm.lv_info(vg, "clone") is None


def test_sizes_that_are_not_whole_sectors_are_rounded_up(vg: str) -> None:
    odd = 8 * MiB + 1  # a raw image file's size need not be a multiple of 512
    created = lvm.create_lv(vg, "odd", odd)
    info = lvm.lv_info(vg, "odd")
    assert info is not None
    assert info.size_bytes >= odd
    origin = probe(created.path, "raw")
    snap = lvm.snapshot(origin, "odd-snap", odd)
    assert not lvm.snapshot_overflowed(snap)


def test_free_extents_checked_before_lvcreate(vg: str) -> None:
    free = lvm.vg_free_bytes(vg)
    with pytest.raises(Dom0Error, match="free extents"):
        lvm.create_lv(vg, "huge", free + 64 * MiB)
    assert lvm.lv_info(vg, "huge") is None


def test_remove_only_the_lv_with_the_recorded_uuid(vg: str) -> None:
    ours = lvm.create_lv(vg, "clone", 8 * MiB)
    run.run(["lvremove", "--yes", f"{vg}/clone"])
    theirs = lvm.create_lv(vg, "clone", 8 * MiB)  # the same name, another LV
    remove_created(ours)
    still = lvm.lv_info(vg, "clone")
    assert still is not None
    assert still.uuid == theirs.lv_uuid


def test_thin_clone_skips_zeros(vg: str) -> None:
    run.run(["lvcreate", "--yes", "--type", "thin-pool", "--size", "256m", "--name", "pool", vg])
    origin = lvm.create_lv(vg, "origin", 64 * MiB, thin_pool="pool")
    _write(origin.path, 4 * MiB, os.urandom(4 * MiB))
    vol = probe(origin.path, "raw")
    assert vol.segtype == "thin"
    snap = lvm.snapshot(vol, "origin-snap", 0)
    clone = lvm.create_lv(vg, "clone", 64 * MiB, thin_pool="pool")
    lvm.copy_to_lv(snap.path, clone.path, 64 * MiB, dst_reads_zero=True)
    assert _digest(clone.path, 64 * MiB) == _digest(snap.path, 64 * MiB)
    info = lvm.lv_info(vg, "clone")
    assert info is not None
    assert info.data_percent is not None
    assert info.data_percent < 50  # only the written 4 MiB (and its chunks) are provisioned
    assert not lvm.snapshot_overflowed(snap)
    remove_created(snap)


def test_swap_on_an_lv_keeps_uuid_and_label(vg: str) -> None:
    src = lvm.create_lv(vg, "swap", 32 * MiB)
    uuid = "5f0e8d3a-0d2c-4c55-9a8e-2f7c1b6a9d10"
    run.run(["mkswap", "-U", uuid, "-L", "guestswap", str(src.path)])
    ident = swap_identity(src.path)
    assert ident is not None
    new = lvm.create_lv(vg, "swap-clone", 32 * MiB)
    assert make_swap(new.path, 32 * MiB, ident.uuid, ident.label) is None
    out = run.output(["blkid", "-p", "-o", "export", str(new.path)])
    assert f"UUID={uuid}" in out
    assert "LABEL=guestswap" in out
