"""Copy disk image files: a reflink (shares extents, instant) or a sparse copy (holes stay holes).

Both create the destination with O_EXCL, so an existing file is never overwritten, and remove it again when the
copy fails part-way.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from dom0.errors import Dom0Error
from dom0.model import Progress, no_progress
from dom0.storage.base import FICLONE, Created, create_exclusive, created_file, remove_file

CHUNK = 64 << 20
# Read/write fallback granularity: all-zero blocks of this size are left as holes in the new file.
BLOCK = 1 << 20
_ZEROS = bytes(BLOCK)

_REFLINK_UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.ENOSYS)


def _open_source(src: Path) -> int:
    try:
        return os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise Dom0Error(f"{src}: no such file", "check the disk path in the guest definition") from exc
    except OSError as exc:
        raise Dom0Error(f"cannot read {src}: {exc.strerror}", "run dom0 as root") from exc


def _abandon(created: Created, fd: int) -> None:
    os.close(fd)
    remove_file(created)


def reflink_copy(src: Path, dst: Path) -> Created:
    """Make `dst` share all of `src`'s extents (FICLONE): instant, and consistent even while a guest writes `src`.

    Dom0Error (and no `dst` left behind) when the filesystem cannot reflink or the two are on different ones.
    """
    src_fd = _open_source(src)
    try:
        src_st = os.fstat(src_fd)
        dst_fd = create_exclusive(dst, stat.S_IMODE(src_st.st_mode) & 0o660 or 0o600)
        created = created_file(dst, dst_fd)
        try:
            fcntl.ioctl(dst_fd, FICLONE, src_fd)
            os.fsync(dst_fd)
        except OSError as exc:
            _abandon(created, dst_fd)
            if exc.errno == errno.EXDEV:
                raise Dom0Error(
                    f"cannot reflink {src} to {dst}: they are on different filesystems",
                    "put the clone in the source's directory, or use --mode copy",
                ) from exc
            if exc.errno in _REFLINK_UNSUPPORTED:
                raise Dom0Error(
                    f"cannot reflink {src}: its filesystem does not support reflinks",
                    "reflinks need btrfs or XFS (mkfs.xfs -m reflink=1); use --mode copy",
                ) from exc
            raise Dom0Error(f"reflink {src} to {dst} failed: {exc.strerror}", "use --mode copy") from exc
        os.close(dst_fd)
        return created
    finally:
        os.close(src_fd)


def data_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each data range of the open file `fd` (all of it where SEEK_DATA is not supported)."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole from pos to the end
                return
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                yield pos, size
                return
            raise
        end = min(size, os.lseek(fd, start, os.SEEK_HOLE))
        if end <= start:
            return
        yield start, end
        pos = end


def _copy_range_rw(src_fd: int, dst_fd: int, start: int, end: int, progress: Progress) -> None:
    """Copy [start, end) by read/write, leaving all-zero blocks unwritten (the new file reads them as zeros)."""
    pos = start
    while pos < end:
        chunk = os.pread(src_fd, min(BLOCK, end - pos), pos)
        if not chunk:
            raise Dom0Error(f"short read at byte {pos} of the source", "the source changed size during the copy")
        if chunk != _ZEROS[: len(chunk)]:
            view = memoryview(chunk)
            at = pos
            while view:
                n = os.pwrite(dst_fd, view, at)
                view = view[n:]
                at += n
        pos += len(chunk)
        progress(pos)


def _copy_range(fds: tuple[int, int], span: tuple[int, int], progress: Progress, fast: bool) -> bool:
    """Copy span [start, end) from fds[0] to fds[1] at the same offset; whether copy_file_range still works."""
    (src_fd, dst_fd), (pos, end) = fds, span
    while pos < end and fast:
        try:
            n = os.copy_file_range(src_fd, dst_fd, min(CHUNK, end - pos), pos, pos)
        except OSError as exc:
            # Across filesystems, from a block device or on an old kernel: copy through userspace instead.
            if exc.errno in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF):
                fast = False
                break
            raise
        if n == 0:
            raise Dom0Error(f"short read at byte {pos} of the source", "the source changed size during the copy")
        pos += n
        progress(pos)
    if pos < end:
        _copy_range_rw(src_fd, dst_fd, pos, end, progress)
    return fast


def sparse_copy(src: Path, dst: Path, progress: Progress = no_progress) -> Created:
    """Copy `src` (a file or block device) to a new file `dst` of the same size; holes in `src` stay holes.

    Data ranges go through copy_file_range (the kernel copies, or shares extents where it can); where that is
    not possible, a read/write copy that also leaves all-zero blocks as holes.
    """
    src_fd = _open_source(src)
    try:
        src_st = os.fstat(src_fd)
        size = os.lseek(src_fd, 0, os.SEEK_END)
        dst_fd = create_exclusive(dst, stat.S_IMODE(src_st.st_mode) & 0o660 or 0o600)
        created = created_file(dst, dst_fd)
        try:
            os.ftruncate(dst_fd, size)
            fast = stat.S_ISREG(src_st.st_mode)
            for span in data_ranges(src_fd, size):
                fast = _copy_range((src_fd, dst_fd), span, progress, fast)
            os.fsync(dst_fd)
        except OSError as exc:
            _abandon(created, dst_fd)
            hint = "free some space on its filesystem" if exc.errno == errno.ENOSPC else "check both disks"
            raise Dom0Error(f"copying {src} to {dst} failed: {exc.strerror}", hint) from exc
        except BaseException:
            _abandon(created, dst_fd)
            raise
        os.close(dst_fd)
        progress(size)
        return created
    finally:
        os.close(src_fd)
