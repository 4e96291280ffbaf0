"""Netplan files, as cloud-init and Ubuntu's installer write them, after a clone's identity reset."""

from __future__ import annotations

from conftest import CHANGE, CLOUD_INIT_NETPLAN, INSTALLER_NETPLAN, Build, clone

from dom0.guest import IdentityChange


def test_netplan_from_cloud_init(guest: Build) -> None:
    root = guest("ubuntu22")
    clone(root, CHANGE)
    path = root / "etc/netplan/50-cloud-init.yaml"
    text = path.read_text()
    assert text.endswith(
        "network:\n    ethernets:\n        enp1s0:\n            addresses: [10.1.2.3/24]\n"
        "            routes:\n              - to: 0.0.0.0/0\n                via: 10.1.2.1\n"
        "            dhcp4: false\n            match:\n                macaddress: 52:54:00:11:22:33\n"
        "            set-name: enp1s0\n    version: 2\n"
    )
    assert path.stat().st_mode & 0o777 == 0o600
    assert (root / "etc/machine-id").read_text() == "", "an empty machine-id stays empty"


def test_netplan_from_the_installer(guest: Build) -> None:
    root = guest("ubuntu22", files={"/etc/netplan/00-installer-config.yaml": INSTALLER_NETPLAN})
    clone(root, IdentityChange(address="10.1.2.3/24", gateway="10.1.2.1"))
    text = (root / "etc/netplan/00-installer-config.yaml").read_text()
    assert "      addresses:\n      - 10.1.2.3/24\n      - fd00::50/64\n      nameservers:\n" in text
    assert "        addresses: [192.168.122.1]\n" in text, "the DNS server is not an interface address"
    assert "      - to: default\n        via: 10.1.2.1\n" in text
    assert (root / "etc/netplan/50-cloud-init.yaml").read_text() == CLOUD_INIT_NETPLAN
