"""Reverse-proxy lines for the publish table: one per TCP entry, UDP as a comment, names that cannot break out."""

from __future__ import annotations

import ipaddress

from publishkit import entry

from dom0.publish.addresses import Target
from dom0.publish.proxy import haproxy, squid
from dom0.publish.table import Transport

ip = ipaddress.ip_address


def test_hostile_guest_name_stays_one_token() -> None:
    t = Target(entry(ports="80", guest='web\nfrontend evil\n  bind *:22 "x'), ip("192.168.122.3"), "to")
    text = haproxy([t])
    assert "\nfrontend evil" not in text
    assert "    server web_frontend_evil_bind_22_x 192.168.122.3:80 check\n" in text
    assert all(not line.startswith("frontend") or line.split()[1].isascii() for line in text.splitlines())
    assert "\nfrontend evil" not in squid([t])


def test_udp_range_and_no_address_become_comments() -> None:
    targets = [
        Target(entry(ports="53", transport=Transport.UDP), ip("192.168.122.3"), "to"),
        Target(entry(ports="8000-8010"), ip("192.168.122.3"), "to"),
        Target(entry(ports="25", guest="mail"), None, "", "stopped"),
    ]
    assert haproxy(targets).splitlines()[1:] == [
        "# 203.0.113.10:53/udp: UDP; haproxy's mode tcp carries only TCP (keep DNAT for it: dom0 publish apply)",
        "# 203.0.113.10:8000-8010/tcp: a port range; list its ports one by one for a proxy",
        "# 203.0.113.10:25/tcp: mail has no address now; give it with --to",
    ]


def test_ipv6_bind_and_squid_peer() -> None:
    t = Target(entry("2001:db8::1", ports="80", guest_ports="8080"), ip("fd00::3"), "agent")
    assert "    bind [2001:db8::1]:80\n" in haproxy([t])
    text = squid([t])
    assert "http_port [2001:db8::1]:80 accel defaultsite=2001:db8::1 name=web_2001_db8_1_80_tcp_port\n" in text
    assert "cache_peer fd00::3 parent 8080 0 no-query originserver name=web_2001_db8_1_80_tcp\n" in text
