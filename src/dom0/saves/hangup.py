"""Releasing a hypervisor that waits on one of dom0's FIFOs after dom0 gave up on it, without losing its guest.

libvirt's QEMU driver finishes a save by reopening the file to rewrite its header. On dom0's FIFO that open blocks
until dom0 reads again, with the guest paused and its lock held: every libvirt call on the host's guests then
waits, and libvirtd no longer stops on SIGTERM. When dom0 cannot keep the image (a full disk after the stream, a
killed run found by the next one), that header write must fail, so libvirt cancels the save and resumes the guest.

Simply opening the FIFO's read end and closing it races libvirtd: were its write to land in between, the save
would complete with no image. So the waiting daemon is stopped for a moment (SIGSTOP makes its open give up and
restart later), the pipe is opened and filled to the brim, and the daemon continued: its restarted open finds a
reader, its header write blocks on the full pipe, and fails with EPIPE once dom0 closes the only reader.

Only a daemon that is what it says is stopped: its executable is a libvirtd or virtqemud binary owned by root
(by dom0's own user when dom0 does not run as root), the process runs as that user, and one of its threads is
blocked in open(2) on this very FIFO (the path it asked for, read from its memory, is this FIFO's inode). A
watchdog process continues it should dom0 die while it is stopped.
"""

from __future__ import annotations

import contextlib
import os
import platform
import select
import signal
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

# The daemons that run libvirt's QEMU driver: the monolithic one, and the modular one of newer libvirt.
QEMU_DAEMONS = frozenset({"libvirtd", "virtqemud"})
PROC = Path("/proc")
# Where a thread sleeps in the kernel while its open(2) of a FIFO waits for the other end.
FIFO_OPEN_WAIT = "wait_for_partner"
SETTLE_S = 2.0
# The watchdog continues a stopped daemon after this long even while dom0 lives: the stop is meant for milliseconds.
STOP_LIMIT_S = 5.0
_DONE = b"d"
# open(2)-family system calls a blocked FIFO open shows in /proc/PID/task/TID/syscall: number -> (index of the
# directory fd argument, None for plain open; index of the path argument).
_OPEN_CALLS: dict[str, dict[int, tuple[int | None, int]]] = {
    "x86_64": {2: (None, 0), 257: (0, 1), 437: (0, 1)},
    "aarch64": {56: (0, 1), 437: (0, 1)},
    "riscv64": {56: (0, 1), 437: (0, 1)},
}
_AT_FDCWD = -100
_PATH_MAX = 4096

Thread = tuple[int, int]  # (pid, tid)
Inode = tuple[int, int]  # (st_dev, st_ino)


def cancel_waiting_writer(fifo: Path, *, dir_fd: int | None = None, proc: Path = PROC) -> None:
    """Make a QEMU-driver daemon blocked opening `fifo` for writing fail its save, and its guest run on.

    `fifo` is relative to `dir_fd` when that is given. Anything at that name but a FIFO is left alone.
    """
    found = fifo_inode(fifo, dir_fd)
    if found is None:
        return
    waiting = waiting_threads(found, proc)
    if not waiting:
        # Nothing waits, or /proc does not show it (not root): the plain open and close is all there is.
        with contextlib.suppress(OSError):
            os.close(open_fifo(fifo, os.O_RDONLY, dir_fd, found))
        return
    fd = _stopped_while(waiting, lambda: _open_full(fifo, dir_fd, found), proc)
    if fd is None:
        return
    try:
        # Each waiter on this FIFO restarts its open, finds dom0 reading, and blocks writing into the full pipe.
        _settle(lambda: all(_released(proc, t) for t in waiting))
    finally:
        os.close(fd)  # the only reader gone: the blocked header write fails with EPIPE


def cancel_waiting_reader(fifo: Path, *, dir_fd: int | None = None) -> None:
    """Make a hypervisor blocked opening `fifo` for reading (a restore) see an empty stream and fail."""
    with contextlib.suppress(OSError):  # ENXIO: nobody waits; ELOOP/ENOTDIR...: not a FIFO, left alone
        os.close(open_fifo(fifo, os.O_WRONLY, dir_fd, fifo_inode(fifo, dir_fd)))


