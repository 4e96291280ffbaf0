"""The nft text dom0 applies, as an admin reads it with --dry-run, and the applied table read back."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Any

import pytest
from publishkit import entry, in_ns, netns

from dom0 import run
from dom0.errors import Dom0Error
from dom0.publish import ruleset
from dom0.publish.addresses import Target
from dom0.publish.ruleset import Live, read_live, render
from dom0.publish.table import Transport

ip = ipaddress.ip_address
VIRBR0 = {ip("192.168.122.3"): ipaddress.ip_network("192.168.122.0/24")}


def test_one_entry_whole_text() -> None:
    text = render([Target(entry(ports="80", guest_ports="8080"), ip("192.168.122.3"), "lease")], VIRBR0)
    rule = "ip daddr 203.0.113.10 tcp dport 80"
    dnat = 'dnat ip to 192.168.122.3:8080 comment "dom0 publish 203.0.113.10:80/tcp -> 192.168.122.3:8080"'
    assert text == (
        "# dom0 publish: the whole of table inet dom0, replaced in one transaction; no other table is touched\n"
        "table inet dom0 {}\n"
        "flush table inet dom0\n"
        "table inet dom0 {\n"
        "\t# connections from outside and from guests\n"
        "\tchain prerouting {\n"
        "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
        f"\t\t{rule} ct mark set ct mark | 0x20000000 {dnat}\n"
        "\t}\n"
        "\t# connections this host opens to its own public addresses\n"
        "\tchain output {\n"
        "\t\ttype nat hook output priority -100; policy accept;\n"
        f"\t\t{rule} {dnat}\n"
        "\t}\n"
        "\t# hairpin only: a guest reaching a neighbour through the public address; outside clients keep theirs\n"
        "\tchain postrouting {\n"
        "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
        "\t\tct status dnat ct mark & 0x20000000 == 0x20000000 ip saddr 192.168.122.0/24 ip daddr 192.168.122.3"
        ' tcp dport 8080 masquerade comment "dom0 publish 203.0.113.10:80/tcp hairpin 192.168.122.0/24"\n'
        "\t}\n"
        "}\n"
    )


def test_empty_table_still_replaces_dom0s_table() -> None:
    text = render([], {})
    assert "flush table inet dom0\n" in text
    assert "dnat" not in text


def test_ranges_same_numbers_keep_each_port_shifted_ones_map_port_to_port() -> None:
    same = Target(entry(ports="3000-3010"), ip("192.168.122.4"), "to")
    shifted = Target(entry(ports="1000-1002", guest_ports="2000-2002"), ip("192.168.122.4"), "to")
    text = render([same, shifted], {})
    assert "tcp dport 3000-3010 ct mark set ct mark | 0x20000000 dnat ip to 192.168.122.4 comment" in text
    assert (
        "dnat ip to tcp dport map { 1000 : 192.168.122.4 . 2000, 1001 : 192.168.122.4 . 2001,"
        " 1002 : 192.168.122.4 . 2002 }" in text
    )
    assert "masquerade" not in text  # no subnet known: no hairpin rule


def test_ipv6_udp() -> None:
    t = Target(entry(public="2001:db8::1", ports="53", transport=Transport.UDP), ip("fd00::3"), "agent")
    text = render([t], {ip("fd00::3"): ipaddress.ip_network("fd00::/64")})
    assert (
        'ip6 daddr 2001:db8::1 udp dport 53 dnat ip6 to [fd00::3]:53 comment "dom0 publish [2001:db8::1]:53/udp'
        ' -> [fd00::3]:53"' in text
    )
    assert "ip6 saddr fd00::/64 ip6 daddr fd00::3 udp dport 53 masquerade" in text


def test_entry_without_address_gets_no_rules() -> None:
    assert "dport 22" not in render([Target(entry(ports="22"), None, "", "stopped")], {})


def test_huge_shifted_range_refused_with_hint() -> None:
    t = Target(entry(ports="10000-20000", guest_ports="30000-40000"), ip("192.168.122.4"), "to")
    with pytest.raises(Dom0Error) as info:
        render([t], {})
    assert "10001 ports onto other port numbers" in str(info.value)
    assert info.value.hint == "publish it onto the same port numbers (10000-20000) or split the range"


def test_nft_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(Dom0Error) as info:
        read_live()
    assert str(info.value).startswith("nft is not installed")
    assert info.value.hint == "apt install nftables"


def test_nft_error_line() -> None:
    err = b"/dev/stdin:7:26-40: Error: syntax error\nline\n   ^^^\n"
    assert ruleset.nft_error(err) == "Error: syntax error (ruleset line 7)"


def test_nft_loads_the_text_and_it_reads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    targets = [
        Target(entry(ports="80", guest_ports="8080"), ip("192.168.122.3"), "lease"),
        Target(entry(ports="1000-1002", guest_ports="2000-2002"), ip("192.168.122.4"), "to"),
        Target(entry(public="2001:db8::1", ports="60-61", guest_ports="70-71"), ip("fd00::3"), "agent"),
    ]
    path = tmp_path / "rules.nft"
    path.write_text(render(targets, VIRBR0))
    with netns() as ns:
        assert read_in(ns, monkeypatch) == Live({}, {})
        in_ns(ns, "nft", "-f", str(path))
        in_ns(ns, "nft", "-f", str(path))  # a second load replaces, it does not add
        live = read_in(ns, monkeypatch)
    assert live == Live(
        {
            "203.0.113.10:80/tcp": "192.168.122.3:8080",
            "203.0.113.10:1000-1002/tcp": "192.168.122.4:2000-2002",
            "[2001:db8::1]:60-61/tcp": "[fd00::3]:70-71",
        },
        {"203.0.113.10:80/tcp": "192.168.122.0/24"},
    )


def read_in(ns: str, monkeypatch: pytest.MonkeyPatch) -> Live:
    """read_live, with its nft run inside the namespace."""
    real = run.run

    def inside(cmd: list[str], **kwargs: Any) -> Any:
        return real(["ip", "netns", "exec", ns, *cmd], **kwargs)

    with monkeypatch.context() as m:
        m.setattr(run, "run", inside)
        return read_live()


def test_subnet_of_asks_the_kernel() -> None:
    with netns() as ns:
        in_ns(ns, "ip", "link", "add", "br0", "type", "bridge")
        in_ns(ns, "ip", "addr", "add", "192.168.50.1/24", "dev", "br0")
        in_ns(ns, "ip", "link", "set", "br0", "up")
        code = (
            "import ipaddress\nfrom dom0.publish.ruleset import subnet_of as s\n"
            "print(s(ipaddress.ip_address('192.168.50.7')), s(ipaddress.ip_address('192.168.50.1')),"
            " s(ipaddress.ip_address('10.9.9.9')))"
        )
        out = in_ns(ns, sys.executable, "-c", code)
    assert out.split() == ["192.168.50.0/24", "None", "None"]
