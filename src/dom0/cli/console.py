"""`dom0 console GUEST`: the guest's serial console on this terminal; Ctrl-] detaches."""

from __future__ import annotations

import argparse
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager

from dom0.cli.session import hypervisor
from dom0.errors import Dom0Error, GuestNotFound
from dom0.hypervisor import Console

ESCAPE = b"\x1d"  # Ctrl-], as virsh and telnet use it
# With a pipe on stdin the guest's answer to the last line arrives after EOF; keep printing this long.
PIPE_GRACE_S = 1.0
_POLL_S = 0.01


@contextmanager
def _raw_terminal(fd: int) -> Iterator[bool]:
    """Raw mode on a terminal so every key (Ctrl-C too) goes to the guest; always restored."""
    if not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _pump(console: Console, in_fd: int, out_fd: int) -> str:
    """Copy keys to the guest and its output here until Ctrl-], EOF (plus grace) or the console closes.

    Returns why it stopped: "detached" or "closed".
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
                        return "detached"
        elif time.monotonic() - eof_at >= PIPE_GRACE_S:
            _drain(console, out_fd)
            return "detached"
        while True:
            chunk = console.read(0 if stdin_open else _POLL_S)
            if chunk is None:
                return "closed"
            if not chunk:
                break
            _write_all(out_fd, chunk)


def _drain(console: Console, out_fd: int) -> None:
    """Print what the guest already sent, so a script sees the answer to its last line."""
    while chunk := console.read(0.05):
        _write_all(out_fd, chunk)


def attach(args: argparse.Namespace, ref: str) -> int:
    """Attach this terminal to the serial console of guest `ref` until Ctrl-] or the guest stops."""
    with hypervisor(args) as hv:
        name = hv.guest(ref).name
        console = hv.console(ref)
        try:
            in_fd, out_fd = sys.stdin.fileno(), sys.stdout.fileno()
            sys.stdout.flush()
            print(f"Connected to {name}'s console; Ctrl-] detaches", file=sys.stderr, flush=True)
            with _raw_terminal(in_fd):
                why = _pump(console, in_fd, out_fd)
        finally:
            console.close()
        if why == "detached":
            print(f"\ndetached from {name}'s console; it keeps running", file=sys.stderr)
            return 0
        try:
            state = hv.guest(ref).state.words
        except GuestNotFound:
            state = "gone (it stopped and was not defined)"
        except Dom0Error:
            state = "unknown (the hypervisor did not answer)"
        print(f"\nthe console of {name} closed; the guest is now: {state}", file=sys.stderr)
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    """`dom0 console GUEST`."""
    return attach(args, args.guest)
