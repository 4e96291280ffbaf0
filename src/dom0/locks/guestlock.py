"""Per-guest flock(2) locks under /run/dom0/locks, the holder's words inside, and /proc/locks to believe them."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dom0.errors import Dom0Error
from dom0.filedata import open_own_directory

# Where the locks live. /run is a tmpfs: a boot starts with none, and nothing there outlives the host's uptime.
RUN_DIRECTORY = Path("/run/dom0/locks")
DIRECTORY_ENV = "DOM0_LOCK_DIR"  # another directory, for a test or a second dom0 installation
POLL_SECONDS = 0.2
_HOLDER_READ = 4096  # a holder's words are one short JSON line; a larger file is not one of dom0's
_UUID = re.compile(r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}\Z")

# What each changing command does to a guest, as the refusal says it: "web is being saved by dom0 pid 4242".
ACTIONS = {
    "save": "saved",
    "restore": "restored",
    "host stop": "saved for the host's shutdown",
    "host start": "restored at the host's start",
    "clone": "cloned",
    "export": "exported",
    "import": "imported",
    "start": "started",
    "shutdown": "shut down",
    "reboot": "rebooted",
    "destroy": "destroyed",
    "pause": "paused",
    "resume": "resumed",
    "mem set": "given new memory",
    "adapt": "adapted",
    "hints": "given package-tool hints",
}


@dataclass(frozen=True, slots=True)
class LockKey:
    """A guest to lock: its UUID names the lock (a rename does not escape it), its name is for the messages."""

    uuid: str
    name: str

    @property
    def file_name(self) -> str:
        if not _UUID.match(self.uuid):
            # Every libvirt and xl guest has a UUID; anything else is refused rather than turned into a path.
            raise Dom0Error(f"{self.name}: cannot lock a guest whose UUID is {self.uuid!r}", "report this as a bug")
        return self.uuid.replace("-", "").lower() + ".lock"


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a guest's lock: the kernel's word for the PID, the holder's own for the rest (when it wrote it)."""

    pid: int
    action: str = ""
    command: str = ""
    started: float | None = None

    def words(self) -> str:
        """'being saved by dom0 pid 4242 since 20:20:13'."""
        doing = f"being {ACTIONS.get(self.action, 'changed')}" if self.action else "being changed"
        since = ""
        if self.started is not None:
            moment = time.localtime(self.started)
            today = time.localtime()
            clock = time.strftime("%H:%M:%S", moment)
            same_day = moment.tm_yday == today.tm_yday and moment.tm_year == today.tm_year
            since = f" since {clock}" if same_day else f" since {time.strftime('%Y-%m-%d', moment)} {clock}"
        return f"{doing} by dom0 pid {self.pid}{since}"

    def to_json(self) -> dict[str, object]:
        """JSON view (for list --long)."""
        return {"pid": self.pid, "action": self.action or None, "command": self.command or None, "since": self.started}


class GuestBusy(Dom0Error):
    """Another dom0 run holds the guest's lock: nothing was touched."""

    def __init__(self, key: LockKey, holder: Holder, waited: float | None = None) -> None:
        self.key = key
        self.holder = holder
        if waited is None:
            hint = "try again when it ends, or add --wait-lock to wait for it"
        else:
            hint = (
                f"still held after waiting {waited:g} s; try again when it ends, or wait longer (--wait-lock=SECONDS)"
            )
        super().__init__(f"{key.name} is {holder.words()}", hint)


def lock_directory() -> Path:
    """Where this user's dom0 processes meet: /run/dom0/locks for root, the user's runtime directory otherwise."""
    named = os.environ.get(DIRECTORY_ENV)
    if named:
        return Path(named)
    if os.geteuid() == 0:
        return RUN_DIRECTORY
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "dom0" / "locks" if runtime else Path(f"/tmp/dom0-{os.geteuid()}") / "locks"


def _open_directory(create: bool) -> int | None:
    """The lock directory, opened without following a link and checked: this user's own, writable by no one else."""
    path = lock_directory()
    return open_own_directory(
        path,
        create=create,
        what="the lock directory",
        hint=f"dom0 keeps its per-guest locks there (another user's could be faked or blocked): remove or fix it and "
        f"run again, or set {DIRECTORY_ENV}",
    )


def _open_lock(directory: int, key: LockKey, create: bool) -> int | None:
    flags = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | (os.O_RDWR | os.O_CREAT if create else os.O_RDONLY)
    try:
        fd = os.open(key.file_name, flags, 0o600, dir_fd=directory)
    except FileNotFoundError:
        return None
    except OSError as exc:
        hint = "remove it: dom0's lock files are plain files it creates itself"
        raise Dom0Error(f"cannot open the lock of {key.name} ({key.file_name}): {exc.strerror}", hint) from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        raise Dom0Error(
            f"the lock of {key.name} ({key.file_name}) is not a file of this user's",
            "remove it: dom0's lock files are plain files it creates itself",
        )
    return fd


def _kernel_holder(fd: int) -> int | None:
    """The PID that holds an exclusive flock on the file behind `fd`, from /proc/locks (the kernel's own list)."""
    st = os.fstat(fd)
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read(1 << 22).splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:16638181 0 EOF"; a waiter's line starts "1: ->"
        if len(parts) < 6 or parts[1] != "FLOCK" or parts[3] != "WRITE":
            continue
        try:
            major, minor, inode = parts[5].split(":")
            where = (int(major, 16), int(minor, 16), int(inode))
            pid = int(parts[4])
        except ValueError:
            continue
        if where == wanted:
            return pid
    return None


