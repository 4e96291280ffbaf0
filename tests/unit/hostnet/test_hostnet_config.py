"""Reading a host's network configuration under --root: ifupdown, systemd-networkd, netplan, and hostile files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dom0.errors import Dom0Error
from dom0.hostnet.config import read_config
from dom0.hostnet.netplan import YamlError, parse

SEED = """\
auto lo
iface lo inet loopback

auto bond0
iface bond0 inet manual
    bond-slaves eth0 eth1
    bond-mode active-backup
    bond-arp-interval 2000
    bond-arp-ip-target 10.0.0.1

auto xenbr0
iface xenbr0 inet static
    address 10.0.0.2
    netmask 255.255.255.0
    bridge_ports bond0
"""


def write(root: Path, path: str, text: str) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def test_the_seeds_interfaces_file_gives_a_bond_with_the_arp_monitor_under_a_bridge(tmp_path: Path) -> None:
    write(tmp_path, "/etc/network/interfaces", SEED)
    config = read_config(str(tmp_path))
    (bond,) = config.bonds
    assert (bond.name, bond.slaves, bond.mode) == ("bond0", ("eth0", "eth1"), "active-backup")
    assert (bond.miimon_ms, bond.arp_interval_ms, bond.arp_targets) == (None, 2000, ("10.0.0.1",))
    assert bond.where == "/etc/network/interfaces:5"
    (bridge,) = config.bridges
    assert (bridge.name, bridge.ports, bridge.stp, bridge.addresses) == ("xenbr0", ("bond0",), None, ("10.0.0.2",))
    assert bridge.where == "/etc/network/interfaces:12"
    assert [s.path for s in config.sources] == ["/etc/network/interfaces"]
    assert config.notes == ()


def test_sourced_files_bond_master_numeric_modes_and_option_spellings(tmp_path: Path) -> None:
    write(tmp_path, "/etc/network/interfaces", "source interfaces.d/*\nsource-directory /etc/net.d\n")
    write(
        tmp_path,
        "/etc/network/interfaces.d/bond",
        "iface bond1 inet manual\n  slaves none\n  bond_mode 4\n  bond_miimon 100\n  mtu 9000\n"
        "iface eth2 inet manual\n  bond-master bond1\n  mtu 1500\n",
    )
    write(tmp_path, "/etc/net.d/br", "iface br1 inet dhcp\n  bridge-ports eth3 \\\n    eth4\n  bridge_stp on\n")
    write(tmp_path, "/etc/net.d/br.dpkg-old", "iface old inet manual\n  bridge_ports eth9\n")
    config = read_config(str(tmp_path))
    (bond,) = config.bonds
    assert (bond.name, bond.slaves, bond.mode, bond.miimon_ms, bond.mtu) == ("bond1", ("eth2",), "802.3ad", 100, 9000)
    (bridge,) = config.bridges
    assert (bridge.ports, bridge.stp, bridge.where) == (("eth3", "eth4"), True, "/etc/net.d/br:1")
    assert [(x.name, x.mtu) for x in config.links] == [("eth2", 1500)]


def test_a_source_directory_loop_is_read_once_with_a_note(tmp_path: Path) -> None:
    write(tmp_path, "/etc/network/interfaces", "source-directory /etc/network/interfaces.d\n")
    write(tmp_path, "/etc/network/interfaces.d/again", "source-directory /etc/network/interfaces.d\n")
    write(tmp_path, "/etc/network/interfaces.d/self", "source /etc/network/interfaces\n")
    config = read_config(str(tmp_path))
    assert len(config.sources) == 3
    assert len(config.notes) == 2
    assert all("read once" in n for n in config.notes)


def test_a_symlink_to_a_file_outside_the_root_is_not_followed_there(tmp_path: Path) -> None:
    outside = write(tmp_path, "/outside/interfaces", SEED)
    root = tmp_path / "host"
    (root / "etc/network").mkdir(parents=True)
    (root / "etc/network/interfaces").symlink_to(outside)
    config = read_config(str(root))
    assert config.bonds == ()
    assert config.sources == ()
    assert config.notes == (
        f"{root}/etc/network/interfaces: a symlink to {outside}, which is not under {root}: not read",
    )


def test_a_symlink_inside_the_root_is_resolved_inside_it(tmp_path: Path) -> None:
    write(tmp_path, "/srv/net/interfaces", SEED)
    (tmp_path / "etc/network").mkdir(parents=True)
    (tmp_path / "etc/network/interfaces").symlink_to("/srv/net/interfaces")
    assert [b.name for b in read_config(str(tmp_path)).bonds] == ["bond0"]


def test_a_100_mb_file_and_a_fifo_are_refused_with_one_line_each(tmp_path: Path) -> None:
    big = write(tmp_path, "/etc/network/interfaces", "")
    os.truncate(big, 100 << 20)
    (tmp_path / "etc/netplan").mkdir(parents=True)
    os.mkfifo(tmp_path / "etc/netplan/01.yaml")
    config = read_config(str(tmp_path))
    assert config.notes == (
        f"{tmp_path}/etc/network/interfaces: 100.0 MiB, more than the 1.0 MiB dom0 reads: not read",
        f"{tmp_path}/etc/netplan/01.yaml: not a regular file (a FIFO, socket or device): not read",
    )


def test_a_root_that_is_not_a_directory_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(Dom0Error, match="not a directory"):
        read_config(str(tmp_path / "missing"))


def test_networkd_netdev_and_network_files(tmp_path: Path) -> None:
    d = "/etc/systemd/network"
    write(
        tmp_path,
        f"{d}/10-bond0.netdev",
        "[NetDev]\nName=bond0\nKind=bond\n\n[Bond]\nMode=active-backup\n"
        "MIIMonitorSec=100ms\nARPIntervalSec=2s\nARPIPTargets=10.0.0.1 10.0.0.9\n",
    )
    write(tmp_path, f"{d}/10-br0.netdev", "[NetDev]\nName=br0\nKind=bridge\n[Bridge]\nSTP=no\n")
    write(tmp_path, f"{d}/20-nics.network", "[Match]\nName=eth*\n\n[Network]\nBond=bond0\n[Link]\nMTUBytes=9000\n")
    write(tmp_path, f"{d}/30-bond.network", "[Match]\nName=bond0\n[Network]\nBridge=br0\n")
    write(tmp_path, f"{d}/40-br.network", "[Match]\nName=br0\n[Network]\nAddress=10.0.0.2/24\n[Link]\nMTUBytes=1500\n")
    (tmp_path / d.lstrip("/") / "99-masked.netdev").symlink_to("/dev/null")
    config = read_config(str(tmp_path))
    (bond,) = config.bonds
    assert (bond.slaves, bond.mode, bond.miimon_ms, bond.arp_interval_ms) == (("eth*",), "active-backup", 100, 2000)
    assert bond.arp_targets == ("10.0.0.1", "10.0.0.9")
    assert bond.where == f"{d}/10-bond0.netdev:2"
    (bridge,) = config.bridges
    assert (bridge.ports, bridge.stp, bridge.mtu, bridge.addresses) == (("bond0",), False, 1500, ("10.0.0.2/24",))
    assert [(x.name, x.mtu) for x in config.links] == [("eth*", 9000)]
    assert config.notes == ()


NETPLAN = """\
# written by the installer
network:
  version: 2
  ethernets:
    eth0: {}
    eth1:
      mtu: 9000
  bonds:
    bond0:
      interfaces: [eth0, eth1]
      parameters:
        mode: 802.3ad   # LACP on the switch
        mii-monitor-interval: 100
        arp-interval: 2s
        arp-ip-targets:
          - 10.0.0.1
  bridges:
    br0:
      interfaces:
      - bond0
      addresses: ["10.0.0.2/24", 2001:db8::2/64]
      routes:
        - to: default
          via: 10.0.0.1
