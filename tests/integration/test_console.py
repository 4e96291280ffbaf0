"""`dom0 console`: a real guest's serial console under a terminal and from a pipe."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

import pytest

from .conftest import URI, Dom0, MakeGuest, _dom0_program


class PtySession:
    """`dom0 console NAME` running on a pseudo-terminal, as a person would run it."""

    def __init__(self, name: str) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [*_dom0_program(), "-c", URI, "console", name],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
        )
        os.close(slave)
        self.seen = b""

    def expect(self, text: bytes, timeout: float = 30) -> None:
        """Read until `text` appears; fail showing what arrived otherwise."""
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} did not appear within {timeout:g} s; got: {self.seen[-2000:]!r}")
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:  # EIO: the process exited and closed the terminal
                    time.sleep(0.1)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 15) -> int:
        """The exit code, reading the rest of its output."""
        code = self.proc.wait(timeout)
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if not ready:
                break
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.seen += chunk
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def _virsh_state(name: str) -> str:
    out = subprocess.run(["virsh", "-c", URI, "domstate", name], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def test_console_on_a_terminal_runs_commands_and_ctrl_bracket_detaches(make_guest: MakeGuest) -> None:
    guest = make_guest()
    session = PtySession(guest.name)
    try:
        session.expect(f"Connected to {guest.name}'s console; Ctrl-] detaches".encode())
        session.send(b"\r")
        session.expect(b"# ")
        session.send(b"echo $((6*7))\r")
        session.expect(b"\r\n42\r\n")
        session.send(b"\x1d")
        assert session.wait() == 0
        assert b"detached from" in session.seen
    finally:
        session.close()
    assert _virsh_state(guest.name) == "running"


def test_console_from_a_pipe_answers_and_returns(make_guest: MakeGuest, dom0: Dom0) -> None:
    guest = make_guest()
    result = dom0("console", guest.name, input="echo answer-$((6*7))\n", timeout=30)
    assert "answer-42" in result.stdout
    assert "Ctrl-] detaches" in result.stderr
    assert _virsh_state(guest.name) == "running"


def test_console_says_so_when_the_guest_stops(make_guest: MakeGuest) -> None:
    guest = make_guest()
    session = PtySession(guest.name)
    try:
        session.expect(b"Ctrl-] detaches")
        subprocess.run(["virsh", "-c", URI, "destroy", guest.uuid], capture_output=True, check=True)
        assert session.wait(30) == 0
        assert f"the console of {guest.name} closed".encode() in session.seen
        assert b"Traceback" not in session.seen
    finally:
        session.close()


def test_console_of_a_stopped_guest_is_a_one_line_error(make_guest: MakeGuest, dom0: Dom0) -> None:
    guest = make_guest(start=False)
    result = dom0("console", guest.name, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(f"dom0: error: '{guest.name}' is not running")
    assert "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_console_of_an_unknown_guest_is_a_one_line_error(dom0: Dom0) -> None:
    result = dom0("console", "dom0test-no-such-guest", check=False)
    assert result.returncode == 1
    assert "no guest named 'dom0test-no-such-guest'" in result.stderr.splitlines()[0]
    assert "Traceback" not in result.stderr
