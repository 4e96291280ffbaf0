"""What `dom0 net` knows about the host's bonds, bridges and links: as configured (each fact with the file and
line it came from) and as the kernel runs them now, and the findings checked from both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# The kernel's own names (what `ip -d link` and networkd print); ifupdown's numbers 0-6 map onto them.
BOND_MODES = ("balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb")
# The kernel's default when nothing names a mode.
DEFAULT_BOND_MODE = "balance-rr"


def bond_mode(value: str) -> str | None:
    """The kernel name of a bonding mode written as a name or ifupdown's number; None for anything else."""
    v = value.strip().lower()
    if v.isdigit() and int(v) < len(BOND_MODES):
        return BOND_MODES[int(v)]
    return v if v in BOND_MODES else None


@dataclass(frozen=True, slots=True)
class Source:
    """A configuration file that was read: its path as seen on the host (under --root) and its format."""

    path: str
    format: Literal["ifupdown", "networkd", "netplan"]


@dataclass(frozen=True, slots=True)
class Bond:
    """A bond as configured. Intervals in milliseconds; None when the file does not set them."""

    name: str
    slaves: tuple[str, ...]
    mode: str | None
    miimon_ms: int | None
    arp_interval_ms: int | None
    arp_targets: tuple[str, ...]
    mtu: int | None
    addresses: tuple[str, ...]
    where: str  # "/etc/network/interfaces:12"


@dataclass(frozen=True, slots=True)
class Bridge:
    """A bridge as configured; `stp` None when the file does not say (bridges start with STP off)."""

    name: str
    ports: tuple[str, ...]
    stp: bool | None
    mtu: int | None
    addresses: tuple[str, ...]
    where: str


@dataclass(frozen=True, slots=True)
class Link:
    """Any other configured interface (a NIC, a VLAN) with what matters here: its MTU and addresses."""

    name: str
    mtu: int | None
    addresses: tuple[str, ...]
    where: str


@dataclass(frozen=True, slots=True)
class HostConfig:
    """Everything read from the configuration files, and notes on what could not be read (one line each)."""

    root: str
    sources: tuple[Source, ...] = ()
    bonds: tuple[Bond, ...] = ()
    bridges: tuple[Bridge, ...] = ()
    links: tuple[Link, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LiveSlave:
    """One bond slave as /proc/net/bonding shows it."""

    name: str
    mii_status: str  # "up", "down", "going back", ...
    link_failures: int | None


@dataclass(frozen=True, slots=True)
class LiveBond:
    """A bond the kernel runs now; intervals in milliseconds (0: that monitor is off)."""

    name: str
    mode: str | None
    miimon_ms: int
    arp_interval_ms: int
    arp_targets: tuple[str, ...]
    slaves: tuple[LiveSlave, ...]
    active_slave: str | None
    where: str  # "/proc/net/bonding/bond0"


LinkKind = Literal["bridge", "bond", "guest", "nic", "virtual"]


@dataclass(frozen=True, slots=True)
class LiveLink:
    """An interface of this network namespace from /sys/class/net."""

    name: str
    kind: LinkKind  # guest: a guest's port (vif, vnet, tap); nic: a device behind it; virtual: veth, vlan, lo
    mtu: int | None
    operstate: str
    master: str | None  # the bridge or bond it is enslaved to
    addresses: tuple[str, ...] = ()  # "10.0.0.2/24"


@dataclass(frozen=True, slots=True)
class LiveBridge:
    """A bridge the kernel runs now."""

    name: str
    ports: tuple[str, ...]
    stp: bool | None


@dataclass(frozen=True, slots=True)
class LiveState:
    """The running state; `routes` maps an ARP target to the interface the kernel would reach it through."""

    bonds: tuple[LiveBond, ...] = ()
    bridges: tuple[LiveBridge, ...] = ()
    links: tuple[LiveLink, ...] = ()
    routes: tuple[tuple[str, str | None], ...] = ()
    notes: tuple[str, ...] = ()

    def link(self, name: str) -> LiveLink | None:
        return next((x for x in self.links if x.name == name), None)


Severity = Literal["problem", "warning", "ok"]
SEVERITY_ORDER: dict[str, int] = {"problem": 0, "warning": 1, "ok": 2}


@dataclass(frozen=True, slots=True)
class Finding:
    """One verdict on one bond, bridge or link, in an administrator's words: what, why, and the fix."""

    severity: Severity
    subject: str
    what: str
    why: str = ""
    fix: str = ""
    where: str = ""

    def as_json(self) -> dict[str, str]:
        return {
            "severity": self.severity,
            "subject": self.subject,
            "what": self.what,
            "why": self.why,
            "fix": self.fix,
            "where": self.where,
        }
