"""Disks whatever holds them: probe a file, block device or LVM LV, and remove what a run created, file or LV.

These span both kinds of storage, so they sit above base.py (the types and file helpers) and lvm.py.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from dom0 import run
from dom0.errors import CommandError, Dom0Error
from dom0.storage import lvm
from dom0.storage.base import Created, CreatedKind, Volume, VolumeKind, remove_file

SUPPORTED_FORMATS = ("raw", "qcow2")


def _qemu_img_info(path: Path, format: str) -> list[dict[str, object]]:
    """qemu-img's view of the image and of each image in its backing chain, the image first."""
    cmd = ["qemu-img", "info", "--output=json", "--backing-chain", "-U"]
    if format:
        cmd += ["-f", format]
    try:
        out = run.output([*cmd, str(path)], timeout=60)
    except CommandError as exc:
        raise Dom0Error(f"cannot read {path} as a disk image: {exc.message}", "check it with qemu-img info") from exc
    try:
        info = json.loads(out)
    except json.JSONDecodeError as exc:
        raise Dom0Error(f"qemu-img info {path}: unreadable answer", "check the qemu-utils installation") from exc
    if not isinstance(info, list) or not info or not all(isinstance(i, dict) for i in info):
        raise Dom0Error(f"qemu-img info {path}: unexpected answer", "check the qemu-utils installation")
    return info


def _device_bytes(path: Path) -> int:
    """The size of block device `path`: where its end is (opened read-only, so a guest's use of it is no bar)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise Dom0Error(f"cannot read {path}: {exc.strerror}", "run dom0 as root") from exc
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def probe(path: Path, format: str = "") -> Volume:
    """What `path` is: a file, a block device or an LVM LV, its format and sizes.

    Give `format` when it is known (the guest definition says it): without it qemu-img guesses from the content,
    and a raw disk whose guest wrote a qcow2 header into it would be read as qcow2 with a backing file of the
    guest's choosing. Images in use by a running guest are read with qemu-img's force-share (-U); a disk given as
    raw is measured without qemu-img.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise Dom0Error(f"{path}: no such file or device", "check the disk path in the guest definition") from exc
    except OSError as exc:
        raise Dom0Error(f"cannot read {path}: {exc.strerror}", "run dom0 as root") from exc
    if stat.S_ISREG(st.st_mode):
        kind = VolumeKind.FILE
    elif stat.S_ISBLK(st.st_mode):
        kind = VolumeKind.BLOCK
    else:
        raise Dom0Error(f"{path} is not a disk image (not a file or block device)", "give an image file or a device")
    chain_dirs: tuple[str, ...] = ()
    if format == "raw":
        # A raw disk is its bytes, sized by its file or device: qemu-img has nothing to add. Xen hosts often have
        # no qemu-img at all (Debian's xen-utils only suggests qemu-utils), and their guests' disks are raw LVs.
        fmt, backing = "raw", ""
        size = st.st_size if kind is VolumeKind.FILE else _device_bytes(path)
        allocated = st.st_blocks * 512
    else:
        chain = _qemu_img_info(path, format)
        info = chain[0]
        # The chain of a disk the guest definition names is the one the hypervisor opens: the administrator's
        # setup, so dom0's reader may follow the qcow2 headers there (and nowhere else, see dom0.image.source).
        chain_dirs = tuple(sorted({os.path.dirname(os.path.abspath(str(i.get("filename", "")))) for i in chain[1:]}))
        fmt = str(info.get("format", ""))
        if fmt not in SUPPORTED_FORMATS:
            raise Dom0Error(
                f"{path}: disk format {fmt or 'unknown'} is not supported for cloning",
                f"convert it first: qemu-img convert -O qcow2 {path} NEW.qcow2",
            )
        size = int(str(info.get("virtual-size", 0)))
        if fmt == "raw" and kind is VolumeKind.FILE:
            size = st.st_size  # qemu-img rounds up to whole sectors; a copy is byte for byte
        allocated = int(str(info.get("actual-size", 0)))
        backing = str(info.get("full-backing-filename") or info.get("backing-filename") or "")
    if kind is VolumeKind.FILE:
        return Volume(Path(path), kind, size, fmt, backing=backing, allocated_bytes=allocated, chain_dirs=chain_dirs)
    lv = lvm.lv_of_device(Path(path))
    if lv is None:
        return Volume(Path(path), kind, size, fmt, backing=backing, allocated_bytes=size, chain_dirs=chain_dirs)
    return Volume(
        Path(path),
        VolumeKind.LV,
        size,
        fmt,
        vg=lv.vg,
        lv=lv.name,
        backing=backing,
        allocated_bytes=lv.size_bytes,
        lv_uuid=lv.uuid,
        segtype=lv.segtype,
        chain_dirs=chain_dirs,
    )


def remove_created(c: Created) -> None:
    """Remove exactly what `c` records: a file only while it is the same inode, an LV only while its UUID matches.

    Something already gone is fine (rollback may run twice); something else in its place is left alone and
    reported as a Dom0Error.
    """
    if c.kind is CreatedKind.LV:
        lvm.remove_lv(c)
    else:
        remove_file(c)
