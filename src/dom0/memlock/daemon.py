"""The `dom0 memlock run` loop: lock the configured files within a budget, follow files replaced on disk, re-read
the config on SIGHUP, release everything on SIGTERM, and publish what is held after every change.

memlockd keeps a package-upgraded file's old inode pinned until someone sends SIGHUP; here every locked path is
stat'ed every few seconds and a new inode (or a new size or mtime) is locked again, the old mapping released after.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import select
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from dom0 import humanize
from dom0.memlock import state
from dom0.memlock.locker import PAGE, Identity, LockedFile, LockError

log = logging.getLogger("dom0.memlock")


def pages(size: int) -> int:
    """What locking `size` bytes costs against RLIMIT_MEMLOCK: whole pages."""
    return (size + PAGE - 1) // PAGE * PAGE


def mem_total() -> int:
    """The machine's RAM in bytes (MemTotal)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return os.sysconf("SC_PHYS_PAGES") * PAGE


@dataclass(frozen=True, slots=True)
class Budget:
    """At most `limit` bytes locked; `words` says where the limit comes from, for the files left out."""

    limit: int
    words: str


_CAP_IPC_LOCK = 14


def can_lock_past_rlimit(status: str = "/proc/self/status") -> bool:
    """Whether this process holds CAP_IPC_LOCK, with which the kernel does not hold mlock to RLIMIT_MEMLOCK
    (root's own limit is often only 8 MiB; the systemd unit grants the capability)."""
    try:
        with open(status, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_IPC_LOCK & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def budget(max_share: float) -> Budget:
    """The smaller of the soft RLIMIT_MEMLOCK (none when unlimited, or when this process holds CAP_IPC_LOCK) and
    `max_share` of RAM."""
    share = int(mem_total() * max_share)
    by_share = Budget(share, f"{max_share * 100:g}% of RAM = {humanize.size(share)}")
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft != resource.RLIM_INFINITY and soft < share and not can_lock_past_rlimit():
        return Budget(soft, f"RLIMIT_MEMLOCK = {humanize.size(soft)}")
    return by_share


@dataclass(slots=True)
class Entry:
    """One configured file: its mapping while locked, else why it was left out."""

    path: Path
    reason: str
    size: int
    locked: LockedFile | None = None
    left_out: str = ""
    # the identity a failed relock was last logged for, so a file that cannot be relocked is said once
    failed_for: Identity | None = None

    def row(self) -> dict[str, Any]:
        lf = self.locked
        return {
            "path": str(self.path),
            "reason": self.reason,
            "size": lf.size if lf else self.size,
            "locked_bytes": lf.size if lf else 0,
            "inode": lf.identity.ino if lf else None,
            "left_out_reason": self.left_out or None,
        }


class Daemon:
    """The files held, their budget, and the config they come from."""

    def __init__(self, config: Path | None, max_share: float, state_path: Path) -> None:
        self.config = config
        self.max_share = max_share
        self.state_path = state_path
        self.entries: dict[Path, Entry] = {}
        self.order: list[Path] = []
        self.sources: list[str] = []
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.budget = budget(max_share)
        self.started = datetime.now(UTC).isoformat(timespec="seconds")

    def used(self) -> int:
        return sum(pages(e.locked.size) for e in self.entries.values() if e.locked)

    def load(self) -> None:
        """(Re)read the config: lock what is new, in config order, while the budget lasts; release what left it."""
        from dom0.memlock.config import expand

        expansion = expand(self.config)
        self.sources = [str(s) for s in expansion.sources]
        self.problems = list(expansion.problems)
        self.notes = list(expansion.notes)
        for problem in self.problems:
            log.warning("config: %s", problem)
        for note in self.notes:
            log.info("config: %s", note)
        self.budget = budget(self.max_share)
        wanted: dict[Path, Any] = {}
        for f in expansion.files:
            wanted.setdefault(Path(f.path), f)
        for path in [p for p in self.entries if p not in wanted]:
            gone = self.entries.pop(path)
            if gone.locked:
                gone.locked.release()
                log.info("released %s: no longer in the config", path)
        for path, f in wanted.items():
            entry = self.entries.get(path)
            if entry is None:
                entry = self.entries[path] = Entry(path, f.reason, f.size)
            entry.reason, entry.size = f.reason, f.size
            # files non-root users can write reach here only when the config insisted (`!`): expand() leaves the
            # others out and says so in its notes
            if entry.locked is None:
                self._lock(entry)
        self.order = list(wanted)
        locked = [e for e in self.entries.values() if e.locked]
        log.info(
            "locked %d file(s), %s of %s (%s); %d left out",
            len(locked),
            humanize.size(self.used()),
            humanize.size(self.budget.limit),
            self.budget.words,
            len(self.entries) - len(locked),
        )

    def _lock(self, entry: Entry, replacing: LockedFile | None = None) -> bool:
        """Lock `entry`'s path if it fits the budget (counting out the mapping it replaces); log why not."""
        try:
            st = os.stat(entry.path, follow_symlinks=False)
        except OSError as exc:
            entry.left_out = "does not exist" if isinstance(exc, FileNotFoundError) else exc.strerror or str(exc)
            return False
        if st.st_size == 0:
            entry.left_out = "empty: nothing to lock"
            return False
        room = self.budget.limit - self.used() + (pages(replacing.size) if replacing else 0)
        if pages(st.st_size) > room:
            entry.left_out = f"over the budget: {self.budget.words}"
            if replacing is None:
                log.warning("left out %s (%s): %s", entry.path, humanize.size(st.st_size), entry.left_out)
            return False
        try:
            new = LockedFile(entry.path)
        except LockError as exc:
            entry.left_out = exc.reason
            if replacing is None:
                log.warning("left out %s: %s", entry.path, exc.reason)
            return False
        entry.locked, entry.left_out, entry.size, entry.failed_for = new, "", new.size, None
        return True

    def poll(self) -> bool:
        """Stat every configured path: relock what was replaced, release what was deleted, lock what came back.
        Whether anything changed."""
        changed = False
        for path in self.order:
            entry = self.entries[path]
            try:
                changed |= self._check(entry)
            except Exception as exc:  # one file's surprise must not stop the others being held
                log.error("%s: %s", path, exc)
        return changed

    def _check(self, entry: Entry) -> bool:
        old = entry.locked
        try:
            st = os.stat(entry.path, follow_symlinks=False)
        except FileNotFoundError:
            if old is None:
                return False
            old.release()
            entry.locked, entry.left_out = None, "deleted on disk"
            log.info("released %s: deleted on disk", entry.path)
            return True
        now = Identity.of(st)
        if old is None:
            # left out because it was missing or empty: lock it once it is there
            came_back = entry.left_out in ("does not exist", "deleted on disk", "empty: nothing to lock")
            if came_back and st.st_size and self._lock(entry):
                log.info("locked %s: it appeared on disk", entry.path)
                return True
            return False
        if now in (old.identity, entry.failed_for):
            return False
        what = "new inode" if (now.dev, now.ino) != (old.identity.dev, old.identity.ino) else "new size or mtime"
        if self._lock(entry, replacing=old):
            old.release()
            log.info("relocked %s: replaced on disk (%s)", entry.path, what)
        else:
            # the old mapping stays (status shows it stale) and is tried again when the file changes
            entry.locked, entry.failed_for = old, now
            log.warning("cannot relock %s (%s): %s; the old copy stays locked", entry.path, what, entry.left_out)
            entry.left_out = ""
        return True

    def release_all(self) -> None:
        for entry in self.entries.values():
            if entry.locked:
                entry.locked.release()
                entry.locked = None
        log.info("released every file")

    def document(self) -> dict[str, Any]:
        rows = [self.entries[p].row() for p in self.order]
        return {
            "pid": os.getpid(),
            "started": self.started,
            "sources": self.sources,
            "budget_bytes": self.budget.limit,
            "budget": self.budget.words,
            "files": rows,
            "problems": self.problems,
            "notes": self.notes,
            "totals": {
                "files": len(rows),
                "locked_files": sum(1 for r in rows if r["locked_bytes"]),
                "locked_bytes": sum(r["locked_bytes"] for r in rows),
                "left_out": sum(1 for r in rows if not r["locked_bytes"]),
            },
        }

    def publish(self) -> None:
        try:
            state.publish(self.state_path, self.document())
        except OSError as exc:
            log.error("cannot publish the state to %s: %s", self.state_path, exc.strerror or exc)


@contextlib.contextmanager
def _signals() -> Iterator[tuple[int, list[int]]]:
    """SIGHUP, SIGTERM and SIGINT delivered as bytes on a pipe (select wakes on them), their numbers in a list."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    seen: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)

    wanted = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
    previous = {s: signal.signal(s, note) for s in wanted}
    old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    try:
        yield r, seen
    finally:
        signal.set_wakeup_fd(old_fd)
        for s, handler in previous.items():
            signal.signal(s, handler)
        os.close(r)
        os.close(w)


def run(config: Path | None, max_share: float, poll_s: float, state_path: Path) -> int:
    """Hold the configured files until SIGTERM or SIGINT; exit code 0 then."""
    daemon = Daemon(config, max_share, state_path)
    with _signals() as (wake, seen):
        daemon.load()
        daemon.publish()
        log.info("holding; polling every %gs, state in %s", poll_s, state_path)
        try:
            deadline = time.monotonic() + poll_s
            while True:
                select.select([wake], [], [], max(0.0, deadline - time.monotonic()))
                with contextlib.suppress(BlockingIOError):
                    os.read(wake, 512)
                signums, seen[:] = list(seen), []
                if signal.SIGTERM in signums or signal.SIGINT in signums:
                    log.info("stopping on %s", signal.Signals(signums[-1]).name)
                    return 0
                if signal.SIGHUP in signums:
                    log.info("SIGHUP: re-reading the config")
                    try:
                        daemon.load()
                    except Exception as exc:  # a broken config keeps what is held
                        log.error("cannot re-read the config: %s; keeping what is locked", exc)
                    daemon.publish()
                if time.monotonic() >= deadline:
                    if daemon.poll():
                        daemon.publish()
                    deadline = time.monotonic() + poll_s
        finally:
            daemon.release_all()
            state.withdraw(state_path)
