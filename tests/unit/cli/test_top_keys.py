"""`dom0 top` in a real pseudo-terminal answers to xentop's keys, and gives the terminal back as it found it."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from dom0.cli.top import KEYS_HELP, _View, keys, shown
from dom0.model import Guest, GuestState
from dom0.observe.top import GuestRates, Sample

ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|[()][0-9A-B]|[=>78]|\][^\x07]*\x07)")


class Screen:
    """`dom0 -c test:///default top` on the slave side of a pty; what it drew is read from the master side."""

    def __init__(self, *args: str) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 220, 0, 0))
        env = {k: v for k, v in os.environ.items() if k not in ("DOM0_CONNECT", "LIBVIRT_DEFAULT_URI", "COLUMNS")}
        env |= {"TERM": "xterm", "LINES": "40", "COLUMNS": "220"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dom0", "-c", "test:///default", "top", *args],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env=env,
            start_new_session=True,
        )
        self.seen = ""

    def press(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait_for(self, pattern: str, timeout: float = 20) -> str:
        """The screen text from the last mark on, once it shows `pattern` (a regex); fails after `timeout`."""
        start = len(self.seen)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            plain = ANSI.sub("", self.seen[start:])
            if re.search(pattern, plain):
                return plain
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536).decode(errors="replace")
                except OSError:  # the child closed the slave side
                    break
        pytest.fail(f"no {pattern!r} on the screen; it showed:\n{ANSI.sub('', self.seen[start:])[-3000:]}")

    def mark(self) -> None:
        """Forget what was drawn so far: the next wait_for looks only at what comes after."""
        self.seen = ""
        with_data = True
        while with_data:
            with_data = bool(select.select([self.master], [], [], 0.05)[0])
            if with_data:
                os.read(self.master, 65536)

    def echo_on(self) -> bool:
        return bool(termios.tcgetattr(self.slave)[3] & termios.ECHO)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def screen() -> Iterator[Screen]:
    s = Screen("-d", "0.5")
    yield s
    s.close()


def test_b_and_n_show_disks_and_networks_d_sets_the_delay_q_quits(screen: Screen) -> None:
    first = screen.wait_for(r"\btest\s+r-----")
    assert "delay 0.5 s" in first
    assert "B disks  N networks  D delay  S sort" in first
    assert "Q quit" in first
    assert "disk vda" not in first
    assert "aa:bb:cc:dd:ee:ff" not in first
    screen.mark()
    screen.press("B")
    assert "networks off" in screen.wait_for(r"disk vda.*req/s")
    screen.mark()
    screen.press("N")
    assert "disk vda" in screen.wait_for(r"net \S+ .*aa:bb:cc:dd:ee:ff")
    screen.mark()
    screen.press("D")
    screen.wait_for(r"Delay\(sec\):")
    screen.press("2\n")
    assert "disks on, networks on" in screen.wait_for(r"delay 2 s")
    assert screen.echo_on() is False  # still the live screen: keys are not echoed
    screen.press("Q")
    assert screen.proc.wait(timeout=20) == 0
    assert screen.echo_on() is True


def test_lower_case_and_esc_work_as_in_xentop(screen: Screen) -> None:
    screen.wait_for(r"\btest\s+r-----")
    screen.mark()
    screen.press("b")
    screen.wait_for(r"disk vda")
    screen.mark()
    screen.press("s")
    screen.wait_for(r"sorted by STATE")
    screen.press("\x1b")
    assert screen.proc.wait(timeout=20) == 0
    assert screen.echo_on() is True


def test_a_delay_that_is_not_a_number_or_out_of_range_changes_nothing(screen: Screen) -> None:
    screen.wait_for(r"\btest\s+r-----")
    screen.press("d")
    screen.wait_for(r"Delay\(sec\):")
    screen.press("soon\n")
    screen.wait_for(r"delay not changed: 'soon' is not a number of seconds")
    screen.press("D0\n")
    screen.wait_for(r"delay not changed: delay must be between 0.01 and 86400 seconds")
    screen.mark()
    screen.press("v")
    assert "delay 0.5 s" in screen.wait_for(r"does not measure each VCPU")
    screen.press("q")
    assert screen.proc.wait(timeout=20) == 0


def test_escape_sequences_are_keys_not_letters() -> None:
    # The letters inside an arrow's or F1's sequence must not toggle disks or quit.
    assert keys("\x1b[A\x1bOB\x1b[5~\x1b[6~") == ["up", "down", "pgup", "pgdn"]
    assert keys("\x1b[11~q") == ["q"]
    assert keys("\x1b") == ["esc"]
    assert keys("2\r\x7f") == ["2", "enter", "backspace"]


def test_the_help_line_names_xentops_keys() -> None:
    assert KEYS_HELP.startswith("B disks  N networks  D delay  S sort")
    assert KEYS_HELP.endswith("Q quit")


def _sample(*guests: tuple[str, GuestState, float]) -> Sample:
    rates = tuple(
        GuestRates(Guest(name, f"uuid-{name}", i + 1, state, 1 << 20, 1 << 20, 1, 10**9), 1.0, cpu)
        for i, (name, state, cpu) in enumerate(guests)
    )
    return Sample(datetime.now().astimezone(), 1.0, rates)


def _names(sample: Sample, view: _View) -> list[str]:
    return [row[0] for row, _ in shown(sample, view)]


def test_s_sorts_by_name_then_state_then_cpu_largest_first_and_arrows_scroll() -> None:
    sample = _sample(
        ("web", GuestState.RUNNING, 5.0), ("Db", GuestState.PAUSED, 80.0), ("cache", GuestState.BLOCKED, 20.0)
    )
    view = _View(2.0)
    assert _names(sample, view) == ["cache", "Db", "web"]  # xentop starts by name, whatever the case
    view.press("S")
    assert _names(sample, view) == ["cache", "Db", "web"]  # blocked before paused before running, as xentop
    view.press("s")
    view.press("S")
    assert _names(sample, view) == ["Db", "cache", "web"]  # CPU(%), the busiest first
    view.press("down")
    assert _names(sample, view) == ["cache", "web"]
    view.press("pgdn")
    assert _names(sample, view) == ["web"]  # the last guest stays on the screen
    view.press("up")
    assert _names(sample, view) == ["cache", "web"]
    view.press("r")
    assert _names(sample, view) == ["cache", "NAME", "web"]  # the header again before every guest
