"""The storage types (Volume, Created) and the helpers every storage module shares; see dom0.storage for the API."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from dom0.errors import Dom0Error

# FICLONE = _IOW(0x94, 9, int): share all of the source's extents with the destination (btrfs, XFS, bcachefs).
FICLONE = 0x40049409
# FS_IOC_GETVERSION = _IOR('v', 1, long): the inode's generation, new each time an inode number is reused.
FS_IOC_GETVERSION = 0x80087601


class VolumeKind(StrEnum):
    FILE = "file"
    BLOCK = "block"
    LV = "lv"


@dataclass(frozen=True)
class Volume:
    """A disk as the host holds it: `size_bytes` is what the guest sees (qcow2 virtual size), `allocated_bytes`
    what it takes on the host; `vg`/`lv` for an LVM LV, `backing` the qcow2 backing file (empty when none),
    `chain_dirs` the directories of its whole backing chain (where dom0's own reader may follow it)."""

    path: Path
    kind: VolumeKind
    size_bytes: int
    format: str
    vg: str = ""
    lv: str = ""
    backing: str = ""
    allocated_bytes: int = 0
    lv_uuid: str = ""
    segtype: str = ""  # "linear", "thin", ... for an LV
    chain_dirs: tuple[str, ...] = ()


class CreatedKind(StrEnum):
    FILE = "file"
    LV = "lv"


@dataclass(frozen=True)
class Created:
    """Something one run created: a file (with its device and inode at creation) or an LV (with its UUID).

    Rollback passes it to `remove_created`, which removes it only while it is still that same object."""

    kind: CreatedKind
    path: Path
    lv_uuid: str = ""
    vg: str = ""
    lv: str = ""
    inode: tuple[int, int] = (0, 0)  # (st_dev, st_ino) of a created file
    generation: int = 0  # its inode generation (ext4, btrfs, XFS): tells a reused inode number apart

    def __str__(self) -> str:
        return f"LV {self.vg}/{self.lv}" if self.kind is CreatedKind.LV else str(self.path)


def reflink_supported(directory: Path) -> bool:
    """Whether files in `directory` can be reflinked (tried for real on two scratch files, removed after)."""
    import fcntl

    try:
        src_fd, src_name = tempfile.mkstemp(prefix=".dom0-reflink-", dir=directory)
    except OSError:
        return False
    dst_name = ""
    try:
        os.write(src_fd, b"\1" * 4096)
        os.fsync(src_fd)
        dst_fd, dst_name = tempfile.mkstemp(prefix=".dom0-reflink-", dir=directory)
        try:
            fcntl.ioctl(dst_fd, FICLONE, src_fd)
        except OSError:
            return False
        finally:
            os.close(dst_fd)
        return True
    except OSError:
        return False
    finally:
        os.close(src_fd)
        for name in (src_name, dst_name):
            if name:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name)


def _generation(fd: int) -> int:
    import fcntl

    try:
        raw = fcntl.ioctl(fd, FS_IOC_GETVERSION, bytes(8))
    except OSError:  # tmpfs and others: the inode number alone has to do
        return 0
    return int.from_bytes(raw[:4], sys.byteorder)


def _identity(fd: int) -> tuple[int, int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino, _generation(fd)


def created_file(path: Path, fd: int) -> Created:
    """The Created record of a file this run just made (identified by the inode behind `fd`)."""
    dev, ino, gen = _identity(fd)
    return Created(CreatedKind.FILE, Path(path), inode=(dev, ino), generation=gen)


def same_file(c: Created) -> bool | None:
    """Whether `c.path` is still the file `c` records: None when nothing is there any more."""
    try:
        fd = os.open(c.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:  # a symlink (ELOOP) or something unreadable: not what this run made
        return False
    try:
        dev, ino, gen = _identity(fd)
        return stat.S_ISREG(os.fstat(fd).st_mode) and (dev, ino) == c.inode and gen == c.generation
    finally:
        os.close(fd)


def create_exclusive(path: Path, mode: int = 0o600) -> int:
    """Open a new file at `path` for writing; Dom0Error (nothing touched) when anything already exists there."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    except FileExistsError as exc:
        raise Dom0Error(
            f"{path} already exists", "choose another name or remove it first; dom0 never overwrites"
        ) from exc
    except OSError as exc:
        raise Dom0Error(f"cannot create {path}: {exc.strerror}", "check the directory exists and is writable") from exc


def create_file(path: Path, size_bytes: int = 0) -> Created:
    """A new sparse file of `size_bytes` at `path` (O_EXCL: refused when anything is already there)."""
    fd = create_exclusive(path)
    created = created_file(path, fd)
    try:
        os.ftruncate(fd, size_bytes)
    except OSError as exc:
        os.close(fd)
        remove_file(created)
        raise Dom0Error(f"cannot size {path}: {exc.strerror}", "check free space in its directory") from exc
    os.close(fd)
    return created


def remove_file(c: Created) -> None:
    """Remove the file `c` records, only while it is the same inode; already gone is fine (rollback may run twice),
    something else in its place is left alone and reported as a Dom0Error."""
    same = same_file(c)
    if same is None:
        return
    if not same:
        raise Dom0Error(
            f"{c.path} is no longer the file this run created; left in place",
            "check what replaced it and remove it by hand if it is not needed",
        )
    try:
        os.unlink(c.path)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise Dom0Error(f"cannot remove {c.path}: {exc.strerror}", "remove it by hand") from exc
        raise
