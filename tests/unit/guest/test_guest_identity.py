"""Identity reset of a clone, planned from a guest tree and applied through DirectoryEditor: what the guest reads
afterwards (its hostname as `dom0 image inspect` sees it, its network files) is what the clone should be."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CLOUD_INIT_NETPLAN, INSTALLER_NETPLAN, NEW_MAC, OLD_MAC, SLES_IFCFG_NAME, TREES

from dom0.errors import Dom0Error, UsageError
from dom0.guest import DirectoryEditor, Edit, IdentityChange, apply_edits, plan_identity
from dom0.image.osinspect import inspect_tree

Build = Callable[..., Path]
CHANGE = IdentityChange(hostname="web2", address="10.1.2.3/24", gateway="10.1.2.1", macs=((OLD_MAC, NEW_MAC),))


def _clone(root: Path, change: IdentityChange) -> list[Edit]:
    editor = DirectoryEditor(root)
    system = inspect_tree(editor.tree)
    assert system is not None
    edits = plan_identity(editor.tree, system, change)
    apply_edits(editor, edits)
    return edits


@pytest.mark.parametrize("name", sorted(TREES))
def test_every_distribution_reports_the_new_hostname(guest: Build, name: str) -> None:
    root = guest(name)
    _clone(root, IdentityChange(hostname="clone-7.example.net"))
    system = inspect_tree(DirectoryEditor(root).tree)
    assert system is not None
    assert system.hostname == "clone-7.example.net"


def test_suse_keeps_its_own_hostname_file(guest: Build) -> None:
    root = guest("sles10")
    _clone(root, IdentityChange(hostname="web2"))
    assert (root / "etc/HOSTNAME").read_text() == "web2\n"
    assert not (root / "etc/hostname").exists()


def test_old_red_hat_hostname_line_is_edited_in_place(guest: Build) -> None:
    root = guest("rhel54")
    _clone(root, IdentityChange(hostname="web2.example.com"))
    assert (root / "etc/sysconfig/network").read_text() == (
        "NETWORKING=yes\nHOSTNAME=web2.example.com\nGATEWAY=192.0.2.1\n"
    )
    assert not (root / "etc/hostname").exists()
    assert (root / "etc/hosts").read_text() == (
        "127.0.0.1\tlocalhost.localdomain localhost\n192.0.2.10\tweb2.example.com web2\n"
    )


def test_debian_hosts_keeps_localhost_and_renames_both_names(guest: Build) -> None:
    root = guest("debian12")
    _clone(root, IdentityChange(hostname="web2.example.net"))
    hosts = (root / "etc/hosts").read_text()
    assert hosts.splitlines()[:2] == ["127.0.0.1\tlocalhost", "127.0.1.1\tweb2.example.net\tweb2"]
    assert "::1     localhost ip6-localhost ip6-loopback\n" in hosts
    assert (root / "etc/hostname").read_text() == "web2.example.net\n"


def test_ifupdown_dhcp_becomes_static_and_the_rest_is_kept(guest: Build) -> None:
    root = guest("debian12")
    _clone(root, CHANGE)
    text = (root / "etc/network/interfaces").read_text()
    assert "iface ens3 inet static\n    address 10.1.2.3\n    netmask 255.255.255.0\n    gateway 10.1.2.1\n" in text
    assert "iface lo inet loopback\n" in text
    assert "# This is an autoconfigured IPv6 interface\niface ens3 inet6 auto\n" in text
    assert text.startswith("# This file describes")


def test_ifupdown_static_lines_are_replaced_where_they_are(guest: Build) -> None:
    root = guest("debian4")
    _clone(root, CHANGE)
    assert (root / "etc/network/interfaces").read_text() == (
        "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet static\n"
        "\taddress 10.1.2.3\n\tnetmask 255.255.255.0\n\tnetwork 10.1.2.0\n\tbroadcast 10.1.2.255\n"
        "\tgateway 10.1.2.1\n\thwaddress ether 52:54:00:11:22:33\n"
    )


def test_without_an_address_only_macs_change(guest: Build) -> None:
    root = guest("debian4")
    _clone(root, IdentityChange(macs=((OLD_MAC, NEW_MAC),)))
    text = (root / "etc/network/interfaces").read_text()
    assert "address 192.168.1.10" in text
    assert "hwaddress ether 52:54:00:11:22:33" in text


def test_red_hat_ifcfg(guest: Build) -> None:
    root = guest("centos53")
    edits = _clone(root, CHANGE)
    assert (root / "etc/sysconfig/network-scripts/ifcfg-eth0").read_text() == (
        "# Xen Virtual Ethernet\nDEVICE=eth0\nBOOTPROTO=none\nHWADDR=52:54:00:11:22:33\nONBOOT=yes\n"
        "IPADDR=10.1.2.3\nPREFIX=24\nGATEWAY=10.1.2.1\n"
    )
    assert (root / "etc/sysconfig/network-scripts/ifcfg-lo").read_text().startswith("DEVICE=lo\n")
    assert not (root / "var/lib/dhclient/dhclient-eth0.leases").exists()
    assert all(e.why for e in edits)


def test_red_hat_netmask_and_global_gateway_stay_where_they_were(guest: Build) -> None:
    root = guest("rhel54")
    _clone(root, CHANGE)
    assert (root / "etc/sysconfig/network-scripts/ifcfg-eth0").read_text() == (
        "DEVICE=eth0\nBOOTPROTO=none\nIPADDR=10.1.2.3\nNETMASK=255.255.255.0\nHWADDR=52:54:00:11:22:33\nONBOOT=yes\n"
    )
    assert (root / "etc/sysconfig/network").read_text() == ("NETWORKING=yes\nHOSTNAME=web2\nGATEWAY=10.1.2.1\n")


def test_netplan_from_cloud_init(guest: Build) -> None:
    root = guest("ubuntu22")
    _clone(root, CHANGE)
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
    _clone(root, IdentityChange(address="10.1.2.3/24", gateway="10.1.2.1"))
    text = (root / "etc/netplan/00-installer-config.yaml").read_text()
    assert "      addresses:\n      - 10.1.2.3/24\n      - fd00::50/64\n      nameservers:\n" in text
    assert "        addresses: [192.168.122.1]\n" in text, "the DNS server is not an interface address"
    assert "      - to: default\n        via: 10.1.2.1\n" in text
    assert (root / "etc/netplan/50-cloud-init.yaml").read_text() == CLOUD_INIT_NETPLAN


def test_networkmanager_keyfile(guest: Build) -> None:
    root = guest("rocky9")
    _clone(root, CHANGE)
    path = root / "etc/NetworkManager/system-connections/enp1s0.nmconnection"
    text = path.read_text()
    assert "[ethernet]\nmac-address=52:54:00:11:22:33\n" in text
    assert (
        "[ipv4]\nmethod=manual\naddress1=10.1.2.3/24\ngateway=10.1.2.1\n\n[ipv6]\naddr-gen-mode=eui64\nmethod=auto\n"
        in text
    )
    assert path.stat().st_mode & 0o777 == 0o600
    assert not (root / "var/lib/NetworkManager/internal-3f0a2c4e-enp1s0.lease").exists()


def test_systemd_networkd_and_link_files(guest: Build) -> None:
    root = guest("arch")
    _clone(root, CHANGE)
    assert (root / "etc/systemd/network/20-wired.network").read_text() == (
        "[Match]\nName=en*\n\n[Network]\nDHCP=ipv6\nAddress=10.1.2.3/24\nGateway=10.1.2.1\n"
    )
    assert (root / "etc/systemd/network/10-lan.link").read_text() == (
        "[Match]\nMACAddress=52:54:00:11:22:33\n\n[Link]\nName=lan0\n"
    )


def test_suse_ifcfg_named_after_the_mac_moves_with_it(guest: Build) -> None:
    root = guest("sles10")
    _clone(root, CHANGE)
    assert not (root / SLES_IFCFG_NAME.lstrip("/")).exists()
    moved = root / "etc/sysconfig/network/ifcfg-eth-id-52:54:00:11:22:33"
    assert moved.read_text() == (
        "BOOTPROTO='static'\nSTARTMODE='auto'\nUNIQUE='rBUF.+xOL8ZCSAQC'\n_nm_name='bus-xen-vif-0'\nIPADDR='10.1.2.3/24'\n"
    )
    assert (root / "etc/sysconfig/network/routes").read_text() == "default 10.1.2.1 - -\n"


def test_machine_id_ssh_keys_udev_rules_and_leases_are_reset(guest: Build) -> None:
    root = guest("debian12")
    _clone(root, IdentityChange())
    assert (root / "etc/machine-id").read_text() == "uninitialized\n"
    assert not (root / "var/lib/dbus/machine-id").exists()
    assert sorted(p.name for p in (root / "etc/ssh").iterdir()) == ["sshd_config"]
    assert not (root / "etc/udev/rules.d/70-persistent-net.rules").exists()
    assert not (root / "var/lib/dhcp/dhclient.ens3.leases").exists()
    unit = (root / "etc/systemd/system/ssh.service").read_text()
    assert "ExecStartPre=-/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n" in unit


def test_a_dbus_machine_id_linked_to_etc_is_left_alone(guest: Build) -> None:
    root = guest("debian12", links={"/var/lib/dbus/machine-id": "/etc/machine-id"})
    _clone(root, IdentityChange())
    assert (root / "var/lib/dbus/machine-id").is_symlink()


def test_a_guest_without_network_config_gets_one_in_its_format(guest: Build) -> None:
    root = guest("fedora39", files={"/etc/NetworkManager/system-connections/.keep": ""})
    edits = _clone(root, CHANGE)
    text = (root / "etc/NetworkManager/system-connections/clone0.nmconnection").read_text()
    assert f"mac-address={NEW_MAC}\n" in text
    assert "[ipv4]\nmethod=manual\naddress1=10.1.2.3/24\ngateway=10.1.2.1\n" in text
    assert any("new" in e.why for e in edits)


def test_no_place_for_a_network_config_is_a_clear_error(guest: Build) -> None:
    root = guest("gentoo")
    editor = DirectoryEditor(root)
    system = inspect_tree(editor.tree)
    assert system is not None
    with pytest.raises(Dom0Error, match="no network configuration") as err:
        plan_identity(editor.tree, system, CHANGE)
    assert err.value.hint


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (IdentityChange(hostname="bad_name"), "not a valid hostname"),
        (IdentityChange(address="10.1.2.3"), "no prefix"),
        (IdentityChange(address="10.1.2.3/24", gateway="10.9.9.1"), "not in 10.1.2.0/24"),
        (IdentityChange(gateway="10.1.2.1"), "without an address"),
        (IdentityChange(macs=(("52:54:00:00:00:01", "nonsense"),)), "not a MAC"),
    ],
)
def test_malformed_changes_are_refused(guest: Build, change: IdentityChange, message: str) -> None:
    root = guest("debian12")
    editor = DirectoryEditor(root)
    system = inspect_tree(editor.tree)
    assert system is not None
    with pytest.raises(UsageError, match=message):
        plan_identity(editor.tree, system, change)


def test_planning_changes_nothing_and_every_edit_says_why(guest: Build) -> None:
    root = guest("debian12")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
    editor = DirectoryEditor(root)
    system = inspect_tree(editor.tree)
    assert system is not None
    edits = plan_identity(editor.tree, system, CHANGE)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()} == before
    assert all(e.why for e in edits)
    assert "write  /etc/hostname: hostname bookworm-vm -> web2" in [str(e) for e in edits]


def test_a_long_hosts_file_is_still_renamed(guest: Build) -> None:
    # Ad-blocking /etc/hosts lists run to MiBs: far above what dom0 reads of a config file, still the guest's own.
    blocklist = "".join(f"0.0.0.0 ads{i}.example.com\n" for i in range(20_000))
    root = guest("debian12")
    hosts = (root / "etc/hosts").read_text()
    (root / "etc/hosts").write_text(hosts + blocklist)
    _clone(root, IdentityChange(hostname="web2"))
    assert (root / "etc/hosts").read_text().endswith(blocklist)
    assert "web2" in (root / "etc/hosts").read_text()
    assert "bookworm-vm" not in (root / "etc/hosts").read_text()
