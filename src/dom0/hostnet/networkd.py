"""systemd-networkd: /etc/systemd/network/*.netdev (bonds and bridges) and *.network (who is enslaved to whom,
addresses, MTUs), read for `dom0 net check`. A file linked to /dev/null is networkd's mask: it does not count."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from dom0.guest.net.common import Ini
from dom0.hostnet.model import Bond, Bridge, Link, Source, bond_mode
from dom0.hostnet.rootfiles import HostFiles

DIRECTORY = "/etc/systemd/network"

_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
_UNIT_MS = {"": 1000.0, "s": 1000.0, "sec": 1000.0, "ms": 1.0, "msec": 1.0, "us": 0.001, "usec": 0.001}
_UNIT_MS |= {"m": 60000.0, "min": 60000.0}


def time_ms(value: str, bare_unit: str = "s") -> int | None:
    """A systemd time span ("100ms", "2s", "1s 500ms") in milliseconds; a bare number is in `bare_unit`."""
    total = 0.0
    text = value.strip().lower()
    if not text or _SPAN.sub("", text).strip():
        return None
    for number, unit in _SPAN.findall(text):
        factor = _UNIT_MS.get(unit or bare_unit)
        if factor is None:
            return None
        total += float(number) * factor
    return round(total)


def _mtu(value: str | None) -> int | None:
    if not value:
        return None
    v = value.strip().upper()
    scale = {"K": 1024, "M": 1 << 20}.get(v[-1:], 1)
    digits = v[:-1] if scale > 1 else v
    return int(digits) * scale if digits.isdigit() else None


@dataclass
class NetworkdConfig:
    sources: list[Source] = field(default_factory=list)
    bonds: list[Bond] = field(default_factory=list)
    bridges: list[Bridge] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)


def _last(ini: Ini, section: str, key: str) -> tuple[int, str] | None:
    found = ini.keys(section, key)
    return found[-1] if found else None


def _all(ini: Ini, section: str, key: str) -> list[str]:
    # An empty assignment resets the list, as systemd's own parser does.
    out: list[str] = []
    for _, value in ini.keys(section, key):
        out = [] if not value else out + value.split()
    return out


def _load(files: HostFiles, out: NetworkdConfig) -> tuple[list[tuple[str, Ini]], list[tuple[str, Ini]]]:
    """The .netdev and .network files in name order (networkd's), masked ones left out."""
    netdevs: list[tuple[str, Ini]] = []
    networks: list[tuple[str, Ini]] = []
    for name in files.listdir(DIRECTORY):
        path = f"{DIRECTORY}/{name}"
        if not name.endswith((".netdev", ".network")):
            continue
        if files.readlink(path) == "/dev/null":
            continue  # masked
        text = files.read(path)
        if text is None:
            continue
        out.sources.append(Source(path, "networkd"))
        (netdevs if name.endswith(".netdev") else networks).append((path, Ini(text)))
    return netdevs, networks


def read(files: HostFiles) -> NetworkdConfig:
    """The bonds and bridges the .netdev files create, their members from the .network files."""
    out = NetworkdConfig()
    netdevs, networks = _load(files, out)
    # .network files: first match by file name order wins, as in networkd.
    matches: list[tuple[str, list[str], Ini]] = []
    for path, ini in networks:
        matches.append((path, _all(ini, "Match", "Name"), ini))

    def network_for(ifname: str) -> tuple[str, Ini] | None:
        for path, patterns, ini in matches:
            if patterns and any(fnmatch.fnmatchcase(ifname, p) for p in patterns):
                return path, ini
        return None

    def members(key: str, master: str) -> tuple[str, ...]:
        found: list[str] = []
        for _, patterns, ini in matches:
            value = _last(ini, "Network", key)
            if value and value[1] == master:
                found += patterns
        return tuple(dict.fromkeys(found))

    def own(ifname: str) -> tuple[tuple[str, ...], int | None]:
        net = network_for(ifname)
        if net is None:
            return (), None
        ini = net[1]
        addresses = tuple(_all(ini, "Network", "Address") + _all(ini, "Address", "Address"))
        mtu = _last(ini, "Link", "MTUBytes")
        return addresses, _mtu(mtu[1] if mtu else None)

    devices: set[str] = set()
    for path, ini in netdevs:
        name_kv = _last(ini, "NetDev", "Name")
        kind_kv = _last(ini, "NetDev", "Kind")
        if name_kv is None or kind_kv is None:
            continue
        ifname, kind = name_kv[1], kind_kv[1].lower()
        where = f"{path}:{name_kv[0] + 1}"
        addresses, net_mtu = own(ifname)
        dev_mtu = _last(ini, "NetDev", "MTUBytes")
        mtu = net_mtu if net_mtu is not None else _mtu(dev_mtu[1] if dev_mtu else None)
        if kind == "bond":
            devices.add(ifname)
            mode = _last(ini, "Bond", "Mode")
            mii = _last(ini, "Bond", "MIIMonitorSec")
            arp = _last(ini, "Bond", "ARPIntervalSec")
            out.bonds.append(
                Bond(
                    name=ifname,
                    slaves=members("Bond", ifname),
                    mode=bond_mode(mode[1]) if mode else None,
                    miimon_ms=time_ms(mii[1]) if mii else None,
                    arp_interval_ms=time_ms(arp[1]) if arp else None,
                    arp_targets=tuple(_all(ini, "Bond", "ARPIPTargets")),
                    mtu=mtu,
                    addresses=addresses,
                    where=where,
                )
            )
        elif kind == "bridge":
            devices.add(ifname)
            stp = _last(ini, "Bridge", "STP")
            out.bridges.append(
                Bridge(
                    name=ifname,
                    ports=members("Bridge", ifname),
                    stp=None if stp is None else stp[1].lower() in ("yes", "true", "on", "1"),
                    mtu=mtu,
                    addresses=addresses,
                    where=where,
                )
            )
    for path, patterns, ini in matches:
        mtu_kv = _last(ini, "Link", "MTUBytes")
        for pattern in patterns:
            if pattern in devices:
                continue
            addresses = tuple(_all(ini, "Network", "Address") + _all(ini, "Address", "Address"))
            match_line = ini.keys("Match", "Name")[0][0] + 1
            out.links.append(Link(pattern, _mtu(mtu_kv[1] if mtu_kv else None), addresses, f"{path}:{match_line}"))
    return out
