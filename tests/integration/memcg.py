"""A cgroup v1 memory cgroup of the test's own, with a low limit, to put real memory pressure on a few processes
(and the page cache they first read) without pressing on the rest of the machine; and the page-cache tools the
memlock test and bench share: drop one file's cached pages, count how much of a file is resident.

Kept free of pytest and of relative imports: bench/memlock_bench.py imports it too.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path("/sys/fs/cgroup/memory")
MiB = 1024 * 1024
PAGE = mmap.PAGESIZE


def unavailable() -> str:
    """Why a memory cgroup of our own cannot be made here ('' when it can)."""
    if os.geteuid() != 0:
        return "needs root to make a memory cgroup and lock memory"
    if not (ROOT / "memory.limit_in_bytes").exists():
        return f"no cgroup v1 memory controller at {ROOT}"
    if os.access(ROOT, os.W_OK) is False:
        return f"{ROOT} is not writable"
    return ""


class MemCgroup:
    """/sys/fs/cgroup/memory/dom0t-<random> with memory.limit_in_bytes set; `close()` kills what is in it and
    removes it (the page cache still charged to it is moved to the parent by the kernel)."""

    def __init__(self, limit: int, prefix: str = "dom0t") -> None:
        self.path = ROOT / f"{prefix}-{secrets.token_hex(4)}"
        self.path.mkdir()
        try:
            # no swap below the limit either (where swap accounting exists): pressure must go to the page cache
            self.write("memory.swappiness", "0")
            self.write("memory.limit_in_bytes", str(limit))
        except BaseException:
            self.path.rmdir()
            raise
        self.limit = limit

    def write(self, name: str, value: str) -> None:
        (self.path / name).write_text(value)

    def read(self, name: str) -> str:
        return (self.path / name).read_text()

    def stat(self) -> dict[str, int]:
        """memory.stat as numbers (cache, rss, unevictable, mapped_file, ...)."""
        out = {}
        for line in self.read("memory.stat").splitlines():
            key, _, value = line.partition(" ")
            out[key] = int(value)
        return out

    def failcnt(self) -> int:
        return int(self.read("memory.failcnt"))

    def oom_kills(self) -> int:
        """How many processes this cgroup's OOM killer killed (0 on kernels that do not count them)."""
        for line in self.read("memory.oom_control").splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def pids(self) -> list[int]:
        return [int(p) for p in self.read("cgroup.procs").split()]

    def enter_argv(self, argv: list[str]) -> list[str]:
        """`argv` prefixed so that it runs inside this cgroup from its first instruction on (a shell moves
        itself in, then execs the command: nothing of the command is charged elsewhere)."""
        procs = self.path / "cgroup.procs"
        return ["/bin/sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh", *argv]

    def add(self, pid: int) -> None:
        self.write("cgroup.procs", str(pid))

    def close(self) -> None:
        """Kill every process in the cgroup, wait for them to leave, remove the cgroup."""
        if not self.path.exists():
            return
        deadline = time.monotonic() + 10
        while True:
            try:
                pids = self.pids()
            except OSError:
                pids = []
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"could not remove {self.path}: still holds {self.pids()}")


@contextlib.contextmanager
def memory_cgroup(limit: int) -> Iterator[MemCgroup]:
    cg = MemCgroup(limit)
    try:
        yield cg
    finally:
        cg.close()


def drop_cache(path: Path) -> None:
    """Drop `path`'s clean pages from the page cache (this file only, not the machine's caches); pages a process
    holds mapped or locked stay."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.mmap.restype = ctypes.c_void_p
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
_libc.mincore.restype = ctypes.c_int


def resident_bytes(path: Path) -> int:
    """Pages of `path` in the page cache now, in bytes (whole pages): mincore over a read-only mapping that is
    never touched, so counting faults nothing in. The test's own count, independent of dom0's."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return 0
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr is None or addr == ctypes.c_void_p(-1).value:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)
    try:
        pages = (size + PAGE - 1) // PAGE
        vec = (ctypes.c_ubyte * pages)()
        if _libc.mincore(addr, size, vec) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
        return sum(1 for v in vec if v & 1) * PAGE
    finally:
        _libc.munmap(addr, size)
