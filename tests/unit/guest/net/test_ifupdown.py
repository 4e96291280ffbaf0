"""Debian's ifupdown: /etc/network/interfaces after a clone's identity reset."""

from __future__ import annotations

from conftest import CHANGE, NEW_MAC, OLD_MAC, Build, clone

from dom0.guest import IdentityChange


def test_ifupdown_dhcp_becomes_static_and_the_rest_is_kept(guest: Build) -> None:
    root = guest("debian12")
    clone(root, CHANGE)
    text = (root / "etc/network/interfaces").read_text()
    assert "iface ens3 inet static\n    address 10.1.2.3\n    netmask 255.255.255.0\n    gateway 10.1.2.1\n" in text
    assert "iface lo inet loopback\n" in text
    assert "# This is an autoconfigured IPv6 interface\niface ens3 inet6 auto\n" in text
    assert text.startswith("# This file describes")


def test_ifupdown_static_lines_are_replaced_where_they_are(guest: Build) -> None:
    root = guest("debian4")
    clone(root, CHANGE)
    assert (root / "etc/network/interfaces").read_text() == (
        "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet static\n"
        "\taddress 10.1.2.3\n\tnetmask 255.255.255.0\n\tnetwork 10.1.2.0\n\tbroadcast 10.1.2.255\n"
        "\tgateway 10.1.2.1\n\thwaddress ether 52:54:00:11:22:33\n"
    )


def test_without_an_address_only_macs_change(guest: Build) -> None:
    root = guest("debian4")
    clone(root, IdentityChange(macs=((OLD_MAC, NEW_MAC),)))
    text = (root / "etc/network/interfaces").read_text()
    assert "address 192.168.1.10" in text
    assert "hwaddress ether 52:54:00:11:22:33" in text
