"""What the benchmarks that run real guests share: their failure, and waiting for a guest to get somewhere."""

from __future__ import annotations

import time
from collections.abc import Callable


class BenchFailure(Exception):
    """The bench cannot go on (a guest did not boot, a command failed); the message says why."""


def wait_until(what: str, ready: Callable[[], bool], timeout: float) -> None:
    """Poll `ready` until it is true; BenchFailure naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise BenchFailure(f"{what}: not within {timeout:g} s")
        time.sleep(0.25)
