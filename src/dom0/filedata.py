"""Reading files back: the one bounded, type-checked reader for a file named on the command line (or one dom0
wrote itself) and JSON documents, with errors that say which file."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

from dom0.errors import Dom0Error

# dom0's manifests are a few KiB; an export listing hundreds of disks stays far below this.
JSON_LIMIT = 16 << 20
# A guest definition (libvirt XML, xl.cfg, xm config) is a few KiB; anything this large is the wrong file.
DEFINITION_LIMIT = 4 << 20

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symlink"),  # seen only through lstat or O_NOFOLLOW, where a link is not followed
)


def kind_of(mode: int) -> str:
    """What a file of this st_mode is, in words ('a FIFO', 'a directory', ...)."""
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


def open_regular(path: Path, missing_hint: str = "") -> int:
    """A read-only descriptor on `path`, which must be a regular file once symlinks are followed.

    The administrator named the path, so a symlink is followed; what it ends at is checked before it is opened (so a
    FIFO never blocks the open and a device's open never runs) and again on the descriptor (so it cannot be swapped
    in between). Dom0Error when it is anything else, missing or unreadable.
    """
    try:
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):
            raise Dom0Error(f"{path} is {kind_of(before.st_mode)}, not a regular file", "give the path of a file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError as exc:
        raise Dom0Error(f"{path} does not exist", missing_hint or "check the path") from exc
    except OSError as exc:
        hint = "a symlink that leads back to itself" if exc.errno == errno.ELOOP else "check the path and permissions"
        raise Dom0Error(f"cannot read {path}: {exc.strerror}", hint) from exc
    return confirm_opened(fd, before, path)


def confirm_opened(fd: int, before: os.stat_result, path: Path) -> int:
    """`fd`, opened non-blocking on what `before` (a stat taken just before the open) showed to be a regular file,
    once fstat shows it is that same file (so nothing swapped in between); made blocking for reading. Otherwise it
    is closed and Dom0Error says the file changed."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise Dom0Error(f"{path} changed while it was opened", "run again once nothing is replacing it")
    os.set_blocking(fd, True)
    return fd


def read_regular(path: Path, limit: int, missing_hint: str = "") -> bytes:
    """The whole regular file at `path`, at most `limit` bytes; Dom0Error for a larger or growing file."""
    fd = open_regular(path, missing_hint)
    with os.fdopen(fd, "rb") as f:
        too_big = Dom0Error(
            f"{path} is larger than {limit >> 20 or limit} {'MiB' if limit >> 20 else 'bytes'}; refusing to read it",
            "give the right file: this one is far larger than what belongs there",
        )
        if os.fstat(fd).st_size > limit:
            raise too_big
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise Dom0Error(f"cannot read {path}: {exc.strerror}", "check the file") from exc
    if len(data) > limit:  # it grew after the size was checked (or lies about its size, as /proc files do)
        raise too_big
    return data


def read_json(path: Path, missing_hint: str) -> Any:
    """The JSON document in `path`; Dom0Error (with `missing_hint` when it does not exist) otherwise."""
    data = read_regular(path, JSON_LIMIT, missing_hint)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested thousands deep
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise Dom0Error(f"cannot read {path}: not valid JSON ({reason})", "give a file dom0 wrote") from exc


def open_own_directory(path: Path, *, create: bool, what: str, hint: str) -> int | None:
    """A descriptor on the directory `path` (made, mode 0700, with `create`), opened without following a link and
    checked to be this user's own and writable by no one else: what another user could plant or change there
    (a lock, a cache) would be believed. None when it does not exist; Dom0Error naming `what` otherwise."""
    if create:
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise Dom0Error(f"cannot create {what} {path}: {exc.strerror}", hint) from exc
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Dom0Error(
            f"cannot open {what} {path}: {exc.strerror} (it must be a directory, not a link)", hint
        ) from exc
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        os.close(fd)
        raise Dom0Error(
            f"{what} {path} is not this user's own (owner uid {st.st_uid}, mode {stat.filemode(st.st_mode)})", hint
        )
    return fd
