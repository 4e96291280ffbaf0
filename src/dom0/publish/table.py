"""The publish table: which public address:port goes to which guest:port, as publish.toml holds it.

The file is the administrator's as much as dom0's: `dom0 publish add/remove` edit it in place, keeping comments and
order, and a hand edit is read the same way. Every entry is validated once, here, into frozen values; a bad file
is refused with the line of the entry at fault.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PATH = Path("/etc/dom0/publish.toml")


class Transport(StrEnum):
    TCP = "tcp"
    UDP = "udp"


@dataclass(frozen=True, slots=True)
class PortRange:
    """One port (first == last) or an inclusive range, 1..65535."""

    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True, slots=True)
class PublishEntry:
    """public:ports/transport -> guest:guest_ports; `to` pins the guest's address instead of asking the hypervisor.

    `guest_ports` has as many ports as `ports` (a range maps onto a range of the same length)."""

    public: IPAddress
    ports: PortRange
    transport: Transport
    guest: str
    guest_ports: PortRange
    to: IPAddress | None = None
    line: int = 0  # the line of its [[publish]] header in the file; 0 when it came from elsewhere

    @property
    def key(self) -> str:
        """How the administrator names it: 203.0.113.10:80/tcp, [2001:db8::1]:443/tcp."""
        host = f"[{self.public}]" if self.public.version == 6 else str(self.public)
        return f"{host}:{self.ports}/{self.transport}"


@dataclass(frozen=True, slots=True)
class PublishTable:
    path: Path
    entries: tuple[PublishEntry, ...] = ()
