"""`dom0 mem set`: refusals above the maximum and below what the guest uses; a move on the test driver."""

from __future__ import annotations

import pytest

from dom0.errors import Dom0Error
from dom0.hypervisor import UriChoice, connect
from dom0.memory.balloon import check_target, set_guest_memory
from dom0.model import BalloonReport, Guest, GuestMemory, GuestState, StatsSource

MIB = 1024


def _memory(usable: int | None) -> GuestMemory:
    g = Guest("web1", "u", 3, GuestState.RUNNING, 512 * MIB, 1024 * MIB, 1, 0)
    report = BalloonReport(
        current_kib=512 * MIB, maximum_kib=1024 * MIB, available_kib=500 * MIB, usable_kib=usable and usable * MIB
    )
    return GuestMemory(g, report, StatsSource.POLLED)


def test_above_the_maximum_is_refused_with_how_the_maximum_changes() -> None:
    with pytest.raises(Dom0Error) as caught:
        check_target(_memory(300), 2048 * MIB, force=True)
    assert "at most 1024 MiB" in caught.value.message
    assert "restart" in caught.value.hint


def test_below_what_the_guest_uses_is_refused_unless_forced() -> None:
    with pytest.raises(Dom0Error) as caught:
        check_target(_memory(100), 256 * MIB, force=False)  # it uses 400 MiB
    assert "uses 400 MiB" in caught.value.message
    assert "--force" in caught.value.hint
    check_target(_memory(100), 256 * MIB, force=True)
    check_target(_memory(None), 256 * MIB, force=False)  # no statistics: nothing to refuse on


def test_the_test_drivers_guest_moves_and_the_move_is_reported() -> None:
    hv = connect(UriChoice("test:///default", "unit test"))
    try:
        move = set_guest_memory(hv, "test", 1024 * MIB, timeout=5)
        assert (move.before_mib, move.now_mib, move.max_mib, move.reached) == (2048, 1024, 8192, True)
        assert hv.guest("test").memory_kib == 1024 * MIB
    finally:
        hv.close()
