"""Saving into and restoring from a FIFO inside the lab, as `dom0 save`/`dom0 restore` do, and recording what the
hypervisor did with the FIFO: how many times it opened it, and whether it wrote anything on a second open (as
libvirt's QEMU driver does to finish its header).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# What the harness itself writes into the FIFO to end a read that is waiting for a writer.
END = b"dom0test: end of capture"


_IN_CLOSE_WRITE = 0x08
_IN_CLOSE_NOWRITE = 0x10
_IN_OPEN = 0x20
_EVENT = struct.Struct("iIII")


class OpenWatch:
    """Counts the opens of a path (any process) with inotify: closes of write opens and of read-only opens."""

    def __init__(self, path: Path) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        mask = _IN_OPEN | _IN_CLOSE_WRITE | _IN_CLOSE_NOWRITE
        if self._libc.inotify_add_watch(self._fd, str(path).encode(), mask) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
        self.opens = self.write_closes = self.read_closes = 0

    def collect(self) -> OpenWatch:
        """Read the events so far and stop watching."""
        while True:
            try:
                buf = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            at = 0
            while at < len(buf):
                _wd, mask, _cookie, length = _EVENT.unpack_from(buf, at)
                at += _EVENT.size + length
                self.opens += bool(mask & _IN_OPEN)
                self.write_closes += bool(mask & _IN_CLOSE_WRITE)
                self.read_closes += bool(mask & _IN_CLOSE_NOWRITE)
        os.close(self._fd)
        return self


@dataclass
class SaveCapture:
    """What arrived through the FIFO while the hypervisor saved into it."""

    data: bytes  # everything of the first open, up to the hypervisor's close
    second_open: bytes  # what a second writer wrote: END alone when the hypervisor opened the FIFO only once
    seconds: float
    hypervisor_write_opens: int  # the FIFO's write opens that were not the harness's own
    errors: list[BaseException] = field(default_factory=list)

    @property
    def reopened(self) -> bool:
        """Whether the hypervisor opened the FIFO again after the stream and wrote to it."""
        return self.second_open != END


def _poke(fifo: Path, timeout: float = 10.0) -> bool:
    """Write END into the FIFO once a reader waits on it; False when none came within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
            time.sleep(0.05)
            continue
        try:
            os.set_blocking(fd, True)
            os.write(fd, END)
        finally:
            os.close(fd)
        return True
    return False


def save_through_fifo(hv: Any, ref: str, fifo: Path) -> SaveCapture:
    """`hv.save(ref, fifo)` with a reader thread that keeps what arrives, then waits for a second writer."""
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo, 0o600)
    chunks: list[bytes] = []
    second = bytearray()
    errors: list[BaseException] = []
    first_done = threading.Event()

    def reader() -> None:
        try:
            with open(fifo, "rb") as f:  # blocks until the hypervisor opens the FIFO for writing
                while chunk := f.read(1 << 20):
                    chunks.append(chunk)
            first_done.set()
            with open(fifo, "rb") as f:  # the hypervisor reopening it, or the harness's END
                second.extend(f.read())
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    watch = OpenWatch(fifo)
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    start = time.monotonic()
    ok = False
    pokes = 0
    try:
        hv.save(ref, str(fifo))
        ok = True
    finally:
        seconds = time.monotonic() - start
        if ok:
            first_done.wait(60)  # the hypervisor closed the FIFO; the reader is draining what is left in it
        else:  # it may never have opened the FIFO: END ends the reader's first read
            pokes += _poke(fifo, 2)
            first_done.wait(5)
        pokes += _poke(fifo)
        t.join(30)
        watch.collect()
        fifo.unlink(missing_ok=True)
    return SaveCapture(b"".join(chunks), bytes(second), seconds, watch.write_closes - pokes, errors)


@dataclass
class RestoreFeed:
    """How feeding the FIFO went while the hypervisor restored from it."""

    written: int
    errors: list[BaseException]
    seconds: float
    hypervisor_read_opens: int  # the FIFO's read-only opens that were not the harness's own


def restore_through_fifo(hv: Any, data: bytes, fifo: Path, *, paused: bool = False) -> tuple[Any, RestoreFeed]:
    """`hv.restore(fifo)` with a writer thread feeding `data` into the FIFO; (the restored Guest, the feed)."""
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo, 0o600)
    errors: list[BaseException] = []
    written = [0]

    def writer() -> None:
        try:
            with open(fifo, "wb") as f:  # blocks until the hypervisor opens the FIFO for reading
                view = memoryview(data)
                for at in range(0, len(data), 1 << 20):
                    f.write(view[at : at + (1 << 20)])
                    written[0] = min(len(data), at + (1 << 20))
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    watch = OpenWatch(fifo)
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    start = time.monotonic()
    own_reads = 0
    try:
        guest = hv.restore(str(fifo), paused=paused)
    finally:
        seconds = time.monotonic() - start
        t.join(5)
        if t.is_alive():
            # the hypervisor never opened the FIFO (or stopped reading): a reader of our own lets the writer end
            fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            t.join(2)
            os.close(fd)
            own_reads += 1
            t.join(10)
        watch.collect()
        fifo.unlink(missing_ok=True)
    return guest, RestoreFeed(written[0], errors, seconds, watch.read_closes - own_reads)
