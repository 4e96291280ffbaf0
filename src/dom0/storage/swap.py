"""Swap disks are not copied: a fresh swap area of the same size, with the UUID and label the guest's fstab names.

The source's signature is read with dom0.image's superblock prober (the same one `dom0 image` uses).
"""

from __future__ import annotations

import os
import stat
import uuid as uuidlib
from pathlib import Path
from typing import NamedTuple

from dom0 import run
from dom0.errors import CommandError, Dom0Error
from dom0.image.probe import probe as probe_superblock
from dom0.image.source import open_image
from dom0.storage.base import Created, create_exclusive, created_file, remove_file

LABEL_MAX = 16  # bytes in the swap header


class SwapIdentity(NamedTuple):
    uuid: str
    label: str
    size_bytes: int  # of the swap area, as its header records it


def swap_identity(
    path: Path, offset: int = 0, *, format: str | None = None, chain_dirs: tuple[str, ...] = ()
) -> SwapIdentity | None:
    """The UUID and label of the swap area starting `offset` bytes into image `path` (raw, qcow2 or a device);
    None when no swap signature is there (a swap area found by its signature, never by its name).

    `format` is what the guest definition says the disk is, `chain_dirs` where its backing chain lives
    (`Volume.chain_dirs`): a header the guest wrote into a raw disk is not taken for qcow2."""
    with open_image(path, format=format, backing_dirs=chain_dirs) as image:
        source = image.window(offset, image.size - offset) if offset else image
        found = probe_superblock(source)
    if found is None or found.type != "swap":
        return None
    return SwapIdentity(found.uuid, found.label, found.size)


def _check(uuid: str, label: str) -> None:
    if uuid:
        try:
            uuidlib.UUID(uuid)
        except ValueError as exc:
            raise Dom0Error(f"{uuid!r} is not a UUID", "give the swap UUID as 8-4-4-4-12 hex digits") from exc
    if len(label.encode()) > LABEL_MAX:
        raise Dom0Error(f"swap label {label!r} is longer than {LABEL_MAX} bytes", "use a shorter label")


def _mkswap(target: Path, uuid: str, label: str) -> None:
    cmd = ["mkswap"]
    if uuid:
        cmd += ["-U", uuid]
    if label:
        cmd += ["-L", label]
    run.run([*cmd, "--", str(target)], timeout=120)


def _fill_empty(target: Path, size_bytes: int, uuid: str, label: str) -> None:
    try:
        fd = os.open(target, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if os.fstat(fd).st_size != 0:
                raise Dom0Error(f"{target} is no longer empty", "something else writes there; choose another name")
            os.ftruncate(fd, size_bytes)
        finally:
            os.close(fd)
        _mkswap(target, uuid, label)
    except (OSError, CommandError) as exc:
        raise Dom0Error(f"cannot make swap file {target}: {exc}", "check free space in its directory") from exc


def make_swap(target: Path, size_bytes: int, uuid: str, label: str) -> Created | None:
    """Make a swap area with `uuid` and `label` (either may be empty: mkswap picks a UUID, no label).

    On an existing block device (an LV this run created) the whole device becomes swap, and an existing empty
    file (from create_file) is sized and made swap: both return None, their Created came from where they were
    made. Otherwise `target` is a new sparse file of `size_bytes`, created with O_EXCL, and its Created is returned.
    """
    _check(uuid, label)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            # An empty file (made by create_file for this clone) holds nothing that could be lost.
            _fill_empty(target, size_bytes, uuid, label)
            return None
        if not stat.S_ISBLK(st.st_mode):
            raise Dom0Error(f"{target} already exists", "choose another name; dom0 never overwrites a file")
        try:
            _mkswap(target, uuid, label)
        except CommandError as exc:
            raise Dom0Error(f"cannot make swap on {target}: {exc.message}", "check the device is not in use") from exc
        return None
    fd = create_exclusive(target)
    created = created_file(target, fd)
    try:
        try:
            os.ftruncate(fd, size_bytes)
        finally:
            os.close(fd)
        _mkswap(target, uuid, label)
    except (OSError, CommandError) as exc:
        remove_file(created)
        raise Dom0Error(f"cannot make swap file {target}: {exc}", "check free space in its directory") from exc
    return created
