"""Identity reset of a clone, planned from a guest tree and applied through DirectoryEditor: what the guest reads
afterwards (its hostname as `dom0 image inspect` sees it, its network files) is what the clone should be."""

from __future__ import annotations

import pytest
from conftest import CHANGE, TREES, Build, clone
from unitkit import dom0

from dom0.errors import Dom0Error, UsageError
from dom0.guest import DirectoryEditor, IdentityChange, plan_identity
from dom0.image.osinspect import inspect_tree


@pytest.mark.parametrize("name", sorted(TREES))
def test_every_distribution_reports_the_new_hostname(guest: Build, name: str) -> None:
    root = guest(name)
    clone(root, IdentityChange(hostname="clone-7.example.net"))
    system = inspect_tree(DirectoryEditor(root).tree)
    assert system is not None
    assert system.hostname == "clone-7.example.net"


def test_suse_keeps_its_own_hostname_file(guest: Build) -> None:
    root = guest("sles10")
    clone(root, IdentityChange(hostname="web2"))
    assert (root / "etc/HOSTNAME").read_text() == "web2\n"
    assert not (root / "etc/hostname").exists()


def test_old_red_hat_hostname_line_is_edited_in_place(guest: Build) -> None:
    root = guest("rhel54")
    clone(root, IdentityChange(hostname="web2.example.com"))
    assert (root / "etc/sysconfig/network").read_text() == (
        "NETWORKING=yes\nHOSTNAME=web2.example.com\nGATEWAY=192.0.2.1\n"
    )
    assert not (root / "etc/hostname").exists()
    assert (root / "etc/hosts").read_text() == (
        "127.0.0.1\tlocalhost.localdomain localhost\n192.0.2.10\tweb2.example.com web2\n"
    )


def test_debian_hosts_keeps_localhost_and_renames_both_names(guest: Build) -> None:
    root = guest("debian12")
    clone(root, IdentityChange(hostname="web2.example.net"))
    hosts = (root / "etc/hosts").read_text()
    assert hosts.splitlines()[:2] == ["127.0.0.1\tlocalhost", "127.0.1.1\tweb2.example.net\tweb2"]
    assert "::1     localhost ip6-localhost ip6-loopback\n" in hosts
    assert (root / "etc/hostname").read_text() == "web2.example.net\n"


def test_machine_id_ssh_keys_udev_rules_and_leases_are_reset(guest: Build) -> None:
    root = guest("debian12")
    clone(root, IdentityChange())
    assert (root / "etc/machine-id").read_text() == "uninitialized\n"
    assert not (root / "var/lib/dbus/machine-id").exists()
    assert sorted(p.name for p in (root / "etc/ssh").iterdir()) == ["sshd_config"]
    assert not (root / "etc/udev/rules.d/70-persistent-net.rules").exists()
    assert not (root / "var/lib/dhcp/dhclient.ens3.leases").exists()
    unit = (root / "etc/systemd/system/ssh.service").read_text()
    assert "ExecStartPre=-/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n" in unit


def test_a_dbus_machine_id_linked_to_etc_is_left_alone(guest: Build) -> None:
    root = guest("debian12", links={"/var/lib/dbus/machine-id": "/etc/machine-id"})
    clone(root, IdentityChange())
    assert (root / "var/lib/dbus/machine-id").is_symlink()


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
    clone(root, IdentityChange(hostname="web2"))
    assert (root / "etc/hosts").read_text().endswith(blocklist)
    assert "web2" in (root / "etc/hosts").read_text()
    assert "bookworm-vm" not in (root / "etc/hosts").read_text()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--ip", "2001:db8::5/64"), "address 2001:db8::5/64 is IPv6: dom0 sets a clone's static IPv4 address only"),
        (
            ("--ip", "10.0.0.5/24", "--gateway", "fe80::1"),
            "gateway fe80::1 is IPv6: dom0 sets a clone's static IPv4 address only",
        ),
    ],
)
def test_an_ipv6_address_is_refused_as_such(flags: tuple[str, ...], message: str) -> None:
    # The identity reset sets IPv4 only: the clone says so and why, before it looks at the source's disks.
    r = dom0("-c", "test:///default", "clone", "test", "test-clone", *flags, "--dry-run")
    assert (r.rc, r.out) == (2, "")
    error, hint = r.err.splitlines()
    assert error == f"dom0: error: {message}"
    assert "keeps the source's IPv6 configuration" in hint
