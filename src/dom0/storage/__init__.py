"""Disk storage for cloning: probe a volume, copy or snapshot it, and remove exactly what a run created.

API (all importable from dom0.storage; every call that creates something returns a `Created`, and
`remove_created` undoes exactly that):

    Volume, VolumeKind, Created, CreatedKind, Progress, SwapIdentity
    probe(path, format="") -> Volume              file / block device / LV; qemu-img info -U (-f FORMAT when known;
                                                  none for raw)
    reflink_supported(directory) -> bool          FICLONE tried on two scratch files there
    create_file(path, size_bytes=0) -> Created    new sparse file, O_EXCL
    remove_created(created) -> None               a file only while it is the same inode (number + generation),
                                                  an LV only while its UUID matches; already gone is fine
    reflink_copy(src, dst) -> Created             FICLONE; Dom0Error when the filesystem cannot (or EXDEV)
    sparse_copy(src, dst, progress) -> Created    SEEK_DATA/SEEK_HOLE + copy_file_range; holes stay holes
    overlay(base, dst, base_format) -> Created    qemu-img create -f qcow2 -b BASE -F FMT
    full_copy(src, dst, progress, src_format="", dst_format="") -> Created      qemu-img convert (chain flattened)
    raw_view(image, format="qcow2")               context manager: the guest-visible bytes as a file (FUSE)
    vg_free_bytes(vg) -> int;  vg_info(vg);  lv_info(vg, name) -> LogicalVolume | None;  lv_by_uuid(uuid)
    snapshot_size(origin: Volume, free_bytes=None) -> int      max(256 MiB, 15 %), capped by the VG's free space
    snapshot(origin: Volume, name, size_bytes) -> Created      lvcreate -s (free extents checked first; thin: no size)
    create_lv(vg, name, size_bytes, thin_pool="") -> Created   refused when the name exists or extents are short
    copy_to_lv(src, dst, size, progress, dst_reads_zero=False) -> None    zeros skipped only if dst reads zero
    zero_range(fd, start, end, block_device) -> None   BLKZEROOUT on a device that offers it, else written zeros
    snapshot_overflowed(created) -> bool          invalid (lv_attr 'I'/'S'), 100 % full, or gone
    swap_identity(path, offset=0) -> SwapIdentity(uuid, label, size_bytes) | None      from the swap signature
    make_swap(target, size_bytes, uuid, label) -> Created | None
                                                  new sparse file (its Created), or an existing LV / empty file (None)

Destinations are never overwritten: files are created with O_EXCL and removed again when the copy fails part-way,
LV names are looked up before lvcreate. Progress callbacks receive the bytes of the source covered so far (holes
count as done; the last call is the full size); a callback may raise to abort the copy.
"""

from __future__ import annotations

from dom0.model import Progress
from dom0.storage.base import (
    FICLONE,
    Created,
    CreatedKind,
    Volume,
    VolumeKind,
    create_file,
    reflink_supported,
)
from dom0.storage.files import reflink_copy, sparse_copy
from dom0.storage.lvm import (
    copy_to_lv,
    create_lv,
    lv_by_uuid,
    lv_info,
    snapshot,
    snapshot_overflowed,
    snapshot_size,
    vg_free_bytes,
    vg_info,
    zero_range,
)
from dom0.storage.qcow2 import full_copy, overlay, raw_view
from dom0.storage.swap import SwapIdentity, make_swap, swap_identity
from dom0.storage.volumes import probe, remove_created

__all__ = [
    "FICLONE",
    "Created",
    "CreatedKind",
    "Progress",
    "SwapIdentity",
    "Volume",
    "VolumeKind",
    "copy_to_lv",
    "create_file",
    "create_lv",
    "full_copy",
    "lv_by_uuid",
    "lv_info",
    "make_swap",
    "overlay",
    "probe",
    "raw_view",
    "reflink_copy",
    "reflink_supported",
    "remove_created",
    "snapshot",
    "snapshot_overflowed",
    "snapshot_size",
    "sparse_copy",
    "swap_identity",
    "vg_free_bytes",
    "vg_info",
    "zero_range",
]
