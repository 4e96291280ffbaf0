"""systemd-networkd .network and .link files after a clone's identity reset."""

from __future__ import annotations

from conftest import CHANGE, Build, clone


def test_systemd_networkd_and_link_files(guest: Build) -> None:
    root = guest("arch")
    clone(root, CHANGE)
    assert (root / "etc/systemd/network/20-wired.network").read_text() == (
        "[Match]\nName=en*\n\n[Network]\nDHCP=ipv6\nAddress=10.1.2.3/24\nGateway=10.1.2.1\n"
    )
    assert (root / "etc/systemd/network/10-lan.link").read_text() == (
        "[Match]\nMACAddress=52:54:00:11:22:33\n\n[Link]\nName=lan0\n"
    )
