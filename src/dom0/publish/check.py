"""`dom0 publish check`: does each entry answer, seen from this host?

Two TCP connects per entry: to the guest's own address and port (is the service up, is the guest reachable from
the host), and to the public address and port (do dom0's rules send it there: the host's own connections go
through the output chain's DNAT). Only the handshake is made; nothing is sent. UDP has no handshake: a datagram
that gets no answer says nothing, so UDP entries are reported as not checked rather than guessed at.
"""

from __future__ import annotations

import errno
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from dom0.publish.addresses import Target
from dom0.publish.table import IPAddress, Transport

ANSWERING = "answering"
REFUSED = "refused"
NO_ANSWER = "no answer"
NOT_CHECKED = "not checked"
# Connects run in parallel, but a table of hundreds of entries should not open hundreds of sockets at once.
MAX_PARALLEL = 32


@dataclass(frozen=True, slots=True)
class Probe:
    """One connect's outcome: ANSWERING, REFUSED, NO_ANSWER or NOT_CHECKED, and why in words."""

    result: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class EntryCheck:
    target: Target
    guest: Probe
    public: Probe

    @property
    def failed(self) -> bool:
        """Whether the entry does not answer, on its guest address or its public one (UDP, not checkable, never)."""
        probes = (self.guest.result, self.public.result)
        return NOT_CHECKED not in probes and probes != (ANSWERING, ANSWERING)


def connect(address: IPAddress, port: int, timeout: float) -> Probe:
    """A TCP handshake with address:port, closed at once."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((str(address), port))
        except TimeoutError:
            return Probe(NO_ANSWER, f"no answer within {timeout:g} s")
        except ConnectionRefusedError:
            return Probe(REFUSED, "connection refused: nothing listens there (or a firewall rejects it)")
        except OSError as exc:
            if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                return Probe(NO_ANSWER, exc.strerror or "unreachable")
            return Probe(NO_ANSWER, exc.strerror or str(exc))
    return Probe(ANSWERING)


def check_one(target: Target, timeout: float) -> EntryCheck:
    entry = target.entry
    if entry.transport is Transport.UDP:
        why = Probe(NOT_CHECKED, "UDP has no handshake: no answer to a datagram proves nothing")
        return EntryCheck(target, why, why)
    public = connect(entry.public, entry.ports.first, timeout)
    if target.address is None:
        return EntryCheck(target, Probe(NO_ANSWER, target.note), public)
    return EntryCheck(target, connect(target.address, entry.guest_ports.first, timeout), public)


def check(targets: tuple[Target, ...], timeout: float) -> tuple[EntryCheck, ...]:
    """Every entry checked, in parallel (bounded), in the table's order. A range is checked on its first port."""
    if not targets:
        return ()
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(targets))) as pool:
        return tuple(pool.map(lambda t: check_one(t, timeout), targets))


# -- br_netfilter ------------------------------------------------------------------------------------------------

BRIDGE_NF_CALL = {
    "ip": "/proc/sys/net/bridge/bridge-nf-call-iptables",
    "ip6": "/proc/sys/net/bridge/bridge-nf-call-ip6tables",
}


def bridge_netfilter_on(family: str, path: str | None = None) -> bool:
    """Whether br_netfilter hands bridged frames of this family to the IP hooks here (Docker turns it on)."""
    try:
        with open(path or BRIDGE_NF_CALL[family], encoding="ascii") as f:
            return f.read(16).strip() == "1"
    except OSError:
        return False  # br_netfilter not loaded: bridged frames never meet dom0's DNAT


def bridge_netfilter_warning(family: str) -> str:
    setting = BRIDGE_NF_CALL[family].rsplit("/", 1)[1]
    return (
        f"br_netfilter is on (net.bridge.{setting}=1): a guest reaching its OWN published address (guest -> "
        "public -> the same guest) is translated while its frame is bridged, and a bridge never sends a frame back "
        "out the port it came in on; turn hairpin mode on for that guest's port (`ip link set dev VIF type "
        "bridge_slave hairpin on`). Outside clients, the host and other guests are not affected"
    )
