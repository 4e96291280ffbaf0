"""The console relay: keys go to the guest up to Ctrl-], the guest's output comes back, a closed console ends it."""

from __future__ import annotations

import os
import select
from pathlib import Path

from dom0.hypervisor.relay import raw_terminal, relay


class _Guest:
    """A console that echoes what it is sent, in upper case, and closes after `lines` writes."""

    def __init__(self, lines: int = 99) -> None:
        self.sent = b""
        self._pending = b""
        self._left = lines

    def read(self, timeout: float) -> bytes | None:
        if not self._pending and self._left <= 0:
            return None
        out, self._pending = self._pending, b""
        return out

    def write(self, data: bytes) -> None:
        self.sent += data
        self._pending += data.upper()
        self._left -= 1

    def close(self) -> None:
        pass


def _run(tmp_path: Path, keys: bytes, guest: _Guest) -> tuple[bool, bytes]:
    read_end, write_end = os.pipe()
    os.write(write_end, keys)
    os.close(write_end)
    out = tmp_path / "out"
    with out.open("wb") as fh:
        detached = relay(guest, read_end, fh.fileno())
    os.close(read_end)
    return detached, out.read_bytes()


def test_keys_before_ctrl_bracket_reach_the_guest_and_its_answer_is_shown(tmp_path: Path) -> None:
    guest = _Guest()
    detached, shown = _run(tmp_path, b"uname\n\x1dnot sent", guest)
    assert detached
    assert guest.sent == b"uname\n"
    assert shown == b"UNAME\n"


def test_a_console_that_closes_ends_the_relay(tmp_path: Path) -> None:
    detached, shown = _run(tmp_path, b"halt\n", _Guest(lines=1))
    assert not detached
    assert shown == b"HALT\n"


def test_keys_typed_while_dom0_connects_reach_the_guest() -> None:
    """A key pressed between starting `dom0 console` and the terminal going raw (seconds on a busy host) is kept."""
    controller, terminal = os.openpty()
    try:
        os.write(controller, b"ls")  # typed while the terminal was still in line mode
        with raw_terminal(terminal) as raw:
            assert raw
            ready, _, _ = select.select([terminal], [], [], 2)
            assert ready, "the keys typed before raw mode were thrown away"
            assert os.read(terminal, 16) == b"ls"
    finally:
        os.close(terminal)
        os.close(controller)
