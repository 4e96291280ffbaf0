"""What `dom0 publish apply` plans: per-entry changes against the applied table, and guests without an address."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from publishkit import entry

from dom0.publish.addresses import Target
from dom0.publish.apply import Change, LibvirtCompat, describe_libvirt, plan_apply
from dom0.publish.ruleset import IPNetwork, Live
from dom0.publish.table import IPAddress

ip = ipaddress.ip_address


def no_subnet(_: IPAddress) -> IPNetwork | None:
    return None


def no_libvirt(_: Iterable[str]) -> tuple[LibvirtCompat, ...]:
    return ()


def test_added_changed_unchanged_removed() -> None:
    targets = [
        Target(entry(ports="80"), ip("192.168.122.3"), "lease"),
        Target(entry(ports="443"), ip("192.168.122.9"), "lease"),
        Target(entry(ports="25"), ip("192.168.122.4"), "to"),
    ]
    live = Live(
        {
            "203.0.113.10:443/tcp": "192.168.122.3:443",
            "203.0.113.10:25/tcp": "192.168.122.4:25",
            "203.0.113.10:22/tcp": "192.168.122.5:22",
        }
    )
    p = plan_apply(targets, live, subnets=no_subnet, libvirt=no_libvirt)
    assert [(c.key, c.change, c.before, c.after) for c in p.changes] == [
        ("203.0.113.10:80/tcp", Change.ADDED, "", "192.168.122.3:80"),
        ("203.0.113.10:443/tcp", Change.CHANGED, "192.168.122.3:443", "192.168.122.9:443"),
        ("203.0.113.10:25/tcp", Change.UNCHANGED, "192.168.122.4:25", "192.168.122.4:25"),
        ("203.0.113.10:22/tcp", Change.REMOVED, "192.168.122.5:22", ""),
    ]
    assert p.changed
    assert "dport 22" not in p.ruleset


def test_nothing_changed() -> None:
    targets = [Target(entry(ports="80"), ip("192.168.122.3"), "lease")]
    p = plan_apply(targets, Live({"203.0.113.10:80/tcp": "192.168.122.3:80"}), subnets=no_subnet, libvirt=no_libvirt)
    assert not p.changed
    assert p.warnings == ()


def test_hairpin_subnet_change_is_a_change() -> None:
    targets = [Target(entry(ports="80"), ip("192.168.122.3"), "lease")]
    live = Live({"203.0.113.10:80/tcp": "192.168.122.3:80"})
    p = plan_apply(targets, live, subnets=lambda a: ipaddress.ip_network("192.168.122.0/24"), libvirt=no_libvirt)
    assert [c.change for c in p.changes] == [Change.CHANGED]
    assert "ip saddr 192.168.122.0/24 ip daddr 192.168.122.3 tcp dport 80 masquerade" in p.ruleset


def test_stopped_guest_keeps_the_address_applied_before() -> None:
    targets = [Target(entry(ports="80"), None, "", "web is shutoff: it has no address until it runs")]
    p = plan_apply(targets, Live({"203.0.113.10:80/tcp": "192.168.122.3:80"}), subnets=no_subnet, libvirt=no_libvirt)
    assert p.warnings == (
        "203.0.113.10:80/tcp: web is shutoff: it has no address until it runs; keeping 192.168.122.3:80, "
        "applied before",
    )
    assert [c.change for c in p.changes] == [Change.UNCHANGED]
    assert "dnat ip to 192.168.122.3:80" in p.ruleset


def test_guest_never_applied_without_address_is_left_out() -> None:
    targets = [Target(entry(ports="80"), None, "", "no source knows an address of web")]
    p = plan_apply(targets, Live(), subnets=no_subnet, libvirt=no_libvirt)
    assert p.warnings == ("203.0.113.10:80/tcp: no source knows an address of web; left out until it has an address",)
    assert [c.change for c in p.changes] == [Change.LEFT_OUT]
    assert not p.changed
    assert "dnat" not in p.ruleset


def test_libvirt_lines_say_what_and_why() -> None:
    line = describe_libvirt(LibvirtCompat("ip", "missing"), done=True)
    assert line.startswith("libvirt's NAT network rejects new inbound connections to its guests (chain LIBVIRT_FWI)")
    assert "inserted one rule at the top of iptables's FORWARD chain" in line
    assert line.endswith(
        "iptables -I FORWARD 1 -m connmark --mark 0x20000000/0x20000000 -m comment --comment 'dom0 publish' -j ACCEPT"
    )
    assert "would insert" in describe_libvirt(LibvirtCompat("ip", "missing"), done=False)
    assert "is in place" in describe_libvirt(LibvirtCompat("ip", "in place"), done=True)
