"""Locking files in RAM with the process's own mlock, and reading residency with mincore."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from dom0 import run
from dom0.memlock.locker import LockedFile, LockError, resident


def _vmlck_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmLck:"):
            return int(line.split()[1])
    raise AssertionError("no VmLck in /proc/self/status")


def _can_lock_beyond_limit() -> bool:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return soft == resource.RLIM_INFINITY or soft >= 64 << 20 or os.geteuid() == 0


def test_a_locked_file_counts_in_vmlck_and_is_all_resident(tmp_path: Path) -> None:
    if not _can_lock_beyond_limit():
        pytest.skip("needs CAP_IPC_LOCK or a RLIMIT_MEMLOCK of 64 MiB")
    files = []
    for i, size in enumerate((5 << 20, 3 << 20, 12345)):
        f = tmp_path / f"f{i}"
        f.write_bytes(os.urandom(size))
        files.append(f)
    before = _vmlck_kib()
    locked = [LockedFile(f) for f in files]
    try:
        pages = sum((lf.size + 4095) // 4096 * 4 for lf in locked)
        assert _vmlck_kib() - before == pages
        for lf, f in zip(locked, files, strict=True):
            assert lf.resident() == lf.size == f.stat().st_size
            assert resident(f) == f.stat().st_size
    finally:
        for lf in locked:
            lf.release()
    assert _vmlck_kib() == before
    locked[0].release()  # a second release does nothing


def test_resident_reads_a_file_dropped_from_the_cache_as_not_resident(tmp_path: Path) -> None:
    f = tmp_path / "cold"
    f.write_bytes(os.urandom(1 << 20))
    fd = os.open(f, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    assert resident(f) < 1 << 20  # mincore read without faulting the pages in


@pytest.mark.parametrize("case", ["missing", "symlink", "directory", "fifo", "empty"])
def test_what_cannot_be_locked_is_a_reason_not_a_traceback(tmp_path: Path, case: str) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"x" * 100)
    path = tmp_path / case
    if case == "symlink":
        path.symlink_to(target)
    elif case == "directory":
        path.mkdir()
    elif case == "fifo":
        os.mkfifo(path)
    elif case == "empty":
        path.write_bytes(b"")
    with pytest.raises(LockError) as info:
        LockedFile(path)
    expected = {
        "missing": "does not exist",
        "symlink": "is a symlink",
        "directory": "is a directory, not a regular file",
        "fifo": "is a FIFO, not a regular file",
        "empty": "is empty",
    }[case]
    assert info.value.reason == expected


_OVER_LIMIT = """
import resource, sys
from pathlib import Path
from dom0.memlock.locker import LockedFile, LockError
resource.setrlimit(resource.RLIMIT_MEMLOCK, (1 << 20, 1 << 20))
try:
    LockedFile(Path(sys.argv[1]))
except LockError as exc:
    print(exc.reason)
else:
    print("locked")
"""


def test_a_file_over_rlimit_memlock_is_refused_with_the_reason(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"\1" * (4 << 20))
    # root's CAP_IPC_LOCK ignores the limit: drop it in the child when running as root (setpriv), else run as is
    cmd = [sys.executable, "-c", _OVER_LIMIT, str(big)]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", *cmd]
    proc = run.run(cmd, check=False, timeout=60)
    out = proc.stdout.decode().strip()
    assert proc.returncode == 0, proc.stderr.decode()
    assert out in (
        "over the lock limit (RLIMIT_MEMLOCK) or out of memory",
        "the kernel could not lock it all now (RLIMIT_MEMLOCK or memory pressure)",
    ), out