def fifo_inode(fifo: Path, dir_fd: int | None = None) -> Inode | None:
    """The FIFO's identity, looked at without opening it (an open would let a waiting writer through); None when
    the name is not a FIFO (a symbolic link, a file, a device) or is gone."""
    try:
        st = os.stat(fifo, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISFIFO(st.st_mode) else None


def open_fifo(fifo: Path, flags: int, dir_fd: int | None, inode: Inode | None) -> int:
    """`fifo` opened without waiting and without following a symbolic link, when it is the FIFO `inode`.

    OSError otherwise (ELOOP for a link, ENXIO when a write end finds no reader), so a file, a device or a link
    planted under the name is neither written nor read.
    """
    if inode is None:
        raise OSError(f"{fifo} is not a FIFO")
    fd = os.open(fifo, flags | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISFIFO(st.st_mode) or (st.st_dev, st.st_ino) != inode:
        os.close(fd)
        raise OSError(f"{fifo} was replaced")
    return fd


def waiting_threads(inode: Inode, proc: Path = PROC) -> list[Thread]:
    """Threads of the host's QEMU-driver daemons that sleep opening the FIFO `inode` (libvirt's save waits there)."""
    found: list[Thread] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if (entry / "comm").read_text().strip() not in QEMU_DAEMONS or not _is_daemon(entry):
                continue
            tasks = [int(t.name) for t in (entry / "task").iterdir()]
        except (OSError, ValueError):
            continue  # gone, or not ours to read
        found += [(pid, tid) for tid in tasks if _opening(proc, (pid, tid)) == inode]
    return found


def _is_daemon(entry: Path) -> bool:
    """Whether the process runs a real libvirtd/virtqemud binary as the host's user (root, or dom0's own user).

    A process can name itself anything (prctl); its executable and its user it cannot choose.
    """
    owner = os.geteuid()
    exe = os.readlink(entry / "exe").removesuffix(" (deleted)")  # an upgraded package leaves the old one running
    if os.path.basename(exe) not in QEMU_DAEMONS or os.stat(entry / "exe").st_uid not in (0, owner):
        return False  # as root, only a root-owned binary: a user's copy named libvirtd is not the host's daemon
    for line in (entry / "status").read_text().splitlines():
        if line.startswith("Uid:"):
            return all(int(uid) == owner for uid in line.split()[1:])
    return False


def _opening(proc: Path, thread: Thread) -> Inode | None:
    """The inode a thread blocked opening a FIFO asked for; None when it is doing anything else.

    /proc shows the system call and its arguments, not the path: the path is read from the thread's memory at
    the argument's address and looked up as the thread would, through its own root, working or given directory.
    """
    if _wchan(proc, thread) != FIFO_OPEN_WAIT:
        return None
    pid, tid = thread
    calls = _OPEN_CALLS.get(platform.machine(), {})
    try:
        fields = (proc / str(pid) / "task" / str(tid) / "syscall").read_text().split()
        nr, args = int(fields[0]), [int(a, 16) for a in fields[1:7]]
    except (OSError, ValueError, IndexError):
        return None
    if nr not in calls:
        return None
    dir_index, path_index = calls[nr]
    path = _read_string(proc / str(pid) / "mem", args[path_index])
    if not path:
        return None
    dirfd = _AT_FDCWD if dir_index is None else _signed32(args[dir_index])
    if path.startswith(b"/"):
        base = proc / str(pid) / "root"
    else:
        base = proc / str(pid) / ("cwd" if dirfd == _AT_FDCWD else f"fd/{dirfd}")
    try:
        st = os.stat(os.fsencode(base) + b"/" + path.lstrip(b"/"))
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISFIFO(st.st_mode) else None


def _signed32(register: int) -> int:
    """An int argument as the kernel shows it (AT_FDCWD appears as 0xffffff9c)."""
    value = register & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _read_string(mem: Path, address: int) -> bytes:
    """The NUL-terminated string at `address` in a process's memory (b'' when unreadable or too long)."""
    try:
        fd = os.open(mem, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        data = b""
        while len(data) < _PATH_MAX:
            # Page by page: the string may end just before an unmapped page.
            step = 4096 - (address + len(data)) % 4096
            chunk = os.pread(fd, step, address + len(data))
            if not chunk:
                return b""
            end = chunk.find(b"\0")
            if end >= 0:
                return data + chunk[:end]
            data += chunk
        return b""
    except (OSError, OverflowError):
        return b""
    finally:
        os.close(fd)


@contextlib.contextmanager
def stopped(pids: list[int]) -> Iterator[list[int]]:
    """Stop the processes (SIGSTOP) for the block; continued when it ends, and by a watchdog should dom0 die.

    The watchdog is a forked child waiting on a pipe: told "done" it exits; seeing the pipe close without that
    (dom0 killed, even by SIGKILL) or waiting longer than STOP_LIMIT_S, it continues them itself. It runs in its own
    session and ignores the terminal's and systemd's signals, so a Ctrl-C or SIGTERM meant for dom0 spares it.
    """
    told, tell = os.pipe()
    try:
        watchdog = os.fork()
    except OSError:
        os.close(told)
        os.close(tell)
        raise
    if watchdog == 0:  # pragma: no cover - the child; measured by the test that kills its parent
        _watch(told, pids)
    os.close(told)
    done: list[int] = []
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGSTOP)
                done.append(pid)
        yield done
    finally:
        for pid in done:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        with contextlib.suppress(OSError):
            os.write(tell, _DONE)
        os.close(tell)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(watchdog, 0)


def _watch(told: int, pids: list[int]) -> None:
    """The watchdog's whole life: only system calls, as befits a child forked from a threaded process."""
    try:
        os.closerange(0, told)  # every other descriptor (other saves' FIFOs, locks) must not outlive dom0 here
        os.closerange(told + 1, 1 << 16)
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        ready, _, _ = select.select([told], [], [], STOP_LIMIT_S)
        if not ready or os.read(told, 1) != _DONE:
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGCONT)
    finally:
        os._exit(0)


def _stopped_while(threads: list[Thread], action: Callable[[], int | None], proc: Path) -> int | None:
    """Run `action` while the threads' processes are stopped, and continue them whatever happens."""
    with stopped(sorted({pid for pid, _ in threads})) as pids:
        if not pids:
            return None
        _settle(lambda: all(_state(proc, t) in ("T", "t", "") for t in threads if t[0] in pids))
        return action()


def _open_full(fifo: Path, dir_fd: int | None, inode: Inode) -> int | None:
    """The FIFO opened for reading and writing (which waits for nobody), its buffer filled so writes block."""
    try:
        fd = open_fifo(fifo, os.O_RDWR, dir_fd, inode)
    except OSError:
        return None
    block = bytes(64 << 10)
    try:
        while True:
            os.write(fd, block)  # a pipe: it fills up (a file never would; open_fifo refused anything else)
    except BlockingIOError:
        pass  # full
    except OSError:
        os.close(fd)
        raise
    return fd


def _settle(done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + SETTLE_S
    while not done() and time.monotonic() < deadline:
        time.sleep(0.005)


def _released(proc: Path, thread: Thread) -> bool:
    """Whether a continued thread has redone its open: blocked writing into dom0's full pipe, or waiting again.

    Its open restarts from the path: on dom0's FIFO it finds a reader and goes on to write; a thread that waits in
    an open again is on another FIFO (one with no reader).
    """
    state = _state(proc, thread)
    if not state:
        return True
    wchan = _wchan(proc, thread)
    return "pipe_write" in wchan or (wchan == FIFO_OPEN_WAIT and state not in ("T", "t"))


def _wchan(proc: Path, thread: Thread) -> str:
    try:
        return (proc / str(thread[0]) / "task" / str(thread[1]) / "wchan").read_text().strip()
    except OSError:
        return ""


def _state(proc: Path, thread: Thread) -> str:
    """The thread's one-letter state from /proc (T: stopped), '' once it is gone."""
    try:
        stat_line = (proc / str(thread[0]) / "task" / str(thread[1]) / "stat").read_text()
    except OSError:
        return ""
    return stat_line.rsplit(")", 1)[1].split()[0]
