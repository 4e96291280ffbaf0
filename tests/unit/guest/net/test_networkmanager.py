"""NetworkManager keyfiles after a clone's identity reset, and the keyfile written when a guest has none."""

from __future__ import annotations

from conftest import CHANGE, NEW_MAC, Build, clone


def test_networkmanager_keyfile(guest: Build) -> None:
    root = guest("rocky9")
    clone(root, CHANGE)
    path = root / "etc/NetworkManager/system-connections/enp1s0.nmconnection"
    text = path.read_text()
    assert "[ethernet]\nmac-address=52:54:00:11:22:33\n" in text
    assert (
        "[ipv4]\nmethod=manual\naddress1=10.1.2.3/24\ngateway=10.1.2.1\n\n[ipv6]\naddr-gen-mode=eui64\nmethod=auto\n"
        in text
    )
    assert path.stat().st_mode & 0o777 == 0o600
    assert not (root / "var/lib/NetworkManager/internal-3f0a2c4e-enp1s0.lease").exists()


def test_a_guest_without_network_config_gets_one_in_its_format(guest: Build) -> None:
    root = guest("fedora39", files={"/etc/NetworkManager/system-connections/.keep": ""})
    edits = clone(root, CHANGE)
    text = (root / "etc/NetworkManager/system-connections/clone0.nmconnection").read_text()
    assert f"mac-address={NEW_MAC}\n" in text
    assert "[ipv4]\nmethod=manual\naddress1=10.1.2.3/24\ngateway=10.1.2.1\n" in text
    assert any("new" in e.why for e in edits)
