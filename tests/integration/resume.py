"""Checks that a restored test guest carried on where it was saved instead of booting again."""

from __future__ import annotations

import re
import time

import pytest

from . import guestkit
from .conftest import TestGuest


def ticks(text: str) -> list[int]:
    """The tick numbers the guest printed (one every 5 s)."""
    return [int(n) for n in re.findall(r"tick (\d+)", text)]


def assert_resumed(g: TestGuest, before: str, last_tick: int, timeout: float = 60) -> None:
    """The guest carries on counting from `last_tick`, without printing its boot banner again."""
    deadline = time.monotonic() + timeout
    while max(ticks(g.console_text()) or [0]) <= last_tick:
        if time.monotonic() > deadline:
            pytest.fail(f"no tick after {last_tick} within {timeout:g} s of the restore:\n{g.console_text()[-800:]}")
        time.sleep(0.5)
    log = g.console_text()
    new = log[len(before) :] if log.startswith(before) else log  # the log is rewritten when QEMU starts again
    assert guestkit.READY not in new, "the guest booted again instead of resuming"
    assert all(n > last_tick for n in ticks(new)), new
