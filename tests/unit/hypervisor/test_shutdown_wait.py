"""Waiting for orderly shutdowns: one wait for `dom0 shutdown --wait` and for `dom0 host stop`'s many guests."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from dom0.errors import Dom0Error, GuestNotFound, OperationTimeout
from dom0.hypervisor import Hypervisor
from dom0.hypervisor.control import wait_for_stop, wait_until_stopped
from dom0.model import GuestState


class _Host:
    """Guests that stop after a number of looks: `quick` on the second, `slow` never, `gone` vanishes; `dying`
    cannot be read on its second look (as libvirt's Xen driver fails while Xen tears a domain down) and is gone on
    its third; `unreadable` can never be read."""

    def __init__(self) -> None:
        self.looks: dict[str, int] = {}
        self.destroyed: list[str] = []

    def guest(self, ref: str) -> SimpleNamespace:
        self.looks[ref] = self.looks.get(ref, 0) + 1
        if ref == "gone" or (ref == "dying" and self.looks[ref] >= 3):
            raise GuestNotFound(f"no guest {ref}")
        if ref == "unreadable" or (ref == "dying" and self.looks[ref] == 2):
            raise Dom0Error(f"cannot read guest '{ref}': internal error: libxl_domain_info failed for domain '3'")
        stopped = ref == "quick" and self.looks[ref] >= 2
        return SimpleNamespace(state=GuestState.SHUTOFF if stopped else GuestState.PAUSED)

    def destroy(self, ref: str) -> None:
        self.destroyed.append(ref)


class _Clock:
    """One second passes at each look at the clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def test_many_guests_are_waited_for_together_and_a_stubborn_one_is_only_reported() -> None:
    host, clock = _Host(), _Clock()
    hv = cast(Hypervisor, host)
    stopped, running = wait_for_stop(hv, ["slow", "quick", "gone"], 5, poll=0, clock=clock)
    assert stopped == ["gone", "quick"]  # in the order they stopped
    assert running == {"slow": GuestState.PAUSED}
    assert host.destroyed == []
    assert clock.now <= 8  # one timeout for all of them, not one each
    assert host.looks["slow"] == host.looks["quick"] + 3  # the stopped one is no longer polled


def test_shutdown_wait_says_the_guest_still_runs() -> None:
    host = _Host()
    with pytest.raises(OperationTimeout, match=r"web1 did not stop within 3 s; it still runs \(paused\)") as caught:
        wait_until_stopped(cast(Hypervisor, host), "slow", 3, poll=0, clock=_Clock(), name="web1")
    assert "dom0 destroy web1" in caught.value.hint
    assert host.destroyed == []
    assert 0 < wait_until_stopped(cast(Hypervisor, host), "quick", 3, poll=0, clock=_Clock()) <= 3


def test_a_guest_that_cannot_be_read_while_it_stops_is_looked_at_again() -> None:
    host, clock = _Host(), _Clock()
    stopped, running = wait_for_stop(cast(Hypervisor, host), ["dying", "unreadable"], 5, poll=0, clock=clock)
    assert stopped == ["dying"]
    assert running == {"unreadable": GuestState.NOSTATE}  # reported still running at the timeout, not destroyed
    assert host.destroyed == []
