"""Numbers as an on-call person reads them."""

from __future__ import annotations

import pytest

from dom0 import humanize


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (60114.1, "16 h 41 min"),
        (0, "0.0 s"),
        (3.21, "3.2 s"),
        (59.94, "59.9 s"),
        (60, "1 min 0 s"),
        (125, "2 min 5 s"),
        (3599, "59 min 59 s"),
        (3600, "1 h 0 min"),
        (86399, "23 h 59 min"),
        (86400, "1 d 0 h"),
        (93784, "1 d 2 h"),
        (10 * 86400 + 5 * 3600 + 59, "10 d 5 h"),
    ],
)
def test_duration(seconds: float, text: str) -> None:
    assert humanize.duration(seconds) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 1024**2, "5.0 MiB"), (3 * 1024**4, "3.0 TiB")],
)
def test_size(n: int, text: str) -> None:
    assert humanize.size(n) == text


def test_rate() -> None:
    assert humanize.rate(3.25 * 1024**2) == "3.2 MiB/s"
