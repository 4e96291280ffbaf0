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
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from dom0.errors import Dom0Error
from dom0.saves.hangup import cancel_waiting_reader, cancel_waiting_writer, fifo_inode, open_fifo

T = TypeVar("T")

WORK_PREFIX = ".dom0-"
FIFO = "stream"
LOCK = "lock"
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# What a hypervisor writes on its second open (libvirt's header, its guest definition inside): far less than this.
TRAILER_LIMIT = 64 << 20
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, named only from Python 3.10 on some builds
PIPE_BYTES = 1 << 20  # fewer, larger reads: the default 64 KiB pipe costs a system call per 64 KiB


class WorkDir:
    """`DIR/.dom0-KIND-NAME-XXXX/`: the FIFO and the partial files of one save or restore, removed on exit.

    Made by dom0's user with mode 0700 in a directory only that user may write to (check_directory), and used
    through a descriptor of its own (`fd`), so nothing in it can be planted or swapped. A lock file held for the
    whole run tells a later run whether the directory's owner is still alive.
    """

    def __init__(self, directory: Path, kind: str, name: str) -> None:
        check_directory(directory)
        self.path = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{kind}-{name}-", dir=directory))
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        problem = _not_ours(os.fstat(self.fd), stat.S_IFDIR, os.stat(directory).st_dev)
        if problem:  # mkdtemp makes it 0700 and ours; anything else means it is not the directory just made
            os.close(self.fd)
            raise Dom0Error(f"{self.path} {problem}", "is something else creating files in the save directory?")
        self.fifo = self.path / FIFO
        os.mkfifo(FIFO, 0o600, dir_fd=self.fd)
        self._lock = os.open(LOCK, _NEW_FILE, 0o600, dir_fd=self.fd)
        fcntl.flock(self._lock, fcntl.LOCK_EX)

    def replace_fifo(self) -> None:
        """A new FIFO at the same path; whoever opened the old one stays on it, a later open of the path waits.

        libvirt's QEMU driver reopens the path the moment its stream ends. On the FIFO dom0 still reads that open
        would go through at once, its final header mixed into the stream or lost, and the guest stopped before its
        image is durable. Swapped in during the stream, the new FIFO makes that open wait for dom0.
        """
        os.mkfifo(FIFO + ".next", 0o600, dir_fd=self.fd)
        os.rename(FIFO + ".next", FIFO, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def cancel_waiting_writer(self) -> None:
        """Make the hypervisor waiting to reopen this FIFO fail its save (saves/hangup.py)."""
        cancel_waiting_writer(Path(FIFO), dir_fd=self.fd)

    def __enter__(self) -> WorkDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the directory and everything still in it."""
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock)
        os.close(self.fd)


def check_directory(directory: Path) -> None:
    """Refuse a save directory other users could write to: they could plant links or FIFOs where dom0, often
    running as root, writes images and finishes interrupted saves. A directory that does not exist yet is fine."""
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise Dom0Error(f"cannot use {directory}: {exc.strerror}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise Dom0Error(f"{directory} is not a directory", "give the save directory with -d")
    me = os.geteuid()
    user = "root" if me == 0 else f"uid {me}"
    if st.st_uid != me:
        raise Dom0Error(
            f"{directory} belongs to uid {st.st_uid}, not {user}: its owner could plant files dom0 acts on",
            f"chown {0 if me == 0 else me} {directory}, or use a directory of {user}'s own",
        )
    if st.st_mode & 0o022:
        raise Dom0Error(
            f"{directory} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o}): they could plant files"
            " dom0 acts on",
            f"chmod go-w {directory}",
        )


def _not_ours(st: os.stat_result, kind: int, dev: int) -> str:
    """What makes a work directory or one of its files something dom0 did not make ('' when it could be)."""
    if stat.S_IFMT(st.st_mode) != kind:
        return f"is {_KINDS.get(stat.S_IFMT(st.st_mode), 'something else')}, not {_KINDS[kind]}"
    if st.st_uid != os.geteuid():
        return f"belongs to uid {st.st_uid}"
    if st.st_dev != dev:
        return "is on another file system"
    if kind == stat.S_IFDIR and st.st_mode & 0o077:
        return f"has mode {stat.S_IMODE(st.st_mode):04o}, not 0700"
    if st.st_mode & 0o022:
        return "is writable by other users"
    return ""


_KINDS = {
    stat.S_IFREG: "a file",
    stat.S_IFDIR: "a directory",
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _grow(fd: int) -> None:
    # Over /proc/sys/fs/pipe-max-size for an unprivileged user: the default size still works.
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_BYTES)


def open_reader(fifo: Path, alive: Callable[[], bool]) -> int | None:
    """Open `fifo` for reading once the other side has opened it for writing; None if `alive()` turns false first."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
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
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
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


def read_all(fd: int, limit: int = TRAILER_LIMIT, seconds: float | None = None) -> bytes:
    """Everything until the writer closes; Dom0Error once more than `limit` bytes came, or `seconds` passed."""
    parts: list[bytes] = []
    got = 0
    deadline = None if seconds is None else time.monotonic() + seconds
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    while True:
        if deadline is not None and not poller.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            raise Dom0Error(f"the hypervisor was still writing after {seconds:g} s, where it writes a header")
        chunk = os.read(fd, PIPE_BYTES)
        if not chunk:
            return b"".join(parts)
        got += len(chunk)
        if got > limit:
            raise Dom0Error(f"the hypervisor wrote more than {limit} bytes where it writes a header")
        parts.append(chunk)


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
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
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
    A leftover that is not what dom0 makes (a link, a file of another user, a device where the FIFO was) is never
    followed, read or written: it is reported and left alone.
    """
    check_directory(directory)
    home = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        dev = os.fstat(home).st_dev
        notes = [_sweep_one(home, dev, name) for name in sorted(os.listdir(home)) if name.startswith(WORK_PREFIX)]
    finally:
        os.close(home)
    return [note for note in notes if note]


def sweep_leftovers(directory: Path, *, dry_run: bool) -> list[str]:
    """`sweep` for the directory a save, restore or host stop/start is about to use (a dry run only checks it).

    Called before connecting: a hypervisor an interrupted run left waiting on its FIFO holds its guests' locks,
    so listing them would hang.
    """
    if not directory.is_dir():
        return []
    check_directory(directory)  # a dry run says so too
    return [] if dry_run else sweep(directory)


def _sweep_one(home: int, dev: int, name: str) -> str:
    try:
        st = os.stat(name, dir_fd=home, follow_symlinks=False)
    except FileNotFoundError:
        return ""
    if stat.S_ISLNK(st.st_mode):
        return _alien(name, "it is a symbolic link")
    if not stat.S_ISDIR(st.st_mode):
        return ""  # a file that merely shares the prefix
    try:
        work = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=home)
    except OSError:
        return _alien(name, "it changed while dom0 looked at it")
    try:
        try:
            lock = os.open(LOCK, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=work)
        except FileNotFoundError:
            return ""  # no lock file: not a work directory at all
        except OSError:
            return _alien(name, f"its {LOCK} is not a file")
        try:
            problem = _not_ours(os.fstat(work), stat.S_IFDIR, dev)
            problem = problem or _in(LOCK, _not_ours(os.fstat(lock), stat.S_IFREG, dev))
            if problem:
                return _alien(name, problem)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return ""  # its owner is alive
            return _finish_or_remove(home, dev, name, work)
        finally:
            os.close(lock)
    finally:
        os.close(work)


def _alien(name: str, why: str) -> str:
    return f"left {name} alone: {why}, which dom0 does not make (remove it by hand once you know what it is)"


def _in(entry: str, problem: str) -> str:
    return f"its {entry} {problem}" if problem else ""


def _entries(work: int, dev: int) -> tuple[dict[str, os.stat_result], str]:
    """What the work directory holds, each entry looked at without following it; and what is not dom0's in it."""
    found: dict[str, os.stat_result] = {}
    for entry in os.listdir(work):
        st = os.stat(entry, dir_fd=work, follow_symlinks=False)
        if entry in (FIFO, FIFO + ".next"):
            kind = stat.S_IFIFO
        elif entry == LOCK or (entry.endswith(".partial") and not entry.startswith(".")):
            kind = stat.S_IFREG
        else:
            return found, f"it holds {entry}"
        problem = _in(entry, _not_ours(st, kind, dev))
        if problem:
            return found, problem
        found[entry] = st
    return found, ""


def _finish_or_remove(home: int, dev: int, name: str, work: int) -> str:
    entries, problem = _entries(work, dev)
    if problem:
        return _alien(name, problem)
    metas = sorted(e for e in entries if e.endswith(".manifest.json.partial"))
    images = sorted(e for e in entries if e.endswith(".partial") and e not in metas)
    if not (metas and images and FIFO in entries):
        # A hypervisor may still wait on the FIFO: a save for its second open, a restore for its stream.
        if name.startswith(f"{WORK_PREFIX}save-"):
            cancel_waiting_writer(Path(FIFO), dir_fd=work)
        else:
            cancel_waiting_reader(Path(FIFO), dir_fd=work)
        shutil.rmtree(name, ignore_errors=True, dir_fd=home)
        return f"removed {name}, left by a dom0 run that was interrupted (its guest was not saved)"
    for partial in (*images, *metas):
        # The run may have died before its fsync: durable before the guest stops.
        fd = os.open(partial, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=work)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    try:
        fd = open_fifo(Path(FIFO), os.O_RDONLY, work, fifo_inode(Path(FIFO), work))
    except OSError:
        return _alien(name, f"its {FIFO} changed while dom0 looked at it")
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        if poller.poll(2000):  # a hypervisor still waiting on its second open gets through and finishes
            os.set_blocking(fd, True)
            with contextlib.suppress(Dom0Error):  # more than a header: dom0 stops reading, the writer gets EPIPE
                read_all(fd, TRAILER_LIMIT, seconds=10)
    finally:
        os.close(fd)
    for partial in (*images, *metas):
        os.rename(partial, partial.removesuffix(".partial"), src_dir_fd=work, dst_dir_fd=home)
    os.fsync(home)
    shutil.rmtree(name, ignore_errors=True, dir_fd=home)
    return f"finished {metas[0].removesuffix('.manifest.json.partial')}'s save, which an interrupted dom0 run left"
