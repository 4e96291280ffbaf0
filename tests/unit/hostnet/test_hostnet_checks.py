"""Each bond and bridge check: the finding an administrator sees, from the files and from the running state."""

from __future__ import annotations

from pathlib import Path

from dom0.hostnet.checks import check
from dom0.hostnet.config import read_config
from dom0.hostnet.model import Finding, HostConfig, LiveBond, LiveBridge, LiveLink, LiveSlave, LiveState


def findings(tmp_path: Path, interfaces: str, live: LiveState | None = None) -> list[Finding]:
    path = tmp_path / "etc/network/interfaces"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(interfaces)
    return list(check(read_config(str(tmp_path)), live))


def about(found: list[Finding], subject: str, words: str) -> Finding:
    hits = [f for f in found if f.subject == subject and words in f.what]
    assert len(hits) == 1, found
    return hits[0]


BOND = "iface bond0 inet manual\n  bond-slaves eth0 eth1\n  bond-mode {mode}\n{extra}"
SEED = BOND.format(mode="active-backup", extra="  bond-arp-interval 2000\n  bond-arp-ip-target 10.0.0.1\n")
BRIDGE = "iface xenbr0 inet static\n  address 10.0.0.2/24\n  bridge_ports bond0\n"


def test_the_seeds_arp_monitor_under_a_bridge_is_a_problem_with_the_miimon_fix(tmp_path: Path) -> None:
    found = findings(tmp_path, SEED + BRIDGE)
    f = about(found, "bond0", "ARP monitor (2000 ms) on a bond that is a port of bridge xenbr0")
    assert f.severity == "problem"
    assert "marks its slaves down every 2000 ms" in f.why
    assert "bond-miimon 100" in f.fix
    assert f.where == "/etc/network/interfaces:1"
    assert found[0] == f  # worst first
    assert about(found, "xenbr0", "nothing known to fail").severity == "ok"


def test_arp_and_miimon_together(tmp_path: Path) -> None:
    extra = "  bond-miimon 100\n  bond-arp-interval 500\n  bond-arp-ip-target 10.0.0.1\n"
    f = about(findings(tmp_path, BOND.format(mode="1", extra=extra)), "bond0", "and MII monitor (100 ms) together")
    assert f.severity == "problem"
    assert "only one of them" in f.why


def test_arp_in_802_3ad(tmp_path: Path) -> None:
    extra = "  bond-arp-interval 500\n  bond-arp-ip-target 10.0.0.1\n"
    f = about(findings(tmp_path, BOND.format(mode="802.3ad", extra=extra)), "bond0", "ARP monitor in mode 802.3ad")
    assert f.severity == "problem"


def test_an_arp_target_off_the_bonds_subnet_and_one_with_no_route_through_the_bond(tmp_path: Path) -> None:
    extra = "  address 192.168.1.2/24\n  bond-arp-interval 500\n  bond-arp-ip-target 10.0.0.1\n"
    found = findings(tmp_path, BOND.format(mode="active-backup", extra=extra))
    assert about(found, "bond0", "ARP target 10.0.0.1 is on none of bond0's subnets").severity == "warning"
    live = LiveState(
        bonds=(LiveBond("bond9", "active-backup", 0, 500, ("10.9.0.1",), (), None, "/proc/net/bonding/bond9"),),
        links=(LiveLink("bond9", "bond", 1500, "up", None, ("10.8.0.2/24",)),),
        routes=(("10.9.0.1", "eth7"),),
    )
    f = about(list(check(HostConfig("/"), live)), "bond9", "reached through eth7, not through bond9")
    assert f.severity == "problem"


def test_a_bond_with_no_monitor(tmp_path: Path) -> None:
    assert about(findings(tmp_path, BOND.format(mode="1", extra="")), "bond0", "no link monitor").severity == "warning"
    off = BOND.format(mode="1", extra="  bond-miimon 0\n")
    assert about(findings(tmp_path, off), "bond0", "neither the MII monitor").severity == "problem"


