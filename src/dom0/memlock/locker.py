"""Mapping a file read-only and locking it in RAM, and counting how much of a file is resident.

Python's mmap module can map a file but cannot lock it (no mlock) nor ask which pages are resident (no mincore),
so the mapping is made with libc directly: one private read-only shared mapping of the whole file, locked at once
(mlock faults every page in), and the descriptor closed: the mapping alone keeps the inode and its pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

_PROT_READ = 0x1
_MAP_SHARED = 0x01
_MAP_FAILED = ctypes.c_void_p(-1).value
PAGE = os.sysconf("SC_PAGE_SIZE")


def _libc() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    lib.mmap.restype = ctypes.c_void_p
    lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    for name in ("munmap", "mlock", "munlock"):
        getattr(lib, name).restype = ctypes.c_int
        getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.mincore.restype = ctypes.c_int
    lib.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    return lib


_LIBC = _libc()


class LockError(Exception):
    """A file that could not be mapped or locked; `reason` is the line an administrator reads."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# What the kernel's refusals mean for someone locking files: mlock says EPERM without CAP_IPC_LOCK and a zero
# limit, ENOMEM or EAGAIN when RLIMIT_MEMLOCK (or the RAM itself) is spent.
_MLOCK_REASONS = {
    errno.EPERM: "not allowed to lock memory (needs CAP_IPC_LOCK or a RLIMIT_MEMLOCK above zero)",
    errno.ENOMEM: "over the lock limit (RLIMIT_MEMLOCK) or out of memory",
    errno.EAGAIN: "the kernel could not lock it all now (RLIMIT_MEMLOCK or memory pressure)",
}


def _strerror(err: int) -> str:
    return os.strerror(err) if err else "unknown error"


@dataclass(frozen=True, slots=True)
class Identity:
    """What says a path still names the file that was locked: a package upgrade renames a new inode into place,
    an in-place rewrite changes size or mtime."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Identity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _open_file(path: Path) -> tuple[int, os.stat_result]:
    """A read-only descriptor on the regular file `path` (its last component not a symlink) and its fstat."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise LockError("does not exist") from None
    except OSError as exc:
        raise LockError("is a symlink" if exc.errno == errno.ELOOP else f"cannot open: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        from dom0.filedata import kind_of

        raise LockError(f"is {kind_of(st.st_mode)}, not a regular file")
    return fd, st


def _map(fd: int, size: int) -> int:
    addr = _LIBC.mmap(None, size, _PROT_READ, _MAP_SHARED, fd, 0)
    if addr is None or addr == _MAP_FAILED:
        err = ctypes.get_errno()
        raise LockError(f"cannot map: {_strerror(err)}")
    return int(addr)


class LockedFile:
    """One file mapped read-only and locked in RAM until `release()`."""

    def __init__(self, path: Path) -> None:
        """Map and lock `path` whole; LockError (with the reason) when it cannot be, nothing left mapped then.
        A zero-size file cannot be mapped: LockError too (the caller skips those before)."""
        self.path = path
        fd, st = _open_file(path)
        try:
            if st.st_size == 0:
                raise LockError("is empty")
            addr = _map(fd, st.st_size)
        finally:
            os.close(fd)
        if _LIBC.mlock(addr, st.st_size) != 0:
            err = ctypes.get_errno()
            _LIBC.munmap(addr, st.st_size)
            raise LockError(_MLOCK_REASONS.get(err, f"cannot lock: {_strerror(err)}"))
        self._addr: int | None = addr
        self.size = st.st_size
        self.identity = Identity.of(st)

    @property
    def locked(self) -> bool:
        return self._addr is not None

    def resident(self) -> int:
        """Bytes of the mapping in RAM now (all of it while locked)."""
        return 0 if self._addr is None else _resident_at(self._addr, self.size)

    def release(self) -> None:
        """Unlock and unmap (the kernel may page the file out again); a second call does nothing."""
        if self._addr is not None:
            _LIBC.munlock(self._addr, self.size)
            _LIBC.munmap(self._addr, self.size)
            self._addr = None

    def __repr__(self) -> str:
        return f"LockedFile({str(self.path)!r}, size={self.size}, locked={self.locked})"


def _resident_at(addr: int, size: int) -> int:
    pages = (size + PAGE - 1) // PAGE
    vec = (ctypes.c_ubyte * pages)()
    if _LIBC.mincore(addr, size, vec) != 0:
        return 0
    count = sum(1 for v in vec if v & 1)
    # the last page counts only for the file's bytes in it
    if pages and vec[pages - 1] & 1:
        return (count - 1) * PAGE + (size - (pages - 1) * PAGE)
    return count * PAGE


def resident(path: Path) -> int:
    """Bytes of the file at `path` in the page cache now, read with mincore through a read-only mapping that is
    neither locked nor touched (so reading does not fault pages in); works for any user who may read the file.
    LockError when it cannot be opened or mapped; 0 for an empty file."""
    fd, st = _open_file(path)
    try:
        if st.st_size == 0:
            return 0
        addr = _map(fd, st.st_size)
    finally:
        os.close(fd)
    try:
        return _resident_at(addr, st.st_size)
    finally:
        _LIBC.munmap(addr, st.st_size)
