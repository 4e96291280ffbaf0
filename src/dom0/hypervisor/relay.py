"""A guest's serial console relayed to this terminal until Ctrl-], the end of input, or the console closing.

Backends hand out a `Console` (a byte stream); this is the copy loop between it and the terminal's descriptors,
with the terminal in raw mode so every key (Ctrl-C too) reaches the guest, as `virsh console` and `xl console` do.
"""

from __future__ import annotations

import os
import select
import termios
import time
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from dom0.errors import Dom0Error, GuestNotFound
from dom0.hypervisor import Console, Hypervisor

ESCAPE = b"\x1d"  # Ctrl-], as virsh and telnet use it
# With a pipe on stdin the guest's answer to the last line arrives after EOF; keep printing this long.
PIPE_GRACE_S = 1.0
_POLL_S = 0.01


@dataclass(frozen=True)
class Attached:
    """How a console session ended: detached (Ctrl-] or end of input; the guest runs on), or the console closed
    and `state` says what the guest is now."""

    name: str
    detached: bool
    state: str | None = None


@contextmanager
def raw_terminal(fd: int) -> Iterator[bool]:
    """Raw mode on a terminal so every key (Ctrl-C too) goes to the guest; always restored."""
    if not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    try:
        # TCSADRAIN, not setraw's default TCSAFLUSH: keys typed while dom0 was connecting (seconds on a busy host)
        # stay queued for the guest instead of being thrown away
        tty.setraw(fd, termios.TCSADRAIN)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _drain(console: Console, out_fd: int) -> None:
    """Print what the guest already sent, so a script sees the answer to its last line."""
    while chunk := console.read(0.05):
        _write_all(out_fd, chunk)


def relay(console: Console, in_fd: int, out_fd: int) -> bool:
    """Copy keys to the guest and its output here until Ctrl-], EOF (plus grace) or the console closes.

    True when the user detached (Ctrl-] or end of input), False when the console closed.
    """
    stdin_open = True
    eof_at = 0.0
    while True:
        if stdin_open:
            ready, _, _ = select.select([in_fd], [], [], _POLL_S)
            if ready:
                data = os.read(in_fd, 4096)
                if not data:
                    stdin_open = False
                    eof_at = time.monotonic()
                else:
                    before, escape, _ = data.partition(ESCAPE)
                    if before:
                        console.write(before)
                    if escape:
                        _drain(console, out_fd)
                        return True
        elif time.monotonic() - eof_at >= PIPE_GRACE_S:
            _drain(console, out_fd)
            return True
        while True:
            chunk = console.read(0 if stdin_open else _POLL_S)
            if chunk is None:
                return False
            if not chunk:
                break
            _write_all(out_fd, chunk)


def attach(hv: Hypervisor, ref: str, in_fd: int, out_fd: int, connected: Callable[[str], None]) -> Attached:
    """Relay guest `ref`'s serial console to `in_fd`/`out_fd`; `connected(name)` is called once it is open."""
    name = hv.guest(ref).name
    console = hv.console(ref)
    try:
        connected(name)
        with raw_terminal(in_fd):
            detached = relay(console, in_fd, out_fd)
    finally:
        console.close()
    if detached:
        return Attached(name, detached=True)
    try:
        state = hv.guest(ref).state.words
    except GuestNotFound:
        state = "gone (it stopped and was not defined)"
    except Dom0Error:
        state = "unknown (the hypervisor did not answer)"
    return Attached(name, detached=False, state=state)
