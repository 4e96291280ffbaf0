"""dom0.hostnet.plan: the bridge-over-bond files per format and mode, the host's format, and --write's backups."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from dom0.errors import Dom0Error, UsageError
from dom0.hostnet import plan as netplan
from dom0.hostnet.plan import NetPlan, plan_bridge, write_plan


def _plan(fmt: str, uplinks: tuple[str, ...] = ("eno1", "eno2"), mode: str = "active-backup", **kw: str) -> NetPlan:
    return plan_bridge(
        "xenbr0",
        uplinks,
        bond_mode=mode,
        bond_name="bond0",
        address=kw.get("address"),
        gateway=kw.get("gateway"),
        format=fmt,
    )


def _settings(text: str) -> list[str]:
    """The lines that configure something (comments and blank lines left out), stripped."""
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _all_text(p: NetPlan) -> str:
    return "\n".join(f.content for f in p.files)


@pytest.mark.parametrize("fmt", netplan.FORMATS)
@pytest.mark.parametrize("mode", netplan.MODES)
def test_no_format_and_no_mode_ever_configures_the_arp_monitor(fmt: str, mode: str) -> None:
    settings = "\n".join(_settings(_all_text(_plan(fmt, mode=mode)))).lower()
    assert "arp" not in settings
    assert re.search(r"miimon 100|miimonitorsec=100ms|mii-monitor-interval: 100", settings)


def test_ifupdown_bond_under_a_bridge_reads_as_an_admin_expects() -> None:
    p = _plan("ifupdown", address="192.0.2.10/24", gateway="192.0.2.1")
    (f,) = p.files
    assert f.path == "/etc/network/interfaces.d/xenbr0"
    s = _settings(f.content)
    for line in (
        "iface eno1 inet manual",
        "iface eno2 inet manual",
        "auto bond0",
        "iface bond0 inet manual",
        "bond-slaves eno1 eno2",
        "bond-mode active-backup",
        "bond-miimon 100",
        "bond-updelay 200",
        "bond-downdelay 0",
        "bond-primary eno1",
        "auto xenbr0",
        "iface xenbr0 inet static",
        "address 192.0.2.10/24",
        "gateway 192.0.2.1",
        "bridge_ports bond0",
        "bridge_stp off",
        "bridge_fd 0",
    ):
        assert line in s, line
    # the NICs come up with the bond, never on their own
    assert "auto eno1" not in s
    assert "auto eno2" not in s
    # why miimon, and why no STP, are said in the file itself
    assert "ARP probes" in f.content
    assert "STP off" in f.content
    assert p.command == "ifup bond0 xenbr0"


def test_one_nic_gets_a_bridge_straight_on_it_and_no_bond() -> None:
    p = _plan("ifupdown", uplinks=("eno1",))
    s = _settings(p.files[0].content)
    assert "bridge_ports eno1" in s
    assert "iface xenbr0 inet dhcp" in s
    assert not any(ln.startswith("bond") or "bond0" in ln for ln in s)
    assert p.bond is None
    assert any("one NIC" in n for n in p.notes)


def test_networkd_writes_netdevs_for_the_bond_and_bridge_and_networks_for_each_part() -> None:
    p = _plan("networkd", address="192.0.2.10/24", gateway="192.0.2.1")
    by_name = {Path(f.path).name: _settings(f.content) for f in p.files}
    assert set(by_name) == {
        "10-dom0-xenbr0.netdev",
        "10-dom0-bond0.netdev",
        "10-dom0-bond0-eno1.network",
        "10-dom0-bond0-eno2.network",
        "10-dom0-bond0.network",
        "10-dom0-xenbr0.network",
    }
    bond = by_name["10-dom0-bond0.netdev"]
    assert [ln for ln in bond if ln in ("Kind=bond", "[Bond]", "Mode=active-backup", "MIIMonitorSec=100ms")] == [
        "Kind=bond",
        "[Bond]",
        "Mode=active-backup",
        "MIIMonitorSec=100ms",
    ]
    assert "STP=no" in by_name["10-dom0-xenbr0.netdev"]
    assert "ForwardDelaySec=0" in by_name["10-dom0-xenbr0.netdev"]
    assert "PrimarySlave=true" in by_name["10-dom0-bond0-eno1.network"]
    assert "PrimarySlave=true" not in by_name["10-dom0-bond0-eno2.network"]
    assert "Bridge=xenbr0" in by_name["10-dom0-bond0.network"]
    assert {"Address=192.0.2.10/24", "Gateway=192.0.2.1"} <= set(by_name["10-dom0-xenbr0.network"])


def test_netplan_yaml_has_the_bond_parameters_and_no_stp() -> None:
    p = _plan("netplan", mode="802.3ad")
    (f,) = p.files
    assert f.path == "/etc/netplan/60-xenbr0.yaml"
    assert f.mode == 0o600
    s = _settings(f.content)
    for line in (
        "bonds:",
        "interfaces: [eno1, eno2]",
        "mode: 802.3ad",
        "mii-monitor-interval: 100",
        "bridges:",
        "interfaces: [bond0]",
        "stp: false",
        "forward-delay: 0",
        "dhcp4: true",
    ):
        assert line in s, line


def test_netplan_quotes_names_yaml_would_read_as_something_else() -> None:
    p = plan_bridge(
        "on", ("1", "eno2"), bond_mode="active-backup", bond_name="bond0", address=None, gateway=None, format="netplan"
    )
    s = _settings(p.files[0].content)
    assert '"on":' in s
    assert 'interfaces: ["1", eno2]' in s


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("802.3ad", "LACP on the switch"),
        ("active-backup", "needs nothing from the switch"),
        ("balance-alb", "needs no switch support"),
        ("balance-tlb", "needs no switch support"),
        ("balance-rr", "static link aggregation"),
    ],
)
def test_each_mode_says_what_it_needs_from_the_switch(mode: str, words: str) -> None:
    assert any(words in n for n in _plan("ifupdown", mode=mode).notes)


def test_every_plan_warns_to_apply_it_from_the_console() -> None:
    for fmt in netplan.FORMATS:
        p = _plan(fmt)
        assert any(p.command in n and "console" in n and "cut off" in n for n in p.notes)


@pytest.mark.parametrize(
    ("bridge", "uplinks", "message"),
    [
        ("", ("eno1",), "1 to 15 characters"),
        ("br-with-a-long-name", ("eno1",), "1 to 15 characters"),
        ("br0", ("en/o1",), "not a valid interface name"),
        ("br0", ("en o1",), "not a valid interface name"),
        ("br0", ("eno1:0",), "not a valid interface name"),
        ("..", ("eno1",), "not a valid interface name"),
        ("br0", ("eno1\n#x",), "not a valid interface name"),
        ("br0", ('en"o1',), "letters, digits"),
        ("br0", ("eno1", "eno1"), "more than once"),
        ("eno1", ("eno1",), "both as an uplink"),
        ("br0", ("bond0", "eno1"), "both as an uplink"),
    ],
)
def test_bad_names_are_refused_before_anything_is_rendered(bridge: str, uplinks: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        plan_bridge(
            bridge, uplinks, bond_mode="active-backup", bond_name="bond0", address=None, gateway=None, format="ifupdown"
        )


def test_uplink_list_parsing() -> None:
    assert netplan.parse_uplinks("eno1, eno2") == ("eno1", "eno2")
    for bad in (",", "", "eno1,,eno2", "eno1,eno1"):
        with pytest.raises(UsageError):
            netplan.parse_uplinks(bad)


@pytest.mark.parametrize(
    ("address", "gateway", "message"),
    [
        ("192.0.2.10", None, "no prefix length"),
        ("192.0.2.300/24", None, "not ADDR/PREFIX"),
        ("192.0.2.10/33", None, "not ADDR/PREFIX"),
        ("192.0.2.10/24", "192.0.2", "not an IP address"),
        (None, "192.0.2.1", "needs --address"),
        ("192.0.2.10/24", "2001:db8::1", "not the same IP version"),
    ],
)
def test_bad_addresses_are_usage_errors(address: str | None, gateway: str | None, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        netplan.parse_address(address, gateway)


def test_ipv6_static_address_in_each_format() -> None:
    def v6(fmt: str) -> NetPlan:
        return _plan(fmt, address="2001:db8::2/64", gateway="2001:db8::1")

    assert "iface xenbr0 inet6 static" in _settings(v6("ifupdown").files[0].content)
    assert "Gateway=2001:db8::1" in _settings(_all_text(v6("networkd")))
    assert 'via: "2001:db8::1"' in _settings(v6("netplan").files[0].content)


# -- the host's format ------------------------------------------------------------------------------------------------


def test_default_format_follows_the_files_under_root(tmp_path: Path) -> None:
    assert netplan.default_format(tmp_path)[0] == "ifupdown"
    (tmp_path / "etc/netplan").mkdir(parents=True)
    (tmp_path / "etc/netplan/50-cloud-init.yaml").write_text("network: {version: 2}\n")
    assert netplan.default_format(tmp_path)[0] == "netplan"
    (tmp_path / "etc/systemd/network").mkdir(parents=True)
    # a .link file, or a unit masked through /dev/null, configures no interface
    (tmp_path / "etc/systemd/network/99-default.link").write_text("[Link]\n")
    (tmp_path / "etc/systemd/network/80-masked.network").symlink_to("/dev/null")
    assert netplan.default_format(tmp_path)[0] == "netplan"
    (tmp_path / "etc/systemd/network/20-wired.network").write_text("[Match]\nName=en*\n")
    fmt, why = netplan.default_format(tmp_path)
    assert fmt == "networkd"
    assert "20-wired.network" in why


def test_ifupdown_notes_name_the_stanza_that_already_configures_a_nic(tmp_path: Path) -> None:
    (tmp_path / "etc/network").mkdir(parents=True)
    (tmp_path / "etc/network/interfaces").write_text(
        "auto lo\niface lo inet loopback\n\nallow-hotplug eno1\niface eno1 inet dhcp\n"
    )
    p = plan_bridge(
        "xenbr0",
        ("eno1", "eno2"),
        bond_mode="active-backup",
        bond_name="bond0",
        address=None,
        gateway=None,
        format="ifupdown",
        root=tmp_path,
    )
    assert any("line 5 configures eno1" in n for n in p.notes)
    assert any("source /etc/network/interfaces.d/*" in n for n in p.notes)  # it reads no interfaces.d


# -- writing ----------------------------------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_write_creates_the_files_and_keeps_what_it_replaces(tmp_path: Path) -> None:
    p = _plan("networkd")
    old = tmp_path / "etc/systemd/network/10-dom0-bond0.netdev"
    old.parent.mkdir(parents=True)
    old.write_text("[NetDev]\nName=bond0\nKind=bond\n[Bond]\nARPIntervalSec=2s\n")
    done = write_plan(p, tmp_path, now=0)
    assert len(done.written) == len(p.files)
    for f in p.files:
        assert netplan.target_of(tmp_path, f).read_text() == f.content
    ((original, backup),) = done.backups
    assert original == old
    assert backup.name.startswith("10-dom0-bond0.netdev.dom0-bak-")
    assert re.fullmatch(r".*\.dom0-bak-\d{14}", backup.name)
    assert "ARPIntervalSec=2s" in backup.read_text()
    # no temporary file left behind
    assert not [n for n in os.listdir(old.parent) if n.endswith(".dom0-tmp")]


def test_a_second_write_changes_nothing_and_a_changed_file_never_overwrites_an_older_backup(tmp_path: Path) -> None:
    p = _plan("ifupdown")
    target = tmp_path / "etc/network/interfaces.d/xenbr0"
    target.parent.mkdir(parents=True)
    target.write_text("first\n")
    first = write_plan(p, tmp_path, now=0)
    again = write_plan(p, tmp_path, now=0)
    assert again.written == ()
    assert again.unchanged == (target,)
    target.write_text("second\n")
    second = write_plan(p, tmp_path, now=0)  # the same second: a new backup name, the old one kept
    b1, b2 = first.backups[0][1], second.backups[0][1]
    assert b1 != b2
    assert (b1.read_text(), b2.read_text()) == ("first\n", "second\n")
    # in interfaces.d the backups are dot-files: Debian's `source /etc/network/interfaces.d/*` skips them
    assert b1.name.startswith(".xenbr0.dom0-bak-")


def test_a_failed_write_leaves_the_tree_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _plan("networkd")
    net = tmp_path / "etc/systemd/network"
    net.mkdir(parents=True)
    (net / "10-dom0-bond0.netdev").write_text("old bond\n")
    (net / "10-dom0-xenbr0.network").write_text("old bridge\n")
    before = _tree(tmp_path)
    real_replace = os.replace
    calls = []

    def failing_replace(src: str | Path, dst: str | Path) -> None:
        calls.append(dst)
        # the last file, once: everything before it is in place, and the rollback's own renames work
        if str(dst).endswith("10-dom0-xenbr0.network") and calls.count(dst) == 1:
            raise OSError(28, "No space left on device", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr("dom0.hostnet.plan.os.replace", failing_replace)
    with pytest.raises(Dom0Error, match="No space left on device; nothing was changed"):
        write_plan(p, tmp_path)
    monkeypatch.undo()
    assert len(calls) >= len(p.files)
    assert _tree(tmp_path) == before


def test_a_failed_write_removes_the_directories_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("dom0.hostnet.plan.os.fsync", no_space)
    with pytest.raises(Dom0Error):
        write_plan(_plan("netplan"), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_to_replace_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "etc/netplan").mkdir(parents=True)
    (tmp_path / "elsewhere.yaml").write_text("shared\n")
    (tmp_path / "etc/netplan/60-xenbr0.yaml").symlink_to(tmp_path / "elsewhere.yaml")
    with pytest.raises(Dom0Error, match="is a symlink"):
        write_plan(_plan("netplan"), tmp_path)
    assert (tmp_path / "elsewhere.yaml").read_text() == "shared\n"
