"""The live readers on copies of /proc/net/bonding and /sys/class/net written in tmp_path."""

from __future__ import annotations

from pathlib import Path

from dom0.hostnet.live import parse_bonding, read_live

# /proc/net/bonding/bond0 on Debian 12's kernel, as the seed's bond showed it after a cable moved.
BOND0 = """\
Ethernet Channel Bonding Driver: v6.1.0-18-amd64

Bonding Mode: fault-tolerance (active-backup)
Primary Slave: None
Currently Active Slave: eth1
MII Status: up
MII Polling Interval (ms): 0
Up Delay (ms): 0
Down Delay (ms): 0
Peer Notification Delay (ms): 0
ARP Polling Interval (ms): 2000
ARP Missed Max: 2
ARP IP target/s (n.n.n.n form): 10.0.0.1, 10.0.0.9
NS IPv6 target/s (xx::xx form):

Slave Interface: eth0
MII Status: down
Speed: Unknown
Duplex: Unknown
Link Failure Count: 14
Permanent HW addr: 52:54:00:12:34:56
Slave queue ID: 0

Slave Interface: eth1
MII Status: up
Speed: 1000 Mbps
Duplex: full
Link Failure Count: 0
Permanent HW addr: 52:54:00:12:34:57
Slave queue ID: 0
"""

LACP = """\
Ethernet Channel Bonding Driver: v6.1.0-18-amd64

Bonding Mode: IEEE 802.3ad Dynamic link aggregation
Transmit Hash Policy: layer2 (0)
MII Status: up
MII Polling Interval (ms): 100
ARP Polling Interval (ms): 0

802.3ad info
LACP active: on
Aggregator ID: 1

Slave Interface: eth2
MII Status: up
Link Failure Count: 1
Aggregator ID: 1
"""


def test_proc_net_bonding_gives_mode_monitors_targets_and_each_slave() -> None:
    bond = parse_bonding("bond0", BOND0, "/proc/net/bonding/bond0")
    assert (bond.mode, bond.miimon_ms, bond.arp_interval_ms) == ("active-backup", 0, 2000)
    assert bond.arp_targets == ("10.0.0.1", "10.0.0.9")
    assert bond.active_slave == "eth1"
    assert [(s.name, s.mii_status, s.link_failures) for s in bond.slaves] == [("eth0", "down", 14), ("eth1", "up", 0)]
    lacp = parse_bonding("bond1", LACP, "x")
    assert (lacp.mode, lacp.miimon_ms, lacp.arp_interval_ms, lacp.arp_targets) == ("802.3ad", 100, 0, ())
    assert [(s.name, s.link_failures) for s in lacp.slaves] == [("eth2", 1)]


def link(sys_net: Path, name: str, mtu: int = 1500, *, master: str = "", files: tuple[str, ...] = ()) -> Path:
    path = sys_net / name
    path.mkdir(parents=True)
    (path / "mtu").write_text(f"{mtu}\n")
    (path / "operstate").write_text("up\n")
    (path / "type").write_text("1\n")
    for f in files:
        (path / f).parent.mkdir(parents=True, exist_ok=True)
        (path / f).write_text("0\n")
    if master:
        (path / "master").symlink_to(f"../{master}")
    return path


def test_sys_class_net_gives_bridges_ports_stp_mtu_and_kinds(tmp_path: Path) -> None:
    proc = tmp_path / "proc/net/bonding"
    proc.mkdir(parents=True)
    (proc / "bond0").write_text(BOND0)
    sys_net = tmp_path / "sys/class/net"
    br = link(sys_net, "xenbr0", files=("bridge/stp_state",))
    (br / "brif").mkdir()
    for port in ("bond0", "vif3.0"):
        (br / "brif" / port).mkdir()
    link(sys_net, "bond0", 9000, master="xenbr0", files=("bonding/mode",))
    link(sys_net, "eth0", master="bond0", files=("device/vendor",))
    link(sys_net, "vif3.0", master="xenbr0")
    link(sys_net, "veth1")
    live = read_live(proc, sys_net, ip=False)
    assert [b.name for b in live.bonds] == ["bond0"]
    (bridge,) = live.bridges
    assert (bridge.name, bridge.ports, bridge.stp) == ("xenbr0", ("bond0", "vif3.0"), False)
    kinds = {x.name: (x.kind, x.mtu, x.master) for x in live.links}
    assert kinds == {
        "bond0": ("bond", 9000, "xenbr0"),
        "eth0": ("nic", 1500, "bond0"),
        "veth1": ("virtual", 1500, None),
        "vif3.0": ("guest", 1500, "xenbr0"),
        "xenbr0": ("bridge", 1500, None),
    }
    assert live.notes == ()


def test_no_bonding_driver_means_no_bonds_and_no_note(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    live = read_live(tmp_path / "missing", tmp_path / "net", ip=False)
    assert (live.bonds, live.links, live.notes) == ((), (), ())


def test_this_namespaces_own_loopback_is_read_as_virtual() -> None:
    live = read_live(ip=False)
    assert next(x for x in live.links if x.name == "lo").kind == "virtual"
