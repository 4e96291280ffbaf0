"""`dom0 console GUEST` on a PV guest's hvc0, as an administrator uses it: in a terminal, typing into the guest's
root shell, Ctrl-C reaching the guest, Ctrl-] detaching while the guest runs on, and the session ending by itself
when the guest powers off from inside. Once per backend: `xl console` (xl://) and libvirt's console stream
(xen:///system), both reaching the pseudo-terminal xenconsoled keeps for the guest.
"""

from __future__ import annotations

import os
import pty
import random
import re
import select
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .guests import POWEROFF, READY, LabGuest, cleanup, wait_until_gone, xl_state
from .procguests import bare_definition, create, lab_guest, trace

# An emulated dom0 takes seconds to start Python and connect; the guest answers within a second or two.
ATTACH_TIMEOUT = 90.0
ANSWER_TIMEOUT = 30.0


class Terminal:
    """`dom0 -c URI ARGS...` on a pseudo-terminal of its own, as in an administrator's ssh session: pty.fork makes
    the program lead its own session with the terminal as its controlling one; what it prints is collected."""

    def __init__(self, uri: str, *args: str) -> None:
        env = {**os.environ, "COLUMNS": "200", "TERM": "vt100"}
        pid, fd = pty.fork()
        if pid == 0:  # the child: only exec, nothing of pytest's state
            try:
                os.execve(sys.executable, [sys.executable, "-m", "dom0", "-c", uri, *args], env)
            finally:
                os._exit(127)
        self.pid = pid
        self.fd = fd
        self.code: int | None = None
        self.seen = b""

    def poll(self) -> int | None:
        """The exit code once the program ended, else None."""
        if self.code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
        return self.code

    def _read(self, timeout: float) -> bool:
        """Collect output for up to `timeout` s; False once the terminal hung up (the program ended)."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the program exited and its side of the terminal closed
            return False
        self.seen += data
        return bool(data)

    def expect(self, pattern: bytes, timeout: float, since: int = 0) -> re.Match[bytes]:
        """Wait until the output from offset `since` on matches the regex `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while not (found := regex.search(self.seen, since)):
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(min(1.0, left)):
                if found := regex.search(self.seen, since):
                    break
                pytest.fail(f"no {pattern!r} within {timeout:g} s; the terminal showed:\n{self.text(since)}")
        return found

    def type(self, keys: bytes) -> int:
        """Type `keys`; the output offset before them (for `expect(..., since=)`)."""
        mark = len(self.seen)
        os.write(self.fd, keys)
        return mark

    def wait(self, timeout: float) -> int:
        """Wait for the program to end, collecting what it prints; its exit code."""
        deadline = time.monotonic() + timeout
        while (code := self.poll()) is None:
            if time.monotonic() > deadline:
                pytest.fail(f"dom0 did not end within {timeout:g} s; the terminal showed:\n{self.text()}")
            self._read(0.2)
        while self._read(0.1) and select.select([self.fd], [], [], 0)[0]:
            pass
        return code

    def text(self, since: int = 0) -> str:
        """What the terminal showed from offset `since` on."""
        return self.seen[since:].decode(errors="replace")

    def close(self) -> None:
        """Kill the program if it still runs; close the terminal."""
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.fixture(scope="module")
def guest(uri: str) -> Iterator[LabGuest]:
    """A PV guest (no disk, no NIC) whose hvc0 runs the guest kit's root shell (and its ticks)."""
    # xl console takes a lock file in /var/lock (/run/lock), which a Debian dom0's boot makes (systemd-tmpfiles);
    # the lab's dom0init mounts a bare /run. Without it dom0 reports xl console's failure (unit-tested).
    Path("/run/lock").mkdir(mode=0o1777, exist_ok=True)
    g = lab_guest(uri, "console", "pv", 1)
    try:
        create((g, bare_definition(g)))
        g.wait_for_console(READY)
        yield g
    finally:
        cleanup(g)


@pytest.fixture
def session(uri: str, guest: LabGuest) -> Iterator[Terminal]:
    """`dom0 console GUEST` attached: its greeting seen, and the guest's shell answering with its prompt."""
    term = Terminal(uri, "console", guest.name)
    try:
        term.expect(re.escape(f"Connected to {guest.name}'s console; Ctrl-] detaches".encode()), ATTACH_TIMEOUT)
        mark = term.type(b"\r")
        term.expect(rb"# ", ANSWER_TIMEOUT, since=mark)  # busybox sh's prompt for root
        yield term
    finally:
        term.close()


def _marker(term: Terminal, label: str) -> str:
    """Have the guest's shell work out a number and print it: the terminal's echo of the command line shows only
    the sum to work out, so seeing the result proves the guest ran the command."""
    a, b = random.randint(1000, 9999), random.randint(1000, 9999)
    mark = term.type(f"echo dom0test-{label}-$(({a}+{b}))\r".encode())
    expected = f"dom0test-{label}-{a + b}"
    term.expect(re.escape(expected.encode()), ANSWER_TIMEOUT, since=mark)
    return expected


def test_console_runs_a_command_in_the_guest_and_ctrl_bracket_detaches_while_it_runs_on(
    uri: str, guest: LabGuest, session: Terminal
) -> None:
    expected = _marker(session, "console")
    # the guest wrote it on hvc0 itself: xenconsoled's log of the console has it too
    guest.wait_for_console(expected, timeout=10)

    # Ctrl-C goes to the guest, not to dom0: the guest's shell drops the line typed so far and prompts again, and
    # the console stays attached
    mark = session.type(b"echo dom0test-never-$((1+1))")
    session.expect(rb"never", ANSWER_TIMEOUT, since=mark)  # the guest's echo of the keys
    mark = session.type(b"\x03")
    session.expect(rb"\^C[\s\S]*# ", ANSWER_TIMEOUT, since=mark)
    _marker(session, "after-ctrl-c")
    assert "dom0test-never-2" not in session.text(), "the line cancelled with Ctrl-C ran"
    assert session.poll() is None, "Ctrl-C ended dom0 console"

    tick = guest.last_tick()
    mark = session.type(b"\x1d")
    pressed = time.monotonic()
    code = session.wait(15)
    took = time.monotonic() - pressed
    assert code == 0, session.text()
    assert f"detached from {guest.name}'s console; it keeps running" in session.text(mark)
    trace(f"{guest.name}: dom0 console ended {took:.1f} s after Ctrl-]; the terminal showed:\n{session.text()}")
    assert took < 10, f"Ctrl-] took {took:.1f} s to detach"
    # the guest runs on: its clock-driven ticks continue after the detach
    assert xl_state(guest.name) in ("r-----", "-b----")
    guest.wait_for_tick_after(tick)


def test_console_ends_by_itself_when_the_guest_powers_off_from_inside(
    uri: str, guest: LabGuest, session: Terminal
) -> None:
    mark = session.type(b"/sbin/poweroff\r")
    code = session.wait(120)
    assert code == 0, session.text()
    out = session.text(mark)
    assert POWEROFF in out  # the guest's last words came through the console
    assert re.search(rf"the console of {re.escape(guest.name)} closed; the guest is now: \S", out), out
    assert wait_until_gone(guest.name, 60), xl_state(guest.name)