def _read_holder(fd: int) -> Holder | None:
    """Who holds the lock open on `fd`, or None when no one does (its words are believed only for that PID)."""
    pid = _kernel_holder(fd)
    if pid is None:
        return None
    try:
        doc = json.loads(os.pread(fd, _HOLDER_READ, 0).decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        doc = {}
    if not isinstance(doc, dict) or doc.get("pid") != pid:
        return Holder(pid)  # it has not written its words yet, or they are another run's
    started = doc.get("started")
    action, command = doc.get("action"), doc.get("command")
    return Holder(
        pid,
        action if isinstance(action, str) and action in ACTIONS else "",
        _printable(command[:200]) if isinstance(command, str) else "",
        # a time the clock cannot show (NaN, 1e400, before 1970 or years ahead) is no one's start time
        float(started) if isinstance(started, (int, float)) and 0 < started < time.time() + 86400 else None,
    )


def _printable(text: str) -> str:
    """One printable line: the command is shown in list --long, and a newline or escape must not forge output."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _write_words(fd: int, action: str) -> None:
    words = {"pid": os.getpid(), "action": action, "command": " ".join(sys.argv)[:200], "started": time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(words) + "\n").encode(), 0)


# This process's own locks: a run that holds a guest and calls into another step that locks it again (host stop
# saving) must not refuse itself; a second open of the same file would be a second flock owner.
_mine: dict[str, tuple[int, int]] = {}  # file name -> (fd, depth)
_mine_lock = threading.Lock()


@dataclass
class Held:
    """Locks taken by one hold(); release() (or leaving the `with`) lets them go."""

    keys: list[LockKey] = field(default_factory=list)

    def release(self) -> None:
        with _mine_lock:
            for key in reversed(self.keys):
                fd, depth = _mine[key.file_name]
                if depth > 1:
                    _mine[key.file_name] = (fd, depth - 1)
                    continue
                del _mine[key.file_name]
                os.close(fd)  # closing the last descriptor drops the flock
        self.keys = []

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _try(directory: int, key: LockKey, action: str, held: Held, retry: bool = True) -> Holder | None:
    """Take `key`'s lock into `held`; the holder when another process has it."""
    name = key.file_name
    with _mine_lock:
        if name in _mine:
            mine, depth = _mine[name]
            _mine[name] = (mine, depth + 1)
            held.keys.append(key)
            return None
    opened = _open_lock(directory, key, create=True)
    assert opened is not None  # created
    fd = opened
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            os.close(fd)
            raise Dom0Error(f"cannot lock {key.name}: {exc.strerror}", "") from exc
        holder = _read_holder(fd)
        os.close(fd)
        if holder is None:
            # it was let go between the flock and the read of /proc/locks (or /proc is not readable): try again,
            # once, rather than name a holder no one is
            return _try(directory, key, action, held, retry=False) if retry else Holder(0)
        return holder
    _write_words(fd, action)
    with _mine_lock:
        _mine[name] = (fd, 1)
    held.keys.append(key)
    return None


def _ordered(keys: Sequence[LockKey]) -> list[LockKey]:
    """One order for every run (by UUID), so two runs that want the same guests never wait on each other in a ring."""
    seen: dict[str, LockKey] = {}
    for key in keys:
        seen.setdefault(key.file_name, key)
    return [seen[n] for n in sorted(seen)]


def hold(
    keys: Sequence[LockKey],
    action: str,
    *,
    wait: float | None = None,
    waiting: Callable[[LockKey, Holder], None] | None = None,
) -> Held:
    """All of `keys`' locks, or none: GuestBusy naming the holder when another run has one.

    With `wait` (seconds, math.inf for ever) a busy guest is waited for: every lock taken so far is let go before
    each pause, so two waiting runs never hold what the other wants; `waiting` is told once per guest.
    """
    deadline = None if wait is None else time.monotonic() + wait
    told: set[str] = set()
    directory = _open_directory(create=True)
    assert directory is not None
    try:
        while True:
            held = Held()
            busy: tuple[LockKey, Holder] | None = None
            try:
                for key in _ordered(keys):
                    holder = _try(directory, key, action, held)
                    if holder is not None:
                        busy = (key, holder)
                        break
            except BaseException:
                held.release()  # all or none: a lock file refused halfway lets go of those taken before it
                raise
            if busy is None:
                return held
            held.release()
            key, holder = busy
            if deadline is None:
                raise GuestBusy(key, holder)
            if time.monotonic() >= deadline:
                raise GuestBusy(key, holder, waited=wait)
            if waiting is not None and key.file_name not in told:
                told.add(key.file_name)
                waiting(key, holder)
            time.sleep(POLL_SECONDS)
    finally:
        os.close(directory)


def hold_available(keys: Sequence[LockKey], action: str) -> tuple[Held, list[tuple[LockKey, Holder]]]:
    """Every lock of `keys` that is free, in one order, and the guests another run holds (with their holders): a
    host-wide run acts on the first and reports the second instead of failing everything."""
    directory = _open_directory(create=True)
    assert directory is not None
    held = Held()
    busy: list[tuple[LockKey, Holder]] = []
    try:
        for key in _ordered(keys):
            holder = _try(directory, key, action, held)
            if holder is not None:
                busy.append((key, holder))
    except BaseException:
        held.release()
        raise
    finally:
        os.close(directory)
    return held, busy


def holder_of(key: LockKey) -> Holder | None:
    """Who holds `key`'s lock now, without taking it (read-only commands never wait and never lock)."""
    with contextlib.suppress(Dom0Error):
        directory = _open_directory(create=False)
        if directory is None:
            return None
        try:
            fd = _open_lock(directory, key, create=False)
        finally:
            os.close(directory)
        if fd is None:
            return None
        try:
            return _read_holder(fd)
        finally:
            os.close(fd)
    return None
