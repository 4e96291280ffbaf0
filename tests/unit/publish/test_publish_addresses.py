"""Which address a published guest's connections go to: `to` first, else the hypervisor's best source."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, cast

import pytest

from dom0.errors import GuestNotFound
from dom0.hypervisor import choose_uri, connect
from dom0.hypervisor.protocol import Hypervisor
from dom0.model import Guest, GuestAddress, GuestState
from dom0.publish.addresses import resolve
from dom0.publish.table import PortRange, PublishEntry, PublishTable, Transport


def entry(public: str = "203.0.113.10", port: int = 80, guest: str = "test", to: str | None = None) -> PublishEntry:
    return PublishEntry(
        public=ipaddress.ip_address(public),
        ports=PortRange(port, port),
        transport=Transport.TCP,
        guest=guest,
        guest_ports=PortRange(port, port),
        to=ipaddress.ip_address(to) if to else None,
        line=3,
    )


def table(*entries: PublishEntry) -> PublishTable:
    return PublishTable(Path("/etc/dom0/publish.toml"), entries)


class FakeHypervisor:
    """A hypervisor whose guests hold exactly the addresses a test gives them."""

    def __init__(self, guests: dict[str, tuple[GuestState, list[GuestAddress]]]) -> None:
        self.guests = guests
        self.asked: list[str] = []

    def guest(self, ref: str) -> Guest:
        if ref not in self.guests:
            raise GuestNotFound(f"no guest {ref!r}")
        return Guest(ref, "u", 1, self.guests[ref][0], 1, 1, 1, 0)

    def addresses(self, ref: str) -> list[GuestAddress]:
        self.asked.append(ref)
        return self.guests[ref][1]


def fake(guests: dict[str, tuple[GuestState, list[GuestAddress]]]) -> Any:
    return cast(Hypervisor, FakeHypervisor(guests))


def test_lease_address_of_libvirt_test_guest() -> None:
    hv = connect(choose_uri("test:///default"))
    try:
        (target,) = resolve(hv, table(entry()))
    finally:
        hv.close()
    assert (str(target.address), target.source, target.note) == ("192.168.122.3", "lease", "")
    assert target.destination == "192.168.122.3:80"


def test_to_wins_without_asking() -> None:
    hv = FakeHypervisor({"web": (GuestState.RUNNING, [GuestAddress("10.0.0.9", "aa:bb", "lease")])})
    (target,) = resolve(cast(Hypervisor, hv), table(entry(to="10.0.0.7", guest="web")))
    assert (str(target.address), target.source) == ("10.0.0.7", "to")
    assert hv.asked == []


def test_a_pinned_address_still_names_a_guest_that_must_exist() -> None:
    hv = FakeHypervisor({})
    with pytest.raises(GuestNotFound, match=r"line \d+: no guest 'nowhere'"):
        resolve(cast(Hypervisor, hv), table(entry(to="10.0.0.7", guest="nowhere")))
    (target,) = resolve(cast(Hypervisor, hv), table(entry(to="10.0.0.7", guest="nowhere")), missing_ok=True)
    assert str(target.address) == "10.0.0.7"


def test_lease_preferred_over_neighbour_and_other_family_ignored() -> None:
    found = [
        GuestAddress("192.168.122.50", "aa:bb", "neighbour"),
        GuestAddress("fd00::5", "aa:bb", "agent"),
        GuestAddress("192.168.122.5", "aa:bb", "lease"),
    ]
    (target,) = resolve(fake({"web": (GuestState.RUNNING, found)}), table(entry(guest="web")))
    assert (str(target.address), target.source) == ("192.168.122.5", "lease")
    assert target.note == (
        "web has several IPv4 addresses: using 192.168.122.5 (lease), not 192.168.122.50; pin one with --to"
    )


def test_ipv6_public_takes_the_ipv6_address() -> None:
    found = [GuestAddress("192.168.122.5", "aa", "lease"), GuestAddress("fd00::5", "aa", "agent")]
    (target,) = resolve(fake({"web": (GuestState.RUNNING, found)}), table(entry("2001:db8::1", guest="web")))
    assert (str(target.address), target.source, target.destination) == ("fd00::5", "agent", "[fd00::5]:80")


def test_stopped_guest_has_no_address_and_says_so() -> None:
    (target,) = resolve(fake({"db": (GuestState.SHUTOFF, [])}), table(entry(guest="db")))
    assert target.address is None
    assert target.note == "db is shutoff: it has no address until it runs"


def test_running_guest_nobody_knows_hints_to() -> None:
    (target,) = resolve(fake({"db": (GuestState.RUNNING, [])}), table(entry(guest="db")))
    assert target.address is None
    assert "no source knows an address of db" in target.note
    assert "--to GUEST_IP" in target.note


def test_only_other_family_known() -> None:
    found = [GuestAddress("fd00::5", "aa", "agent")]
    (target,) = resolve(fake({"db": (GuestState.RUNNING, found)}), table(entry(guest="db")))
    assert target.address is None
    assert target.note == "db has no IPv4 address (fd00::5 only), and 203.0.113.10 is IPv4"


def test_unknown_guest_refuses_whole_table() -> None:
    with pytest.raises(GuestNotFound) as info:
        resolve(fake({"web": (GuestState.RUNNING, [])}), table(entry(guest="web"), entry(port=81, guest="gone")))
    assert str(info.value) == (
        "/etc/dom0/publish.toml: line 3: no guest 'gone' (203.0.113.10:81/tcp); nothing was changed"
    )
    assert "dom0 list --all" in info.value.hint


def test_each_guest_asked_once() -> None:
    hv = FakeHypervisor({"web": (GuestState.RUNNING, [GuestAddress("192.168.122.5", "aa", "lease")])})
    resolve(cast(Hypervisor, hv), table(entry(guest="web"), entry(port=443, guest="web")))
    assert hv.asked == ["web"]


def test_unknown_guest_noted_when_only_reporting() -> None:
    (target,) = resolve(fake({}), table(entry(guest="gone")), missing_ok=True)
    assert (target.address, target.note) == (None, "no guest 'gone' on this hypervisor")
