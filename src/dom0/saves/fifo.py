"""The FIFO a hypervisor saves into or restores from, in a private work directory, and the thread that drives it.

The hypervisor (libvirtd, xl) opens the FIFO's path itself, so dom0 never holds its side: dom0 waits for the other
end with a non-blocking open and poll, checking that the hypervisor call is still running, so a call that fails
before it opens the path never leaves dom0 waiting.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from dom0.saves.hangup import cancel_waiting_reader, cancel_waiting_writer

T = TypeVar("T")

WORK_PREFIX = ".dom0-"
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, named only from Python 3.10 on some builds
PIPE_BYTES = 1 << 20  # fewer, larger reads: the default 64 KiB pipe costs a system call per 64 KiB


class WorkDir:
    """`DIR/.dom0-KIND-NAME-XXXX/`: the FIFO and the partial files of one save or restore, removed on exit.

    A lock file held for the whole run tells a later run whether the directory's owner is still alive.
    """

    def __init__(self, directory: Path, kind: str, name: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{kind}-{name}-", dir=directory))
        self.fifo = self.path / "stream"
        os.mkfifo(self.fifo, 0o600)
        self._lock = os.open(self.path / "lock", os.O_WRONLY | os.O_CREAT, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)

    def replace_fifo(self) -> None:
        """A new FIFO at the same path; whoever opened the old one stays on it, a later open of the path waits.

        libvirt's QEMU driver reopens the path the moment its stream ends. On the FIFO dom0 still reads that open
        would go through at once, its final header mixed into the stream or lost, and the guest stopped before its
        image is durable. Swapped in during the stream, the new FIFO makes that open wait for dom0.
        """
        fresh = self.path / "stream.next"
        os.mkfifo(fresh, 0o600)
        os.rename(fresh, self.fifo)

    def __enter__(self) -> WorkDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the directory and everything still in it."""
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock)


def _grow(fd: int) -> None:
    # Over /proc/sys/fs/pipe-max-size for an unprivileged user: the default size still works.
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_BYTES)


def open_reader(fifo: Path, alive: Callable[[], bool]) -> int | None:
    """Open `fifo` for reading once the other side has opened it for writing; None if `alive()` turns false first."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    poller = select.poll()
    # A FIFO reports neither data nor hang-up until a writer has come: poll waits for the hypervisor's open.
    poller.register(fd, select.POLLIN | select.POLLHUP)
    while not poller.poll(100):
        if not alive():
            os.close(fd)
            return None
    os.set_blocking(fd, True)
    _grow(fd)
    return fd


def open_writer(fifo: Path, alive: Callable[[], bool]) -> int | None:
    """Open `fifo` for writing once the other side has opened it for reading; None if `alive()` turns false first."""
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
            if not alive():
                return None
            time.sleep(0.005)  # the hypervisor opens it within milliseconds; each restore waits this long at most
            continue
        os.set_blocking(fd, True)
        _grow(fd)
        return fd


def read_all(fd: int) -> bytes:
    """Everything until the writer closes."""
    parts = []
    while chunk := os.read(fd, PIPE_BYTES):
        parts.append(chunk)
    return b"".join(parts)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of `data` (a pipe takes at most its buffer size per call)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class Background(Generic[T]):
    """A hypervisor call running in a thread while the caller feeds or drains its FIFO."""

    def __init__(self, call: Callable[[], T], name: str) -> None:
        self._call = call
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._call()
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def alive(self) -> bool:
        """Whether the call is still running."""
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the call to end; whether it did within `timeout`."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def result(self) -> T:
        """The call's value once it ended; re-raises its exception."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set whenever no error was


def fsync_file(path: Path) -> None:
    """Make a written file durable (it survives a power cut)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Make renames in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep(directory: Path) -> list[str]:
    """Deal with the work directories of dom0 runs that died (kill -9, power loss); what was done, in words.

    A run that died after its image was complete (its manifest is written before the hypervisor is let go) is
    finished: the hypervisor, waiting on its second open of the FIFO, is let through and the files move into
    place. Anything else is removed: the hypervisor's save failed when the FIFO closed, and its guest runs on.
    """
    notes: list[str] = []
    for work in sorted(directory.glob(f"{WORK_PREFIX}*")):
        lock = work / "lock"
        if not work.is_dir() or not lock.exists():
            continue
        fd = os.open(lock, os.O_WRONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # its owner is alive
        try:
            notes.append(_finish_or_remove(directory, work))
        finally:
            os.close(fd)
    return notes


def _finish_or_remove(directory: Path, work: Path) -> str:
    metas = sorted(work.glob("*.manifest.json.partial"))
    images = [p for p in work.glob("*.partial") if p not in metas]
    if not (metas and images and (work / "stream").exists()):
        # A hypervisor may still wait on the FIFO: a save for its second open, a restore for its stream.
        if work.name.startswith(f"{WORK_PREFIX}save-"):
            cancel_waiting_writer(work / "stream")
        else:
            cancel_waiting_reader(work / "stream")
        shutil.rmtree(work, ignore_errors=True)
        return f"removed {work.name}, left by a dom0 run that was interrupted (its guest was not saved)"
    for partial in (*images, *metas):
        fsync_file(partial)  # the run may have died before its fsync; durable before the guest stops
    fd = os.open(work / "stream", os.O_RDONLY | os.O_NONBLOCK)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        if poller.poll(2000):  # a hypervisor still waiting on its second open gets through and finishes
            os.set_blocking(fd, True)
            read_all(fd)
    finally:
        os.close(fd)
    for partial in (*images, *metas):
        os.rename(partial, directory / partial.name.removesuffix(".partial"))
    fsync_dir(directory)
    shutil.rmtree(work, ignore_errors=True)
    return f"finished {metas[0].name.removesuffix('.manifest.json.partial')}'s save, which an interrupted dom0 run left"
