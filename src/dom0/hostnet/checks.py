"""The bond and bridge combinations known to fail, judged on the configuration files and on the running state.

Each finding says what is wrong, why it fails (in the bonding documentation's terms, as the administrator meets
it: a bridge that flaps, a failure never noticed), and the fix in the file's own format. A fact found both in a
file and in the running kernel is reported once, at the file's line (that is where the fix goes).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from dom0.hostnet.live import GUEST_PORT
from dom0.hostnet.model import (
    DEFAULT_BOND_MODE,
    SEVERITY_ORDER,
    Finding,
    HostConfig,
    LiveBond,
    LiveState,
)

# Modes where the bonding driver refuses the ARP monitor (it needs the slaves' own transmit choice).
NO_ARP_MODES = ("802.3ad", "balance-tlb", "balance-alb")
RELOAD = {
    "ifupdown": "ifdown BOND && ifup BOND (or ifreload -a with ifupdown2)",
    "networkd": "networkctl reload, then networkctl reconfigure BOND",
    "netplan": "netplan apply",
    "live": "reload the configuration",
}


@dataclass(frozen=True)
class _BondView:
    """A bond as the checks see it, from a file or from the kernel."""

    name: str
    mode: str
    miimon: int | None  # None: not set in the file
    arp: int
    targets: tuple[str, ...]
    addresses: tuple[str, ...]
    bridge: str | None  # the bridge it is a port of
    where: str
    fmt: str  # ifupdown | networkd | netplan | live


def _format(where: str) -> str:
    if where.startswith("/etc/systemd/"):
        return "networkd"
    if where.startswith("/etc/netplan/"):
        return "netplan"
    if where.startswith("/proc/"):
        return "live"
    return "ifupdown"


def _miimon_fix(fmt: str, name: str) -> str:
    return {
        "ifupdown": f"in {name}'s stanza: `bond-miimon 100`, and remove bond-arp-interval and bond-arp-ip-target",
        "networkd": "in [Bond]: MIIMonitorSec=100ms, and remove ARPIntervalSec= and ARPIPTargets=",
        "netplan": "under parameters: `mii-monitor-interval: 100`, and remove arp-interval and arp-ip-targets",
    }.get(fmt, f"configure {name} with miimon 100 and no arp_interval (`dom0 net plan` writes one)")


def _bond_checks(b: _BondView) -> list[tuple[str, Finding]]:
    out: list[tuple[str, Finding]] = []
    miimon = b.miimon or 0
    fix = _miimon_fix(b.fmt, b.name)
    if b.arp and b.bridge:
        out.append(
            (
                "arp-under-bridge",
                Finding(
                    "problem",
                    b.name,
                    f"ARP monitor ({b.arp} ms) on a bond that is a port of bridge {b.bridge}",
                    f"{b.name}'s own address sits on {b.bridge}, so the replies to its ARP probes arrive on the "
                    f"bridge, not on the bond: the bond sees no reply and marks its slaves down every {b.arp} ms; "
                    "the bridge flaps (worst when a cable is moved)",
                    fix,
                    b.where,
                ),
            )
        )
    if b.arp and miimon:
        out.append(
            (
                "arp-and-miimon",
                Finding(
                    "problem",
                    b.name,
                    f"ARP monitor ({b.arp} ms) and MII monitor ({miimon} ms) together",
                    "the bonding driver runs only one of them: setting one turns the other off, so which one runs "
                    "depends on the order the options were applied",
                    fix,
                    b.where,
                ),
            )
        )
    if b.arp and b.mode in NO_ARP_MODES:
        out.append(
            (
                "arp-mode",
                Finding(
                    "problem",
                    b.name,
                    f"ARP monitor in mode {b.mode}",
                    f"the bonding driver does not support the ARP monitor in {b.mode}: link failures are not "
                    "detected the way this configuration expects",
                    fix,
                    b.where,
                ),
            )
        )
    if b.arp and not b.targets:
        out.append(
            (
                "arp-targets",
                Finding(
                    "problem",
                    b.name,
                    f"ARP monitor ({b.arp} ms) without an ARP target",
                    "with nothing to probe, the ARP monitor cannot tell a working slave from a dead one",
                    fix,
                    b.where,
                ),
            )
        )
    elif b.arp and not b.bridge and b.addresses:
        unreachable = [t for t in b.targets if not _on_subnet(t, b.addresses)]
        if unreachable:
            out.append(
                (
                    "arp-targets",
                    Finding(
                        "warning",
                        b.name,
                        f"ARP target {', '.join(unreachable)} is on none of {b.name}'s subnets",
                        "the bond probes a target only when the route to it leaves through the bond itself; "
                        "otherwise no probe is sent, no reply comes, and the slaves are marked down",
                        f"use a target on {b.name}'s own subnet (its gateway), or the MII monitor: {fix}",
                        b.where,
                    ),
                )
            )
    if not b.arp and b.miimon == 0:
        out.append(
            (
                "no-monitor",
                Finding(
                    "problem",
                    b.name,
                    "neither the MII monitor nor the ARP monitor is on",
                    "a pulled cable or a dead switch port is never detected: the bond keeps sending on the dead slave",
                    _miimon_fix(b.fmt, b.name).split(", and remove")[0],
                    b.where,
                ),
            )
        )
    elif not b.arp and b.miimon is None:
        out.append(
            (
                "no-monitor",
                Finding(
                    "warning",
                    b.name,
                    "no link monitor configured (neither miimon nor an ARP interval)",
                    "current kernels then default to miimon 100, but older ones and some tools leave both off, and "
                    "then a pulled cable is never detected",
                    "say it: " + _miimon_fix(b.fmt, b.name).split(", and remove")[0],
                    b.where,
                ),
            )
        )
    return out


def _on_subnet(target: str, addresses: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(target)
    except ValueError:
        return True  # a name or something dom0 cannot judge: say nothing
    for a in addresses:
        if "/" not in a:
            return True  # no prefix written here (a separate netmask): cannot judge
        try:
            if ip in ipaddress.ip_interface(a).network:
                return True
        except ValueError:
            continue
    return False


def _is_guest_port(name: str) -> bool:
    return bool(GUEST_PORT.match(name))


def _bridge_checks(
    name: str, ports: tuple[str, ...], stp: bool | None, where: str, nics: list[str], *, fmt: str, bonded: bool
) -> list[tuple[str, Finding]]:
    """`nics`: its ports that are NICs (or veths, VLANs); `bonded`: a bond is among its ports (an uplink too)."""
    out: list[tuple[str, Finding]] = []
    if len(nics) >= 2 and not stp:
        stp_fix = {
            "networkd": "STP=yes in its .netdev's [Bridge]",
            "netplan": "`stp: true` under its parameters",
            "live": f"`ip link set {name} type bridge stp_state 1` now, and STP on in the host's network files",
        }.get(fmt, "`bridge_stp on` in its stanza")
        out.append(
            (
                "nics-no-stp",
                Finding(
                    "problem",
                    name,
                    f"{len(nics)} NICs bridged directly without STP: {', '.join(nics)}",
                    "when they reach the same switch (or each other), frames go round the loop and the broadcast "
                    "storm takes the network down",
                    f"bond them and bridge the bond (`dom0 net plan --bridge {name} --uplink {','.join(nics)}`), "
                    f"or turn STP on: {stp_fix}",
                    where,
                ),
            )
        )
    if not nics and not bonded:
        if name.startswith("virbr"):
            out.append(
                (
                    "no-uplink",
                    Finding(
                        "ok",
                        name,
                        "no uplink NIC: libvirt's NAT network, which routes through the host by design",
                        where=where,
                    ),
                )
            )
        else:
            guests = [p for p in ports if _is_guest_port(p)]
            out.append(
                (
                    "no-uplink",
                    Finding(
                        "warning",
                        name,
                        "no uplink NIC" + (f" (only guests' ports: {', '.join(guests)})" if guests else " (no ports)"),
                        "guests on this bridge reach only each other and the host, not the network outside",
                        "add the NIC (or bond) to its ports, unless the bridge is host-only on purpose",
                        where,
                    ),
                )
            )
    return out


def _mtu_check(kind: str, name: str, mtu: int | None, members: dict[str, int | None], where: str) -> list[Finding]:
    if mtu is None:
        return []
    bad = {m: v for m, v in members.items() if v is not None and v != mtu}
    if not bad:
        return []
    smaller = any(v < mtu for v in bad.values() if v is not None)
    listed = ", ".join(f"{m} {v}" for m, v in bad.items())
    return [
        Finding(
            "problem" if smaller else "warning",
            name,
            f"MTU {mtu} on the {kind}, but {listed}",
            "frames larger than the smallest MTU on the path are dropped: small packets pass and large transfers "
            "stall, which looks like a random network fault",
            f"give {name} and its {'ports' if kind == 'bridge' else 'slaves'} the same MTU",
            where,
        )
    ]


def _config_views(config: HostConfig) -> list[_BondView]:
    bridge_of = {p: br.name for br in config.bridges for p in br.ports}
    return [
        _BondView(
            b.name,
            b.mode or DEFAULT_BOND_MODE,
            b.miimon_ms,
            b.arp_interval_ms or 0,
            b.arp_targets,
            b.addresses,
            bridge_of.get(b.name),
            b.where,
            _format(b.where),
        )
        for b in config.bonds
    ]


def _live_view(b: LiveBond, live: LiveState) -> _BondView:
    link = live.link(b.name)
    master = link.master if link else None
    is_bridge = master is not None and any(br.name == master for br in live.bridges)
    return _BondView(
        b.name,
        b.mode or DEFAULT_BOND_MODE,
        b.miimon_ms,
        b.arp_interval_ms,
        b.arp_targets,
        # where the kernel told the route to each target, that answer replaces the guess from subnets
        () if link is None or all(t in dict(live.routes) for t in b.arp_targets) else link.addresses,
        master if is_bridge else None,
        b.where,
        "live",
    )


def _config_checks(config: HostConfig) -> list[tuple[str, Finding]]:
    out: list[tuple[str, Finding]] = []
    for view in _config_views(config):
        out += _bond_checks(view)
    bonds = {b.name for b in config.bonds}
    mtus: dict[str, int | None] = {x.name: x.mtu for x in config.links}
    mtus |= {b.name: b.mtu for b in config.bonds}
    for br in config.bridges:
        nics = [p for p in br.ports if not _is_guest_port(p) and p not in bonds]
        bonded = any(p in bonds for p in br.ports)
        out += _bridge_checks(br.name, br.ports, br.stp, br.where, nics, fmt=_format(br.where), bonded=bonded)
        out += [("mtu", f) for f in _mtu_check("bridge", br.name, br.mtu, {p: mtus.get(p) for p in br.ports}, br.where)]
    for b in config.bonds:
        out += [("mtu", f) for f in _mtu_check("bond", b.name, b.mtu, {s: mtus.get(s) for s in b.slaves}, b.where)]
    return out


def _live_checks(live: LiveState) -> list[tuple[str, Finding]]:
    out: list[tuple[str, Finding]] = []
    kinds = {x.name: x.kind for x in live.links}
    mtus = {x.name: x.mtu for x in live.links}
    routes = dict(live.routes)
    for b in live.bonds:
        view = _live_view(b, live)
        out += _bond_checks(view)
        if b.arp_interval_ms and not view.bridge:
            for target in b.arp_targets:
                if target in routes and routes[target] != b.name:
                    via = routes[target] or "no route at all"
                    out.append(
                        (
                            "arp-targets",
                            Finding(
                                "problem",
                                b.name,
                                f"ARP target {target} is reached through {via}, not through {b.name}",
                                "the bond sends its ARP probes only through itself: with no path to the target it "
                                "gets no reply and marks its slaves down",
                                f"use a target on {b.name}'s own subnet, or the MII monitor (miimon 100)",
                                b.where,
                            ),
                        )
                    )
        for s in b.slaves:
            if s.mii_status != "up":
                out.append(
                    (
                        f"slave-{s.name}",
                        Finding(
                            "warning",
                            b.name,
                            f"slave {s.name} is {s.mii_status} ({s.link_failures or 0} link failures so far)",
                            "the bond runs on its other slaves: one more failure and the host is cut off",
                            f"check {s.name}'s cable and switch port",
                            b.where,
                        ),
                    )
                )
        slave_mtus = {s.name: mtus.get(s.name) for s in b.slaves}
        out += [("mtu", f) for f in _mtu_check("bond", b.name, mtus.get(b.name), slave_mtus, b.where)]
    for br in live.bridges:
        where = f"/sys/class/net/{br.name}"
        nics = [p for p in br.ports if kinds.get(p) in ("nic", "virtual")]
        bonded = any(kinds.get(p) == "bond" for p in br.ports)
        out += _bridge_checks(br.name, br.ports, br.stp, where, nics, fmt="live", bonded=bonded)
        port_mtus = {p: mtus.get(p) for p in br.ports}
        out += [("mtu", f) for f in _mtu_check("bridge", br.name, mtus.get(br.name), port_mtus, where)]
    return out


def _describe(miimon: int | None, arp: int) -> str:
    if arp and miimon:
        return f"ARP {arp} ms and miimon {miimon} ms"
    if arp:
        return f"ARP {arp} ms"
    return "no monitor" if not miimon else f"miimon {miimon} ms"


def _drift(config: HostConfig, live: LiveState) -> list[tuple[str, Finding]]:
    out: list[tuple[str, Finding]] = []
    running = {b.name: b for b in live.bonds}
    for b in config.bonds:
        now = running.get(b.name)
        if now is None:
            continue
        said: list[str] = []
        mode = b.mode or DEFAULT_BOND_MODE
        if now.mode and mode != now.mode:
            said.append(f"mode {mode}, running: {now.mode}")
        want = (b.miimon_ms if b.miimon_ms is not None else now.miimon_ms, b.arp_interval_ms or 0)
        if want != (now.miimon_ms, now.arp_interval_ms):
            said.append(f"{_describe(*want)}, running: {_describe(now.miimon_ms, now.arp_interval_ms)}")
        if (b.arp_interval_ms or 0) and set(b.arp_targets) != set(now.arp_targets):
            said.append(f"ARP targets {' '.join(b.arp_targets) or 'none'}, running: {' '.join(now.arp_targets)}")
        slaves = {s.name for s in now.slaves}
        if b.slaves and not any("*" in s or "?" in s for s in b.slaves) and set(b.slaves) != slaves:
            said.append(f"slaves {' '.join(b.slaves)}, running: {' '.join(sorted(slaves)) or 'none'}")
        if said:
            fmt = _format(b.where)
            out.append(
                (
                    "drift",
                    Finding(
                        "warning",
                        b.name,
                        "the configuration says " + "; ".join(said),
                        "the running bond is not what the files say: a reload is pending, or the files were changed "
                        "after it came up (the next boot brings the files' version)",
                        f"apply the files when a short outage is fine: {RELOAD[fmt].replace('BOND', b.name)}",
                        b.where,
                    ),
                )
            )
    live_bridges = {br.name: br for br in live.bridges}
    for br in config.bridges:
        now_br = live_bridges.get(br.name)
        if now_br is None or br.stp is None or now_br.stp is None or br.stp == now_br.stp:
            continue
        out.append(
            (
                "drift",
                Finding(
                    "warning",
                    br.name,
                    f"the configuration says STP {'on' if br.stp else 'off'}, running: {'on' if now_br.stp else 'off'}",
                    "the running bridge is not what the files say: a reload is pending",
                    "apply the files when a short outage is fine",
                    br.where,
                ),
            )
        )
    return out


def check(config: HostConfig, live: LiveState | None) -> tuple[Finding, ...]:
    """Every finding on the configuration and (when read) the running state, worst first."""
    found = _config_checks(config)
    if live is not None:
        found += _live_checks(live) + _drift(config, live)
    seen: set[tuple[str, str]] = set()
    out: list[Finding] = []
    for code, finding in found:
        key = (finding.subject, code)
        if code != "mtu" and key in seen:
            continue
        seen.add(key)
        out.append(finding)
    subjects = {f.subject for f in out}
    names = [b.name for b in config.bonds] + [br.name for br in config.bridges]
    if live is not None:
        names += [b.name for b in live.bonds] + [br.name for br in live.bridges]
    for name in dict.fromkeys(names):
        if name not in subjects:
            out.append(Finding("ok", name, "nothing known to fail"))
    return tuple(sorted(out, key=lambda f: SEVERITY_ORDER[f.severity]))