def test_two_nics_bridged_without_stp_is_a_loop_and_with_stp_is_fine(tmp_path: Path) -> None:
    bridge = "iface br0 inet dhcp\n  bridge_ports eth0 eth1 vif1.0\n"
    f = about(findings(tmp_path, bridge), "br0", "2 NICs bridged directly without STP: eth0, eth1")
    assert f.severity == "problem"
    assert "--uplink eth0,eth1" in f.fix
    assert "bridge_stp on" in f.fix
    live = LiveState(
        bridges=(LiveBridge("br1", ("veth0", "veth1"), False),),
        links=(LiveLink("veth0", "virtual", 1500, "up", "br1"), LiveLink("veth1", "nic", 1500, "up", "br1")),
    )
    running = about(list(check(HostConfig("/"), live)), "br1", "2 NICs bridged directly without STP")
    assert "ip link set br1 type bridge stp_state 1" in running.fix
    found = findings(tmp_path, bridge + "  bridge_stp on\n")
    assert [f.what for f in found] == ["nothing known to fail"]


def test_a_guest_bridge_without_uplink_warns_but_libvirts_nat_bridge_does_not(tmp_path: Path) -> None:
    found = findings(tmp_path, "iface xenbr1 inet manual\n  bridge_ports none\n")
    assert about(found, "xenbr1", "no uplink NIC (no ports)").severity == "warning"
    live = LiveState(
        bridges=(LiveBridge("virbr0", ("vnet0",), False), LiveBridge("br5", ("vnet1", "tap2"), False)),
        links=(LiveLink("vnet0", "guest", 1500, "up", "virbr0"), LiveLink("vnet1", "guest", 1500, "up", "br5")),
    )
    found = list(check(HostConfig("/"), live))
    assert about(found, "virbr0", "libvirt's NAT network").severity == "ok"
    assert about(found, "br5", "no uplink NIC (only guests' ports: vnet1, tap2)").severity == "warning"


def test_mismatched_mtus_between_a_bridge_its_bond_and_the_slaves(tmp_path: Path) -> None:
    text = (
        BOND.format(mode="1", extra="  bond-miimon 100\n  mtu 9000\n")
        + "iface eth0 inet manual\n  mtu 1500\n"
        + "iface br0 inet manual\n  bridge_ports bond0\n  mtu 1500\n"
    )
    found = findings(tmp_path, text)
    assert about(found, "bond0", "MTU 9000 on the bond, but eth0 1500").severity == "problem"
    assert about(found, "br0", "MTU 1500 on the bridge, but bond0 9000").severity == "warning"


def test_config_says_miimon_but_the_kernel_runs_arp_a_reload_is_pending(tmp_path: Path) -> None:
    text = BOND.format(mode="active-backup", extra="  bond-miimon 100\n") + BRIDGE
    slaves = (LiveSlave("eth0", "up", 0), LiveSlave("eth1", "down", 3))
    live = LiveState(
        bonds=(LiveBond("bond0", "active-backup", 0, 2000, ("10.0.0.1",), slaves, "eth0", "/proc/net/bonding/bond0"),),
        bridges=(LiveBridge("xenbr0", ("bond0",), False),),
        links=(LiveLink("bond0", "bond", 1500, "up", "xenbr0"), LiveLink("xenbr0", "bridge", 1500, "up", None)),
    )
    found = findings(tmp_path, text, live)
    drift = about(found, "bond0", "the configuration says miimon 100 ms, running: ARP 2000 ms")
    assert drift.severity == "warning"
    assert "ifdown bond0 && ifup bond0" in drift.fix
    # what runs now flaps, and is said once, at the running bond
    arp = about(found, "bond0", "ARP monitor (2000 ms) on a bond that is a port of bridge xenbr0")
    assert arp.where == "/proc/net/bonding/bond0"
    assert about(found, "bond0", "slave eth1 is down (3 link failures so far)").severity == "warning"


def test_the_seed_found_in_the_file_and_running_is_reported_once_at_the_files_line(tmp_path: Path) -> None:
    live = LiveState(
        bonds=(LiveBond("bond0", "active-backup", 0, 2000, ("10.0.0.1",), (), None, "/proc/net/bonding/bond0"),),
        bridges=(LiveBridge("xenbr0", ("bond0",), False),),
        links=(LiveLink("bond0", "bond", 1500, "up", "xenbr0"),),
    )
    f = about(findings(tmp_path, SEED + BRIDGE, live), "bond0", "on a bond that is a port of bridge")
    assert f.where == "/etc/network/interfaces:1"
