"""One change per guest at a time: per-guest locks every dom0 process on the host sees.

Each guest has a lock file named by its UUID in a root-owned directory under /run (a tmpfs, empty after a boot).
A run that changes a guest holds an exclusive flock(2) on it for its whole run, and writes into it who it is:
command, PID, start time. The kernel drops the lock when the process ends however it ends (SIGKILL included), so
there is never a stale lock to clean by hand; the file's words are believed only while /proc/locks says that very
PID still holds that very inode. Read-only commands never lock: they only read who holds what.

libvirt serializes its own jobs per domain but cannot tell a second dom0 what the first is doing; xl has no lock
at all. So the lock is dom0's own, taken before anything is touched and kept until the run ends.
"""

from dom0.locks.guestlock import (
    ACTIONS,
    GuestBusy,
    Held,
    Holder,
    LockKey,
    hold,
    hold_available,
    holder_of,
    lock_directory,
)

__all__ = [
    "ACTIONS",
    "GuestBusy",
    "Held",
    "Holder",
    "LockKey",
    "hold",
    "hold_available",
    "holder_of",
    "lock_directory",
]
