"""The running state of this network namespace: bonds from /proc/net/bonding, bridges, ports, MTUs and link states
from /sys/class/net, addresses and the route to each ARP target from `ip -j`.

Both trees show the namespace dom0 runs in (`ip netns exec NS dom0 ...` remounts /sys for NS), so nothing here
needs systemd, udev or a particular distribution. The base paths are parameters so that a copy of them can be read.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from dom0 import run
from dom0.errors import Dom0Error
from dom0.filedata import read_regular
from dom0.hostnet.model import BOND_MODES, LinkKind, LiveBond, LiveBridge, LiveLink, LiveSlave, LiveState

PROC_BONDING = Path("/proc/net/bonding")
SYS_NET = Path("/sys/class/net")
# /proc/net/bonding/X lists a few lines per slave; /sys attributes are one line.
LIVE_LIMIT = 256 << 10
# Interfaces read: a host with thousands of guests' ports is still far below this.
MAX_LINKS = 16384
IP_TIMEOUT = 5.0

# What the bonding driver prints for each mode (bond_mode_name() in the kernel), and the mode's name.
_MODE_WORDS = {
    "load balancing (round-robin)": "balance-rr",
    "fault-tolerance (active-backup)": "active-backup",
    "load balancing (xor)": "balance-xor",
    "fault-tolerance (broadcast)": "broadcast",
    "ieee 802.3ad dynamic link aggregation": "802.3ad",
    "transmit load balancing": "balance-tlb",
    "adaptive load balancing": "balance-alb",
}
# Xen's netback ports, libvirt's tap devices, plain TAP/TUN: the guests' side of a bridge.
GUEST_PORT = re.compile(r"^(vif\d|vnet\d|tap|tun|macvtap|fwpr|fwln)")


def bond_mode_from_words(text: str) -> str | None:
    words = text.strip().lower()
    for said, mode in _MODE_WORDS.items():
        if words.startswith(said):
            return mode
    return words if words in BOND_MODES else None


def parse_bonding(name: str, text: str, where: str) -> LiveBond:
    """One /proc/net/bonding/NAME file."""
    head: dict[str, str] = {}
    slaves: list[LiveSlave] = []
    current: dict[str, str] | None = None

    def close() -> None:
        if current is not None:
            failures = current.get("link failure count", "")
            slaves.append(
                LiveSlave(
                    current["slave interface"],
                    current.get("mii status", "unknown"),
                    int(failures) if failures.isdigit() else None,
                )
            )

    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "slave interface":
            close()
            current = {key: value}
        elif current is not None:
            current.setdefault(key, value)
        else:
            head.setdefault(key, value)
    close()
    targets = head.get("arp ip target/s (n.n.n.n form)", "")
    active = head.get("currently active slave", "")
    return LiveBond(
        name=name,
        mode=bond_mode_from_words(head.get("bonding mode", "")),
        miimon_ms=_int(head.get("mii polling interval (ms)")),
        arp_interval_ms=_int(head.get("arp polling interval (ms)")),
        arp_targets=tuple(t for t in re.split(r"[\s,]+", targets) if t),
        slaves=tuple(slaves),
        active_slave=active if active and active.lower() != "none" else None,
        where=where,
    )


def _int(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


def _attr(path: Path) -> str | None:
    try:
        return read_regular(path, LIVE_LIMIT).decode(errors="replace").strip()
    except Dom0Error:
        return None


def _bonds(base: Path, notes: list[str]) -> list[LiveBond]:
    try:
        names = sorted(os.listdir(base))[:MAX_LINKS]
    except FileNotFoundError:
        return []  # no bonding driver loaded: no bonds
    except OSError as exc:
        notes.append(f"{base}: {exc.strerror}: bonds not read")
        return []
    out = []
    for name in names:
        try:
            text = read_regular(base / name, LIVE_LIMIT).decode(errors="replace")
        except Dom0Error as exc:
            notes.append(exc.message)
            continue
        out.append(parse_bonding(name, text, str(base / name)))
    return out


def _kind(path: Path, name: str) -> LinkKind:
    if (path / "bridge").is_dir():
        return "bridge"
    if (path / "bonding").is_dir():
        return "bond"
    if _attr(path / "type") == "772":  # ARPHRD_LOOPBACK
        return "virtual"
    if GUEST_PORT.match(name) or (path / "tun_flags").exists():
        return "guest"
    return "nic" if (path / "device").exists() else "virtual"


def _links(base: Path, notes: list[str]) -> tuple[list[LiveLink], list[LiveBridge]]:
    try:
        names = sorted(os.listdir(base))
    except OSError as exc:
        notes.append(f"{base}: {exc.strerror}: links and bridges not read")
        return [], []
    if len(names) > MAX_LINKS:
        notes.append(f"{base}: {len(names)} interfaces; only the first {MAX_LINKS} are read")
    links, bridges = [], []
    for name in names[:MAX_LINKS]:
        path = base / name
        kind = _kind(path, name)
        mtu = _attr(path / "mtu")
        try:
            master: str | None = os.path.basename(os.readlink(path / "master"))
        except OSError:
            master = None
        links.append(
            LiveLink(
                name=name,
                kind=kind,
                mtu=int(mtu) if mtu and mtu.isdigit() else None,
                operstate=_attr(path / "operstate") or "unknown",
                master=master,
            )
        )
        if kind == "bridge":
            try:
                ports = tuple(sorted(os.listdir(path / "brif"))[:MAX_LINKS])
            except OSError:
                ports = ()
            stp = _attr(path / "bridge" / "stp_state")
            bridges.append(LiveBridge(name, ports, None if stp is None else stp != "0"))
    return links, bridges


def _ip_json(args: list[str]) -> object:
    return json.loads(run.output(["ip", "-j", *args], timeout=IP_TIMEOUT) or "[]")


def _addresses(notes: list[str]) -> dict[str, tuple[str, ...]]:
    try:
        data = _ip_json(["addr", "show"])
    except (Dom0Error, ValueError) as exc:
        notes.append(f"ip -j addr: {exc}: addresses not read")
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for entry in data if isinstance(data, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("ifname"), str):
            infos = entry.get("addr_info") or []
            out[entry["ifname"]] = tuple(
                f"{a.get('local')}/{a.get('prefixlen')}" for a in infos if isinstance(a, dict) and a.get("local")
            )
    return out


def _route_dev(target: str) -> str | None:
    """The interface the kernel would send to `target` through (a lookup only: nothing is sent)."""
    try:
        data = _ip_json(["route", "get", target])
    except (Dom0Error, ValueError):
        return None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        dev = data[0].get("dev")
        return dev if isinstance(dev, str) else None
    return None


def read_live(proc_bonding: Path = PROC_BONDING, sys_net: Path = SYS_NET, *, ip: bool = True) -> LiveState:
    """This namespace's bonds, bridges and links; with `ip`, addresses and the routes to ARP targets too."""
    notes: list[str] = []
    bonds = _bonds(proc_bonding, notes)
    links, bridges = _links(sys_net, notes)
    routes: list[tuple[str, str | None]] = []
    if ip and run.available("ip"):
        addresses = _addresses(notes)
        links = [LiveLink(x.name, x.kind, x.mtu, x.operstate, x.master, addresses.get(x.name, ())) for x in links]
        targets = dict.fromkeys(t for b in bonds if b.arp_interval_ms for t in b.arp_targets)
        routes = [(t, _route_dev(t)) for t in list(targets)[:64]]
    elif ip:
        notes.append("ip (iproute2) is not installed: addresses and routes not read")
    return LiveState(tuple(bonds), tuple(bridges), tuple(links), tuple(routes), tuple(notes))
