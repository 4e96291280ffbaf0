"""Releasing a hypervisor that waits on one of dom0's FIFOs after dom0 gave up on it, without losing its guest.

libvirt's QEMU driver finishes a save by reopening the file to rewrite its header. On dom0's FIFO that open blocks
until dom0 reads again, with the guest paused and its lock held: every libvirt call on the host's guests then
waits, and libvirtd no longer stops on SIGTERM. When dom0 cannot keep the image (a full disk after the stream, a
killed run found by the next one), that header write must fail, so libvirt cancels the save and resumes the guest.

Simply opening the FIFO's read end and closing it races libvirtd: were its write to land in between, the save
would complete with no image. So the waiting daemon is stopped for a moment (SIGSTOP makes its open give up and
restart later), the pipe is opened and filled to the brim, and the daemon continued: its restarted open finds a
reader, its header write blocks on the full pipe, and fails with EPIPE once dom0 closes the only reader.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

# The daemons that run libvirt's QEMU driver: the monolithic one, and the modular one of newer libvirt.
QEMU_DAEMONS = frozenset({"libvirtd", "virtqemud"})
PROC = Path("/proc")
# Where a thread sleeps in the kernel while its open(2) of a FIFO waits for the other end.
FIFO_OPEN_WAIT = "wait_for_partner"
SETTLE_S = 2.0

Thread = tuple[int, int]  # (pid, tid)


def cancel_waiting_writer(fifo: Path, proc: Path = PROC) -> None:
    """Make a QEMU-driver daemon blocked opening `fifo` for writing fail its save, and its guest run on."""
    waiting = waiting_threads(proc)
    if not waiting:
        # Nothing waits, or /proc does not show it (not root): the plain open and close is all there is.
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        return
    fd = _stopped_while(waiting, lambda: _open_full(fifo), proc)
    if fd is None:
        return
    try:
        # Each waiter on this FIFO restarts its open, finds dom0 reading, and blocks writing into the full pipe.
        _settle(lambda: all(_released(proc, t) for t in waiting))
    finally:
        os.close(fd)  # the only reader gone: the blocked header write fails with EPIPE


def cancel_waiting_reader(fifo: Path) -> None:
    """Make a hypervisor blocked opening `fifo` for reading (a restore) see an empty stream and fail."""
    with contextlib.suppress(OSError):  # ENXIO: nobody waits
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def waiting_threads(proc: Path = PROC) -> list[Thread]:
    """Threads of the QEMU-driver daemons that sleep opening a FIFO (libvirt's save waits there for dom0)."""
    found: list[Thread] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() not in QEMU_DAEMONS:
                continue
            tasks = list((entry / "task").iterdir())
        except OSError:
            continue  # gone, or not ours to read
        pid = int(entry.name)
        found += [(pid, int(t.name)) for t in tasks if _wchan(proc, (pid, int(t.name))) == FIFO_OPEN_WAIT]
    return found


def _stopped_while(threads: list[Thread], action: Callable[[], int | None], proc: Path) -> int | None:
    """Run `action` while the threads' processes are stopped, and continue them whatever happens."""
    stopped: list[int] = []
    try:
        for pid in sorted({pid for pid, _ in threads}):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        if not stopped:
            return None
        _settle(lambda: all(_state(proc, t) in ("T", "t", "") for t in threads if t[0] in stopped))
        return action()
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _open_full(fifo: Path) -> int | None:
    """The FIFO opened for reading and writing (which waits for nobody), its buffer filled so writes block."""
    try:
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    except OSError:
        return None
    block = bytes(64 << 10)
    try:
        while True:
            os.write(fd, block)
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
        stat = (proc / str(thread[0]) / "task" / str(thread[1]) / "stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]