"""


def test_netplan_bonds_and_bridges_merged_in_file_order(tmp_path: Path) -> None:
    write(tmp_path, "/etc/netplan/01-netcfg.yaml", NETPLAN)
    write(
        tmp_path, "/etc/netplan/90-local.yaml", "network:\n  bridges:\n    br0:\n      parameters:\n        stp: no\n"
    )
    config = read_config(str(tmp_path))
    (bond,) = config.bonds
    assert (bond.slaves, bond.mode, bond.miimon_ms, bond.arp_interval_ms) == (("eth0", "eth1"), "802.3ad", 100, 2000)
    assert (bond.arp_targets, bond.where) == (("10.0.0.1",), "/etc/netplan/01-netcfg.yaml:9")
    (bridge,) = config.bridges
    assert (bridge.ports, bridge.stp, bridge.addresses) == (("bond0",), False, ("10.0.0.2/24", "2001:db8::2/64"))
    assert [(x.name, x.mtu) for x in config.links] == [("eth0", None), ("eth1", 9000)]


def test_netplan_bridges_have_stp_unless_told_otherwise(tmp_path: Path) -> None:
    write(tmp_path, "/etc/netplan/01.yaml", "network:\n  bridges:\n    br0:\n      interfaces: [eth0]\n")
    assert read_config(str(tmp_path)).bridges[0].stp is True


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("a: 1\n   b: 2\n", 2, "mapping values are not allowed"),
        ("a: 1\na: 2\n", 2, "twice"),
        ("a:\n\tb: 1\n", 2, "found character '\\t'"),
        ("a: [x, y\n", 2, "expected ',' or ']'"),
    ],
)
def test_what_is_not_yaml_is_refused_with_its_line(text: str, line: int, reason: str) -> None:
    with pytest.raises(YamlError) as info:
        parse(text)
    assert info.value.line == line
    assert reason in info.value.reason


def test_aliases_that_expand_without_end_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    with pytest.raises(YamlError) as info:
        parse("\n".join(lines) + "\n")
    assert "aliases expanding" in info.value.reason


def test_anchors_and_aliases_read_as_netplan_reads_them(tmp_path: Path) -> None:
    text = "network:\n  bonds:\n    bond0:\n      interfaces: &nics [eth0, eth1]\n  bridges:\n"
    text += "    br0:\n      interfaces: [bond0]\n      parameters: {stp: false}\n"
    write(tmp_path, "/etc/netplan/01.yaml", text)
    config = read_config(str(tmp_path))
    assert config.bonds[0].slaves == ("eth0", "eth1")
    assert config.bridges[0].stp is False


def test_an_unreadable_netplan_file_is_one_note_and_not_half_read(tmp_path: Path) -> None:
    write(tmp_path, "/etc/netplan/01.yaml", "network:\n  bonds:\n    bond0:\n      interfaces: *nics\n")
    config = read_config(str(tmp_path))
    assert config.bonds == ()
    assert config.notes == (f"{tmp_path}/etc/netplan/01.yaml: line 4: found undefined alias 'nics': not read",)
