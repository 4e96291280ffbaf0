"""Which address each published guest has now: the entry's own `to`, else what the hypervisor knows.

A guest usually has one address its public one can be translated to, but not always: it may hold an IPv4 and an
IPv6 address (only the public address's family can be a DNAT target), several NICs, or an address several
sources know. The choice is made here once, with a note the admin reads when it was not obvious.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from dom0.errors import GuestNotFound
from dom0.hypervisor.protocol import Hypervisor
from dom0.model import GuestAddress, GuestState
from dom0.publish.table import IPAddress, PublishEntry, PublishTable

# The DHCP server's lease is what the hypervisor handed out; the agent is the guest's own word; ARP and the
# neighbour table only saw the address in passing (an old one can linger there for minutes).
_PREFERENCE = ("lease", "agent", "arp", "neighbour")
# A blocked (idle) or paused guest keeps its addresses; these hold none.
_STOPPED = (GuestState.SHUTOFF, GuestState.SHUTDOWN, GuestState.CRASHED, GuestState.DYING)


@dataclass(frozen=True, slots=True)
class Target:
    """Where an entry's connections go now. `address` is None when nothing knows it (the note says why)."""

    entry: PublishEntry
    address: IPAddress | None
    source: str  # "to", "lease", "agent", "arp", "neighbour"; "" when there is no address
    note: str = ""

    @property
    def destination(self) -> str:
        """ADDR:PORT[-PORT] as the rules send it ([fd00::3]:8443 for IPv6), "" with no address."""
        if self.address is None:
            return ""
        return destination(self.address, str(self.entry.guest_ports))


def destination(address: IPAddress, ports: str) -> str:
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"{host}:{ports}"


def _parse(a: GuestAddress) -> IPAddress | None:
    try:
        return ipaddress.ip_address(a.address)
    except ValueError:
        return None


def _choose(entry: PublishEntry, found: list[GuestAddress], state: GuestState) -> Target:
    family = entry.public.version
    usable = [(a, ip) for a in found if (ip := _parse(a)) is not None and ip.version == family]
    if not usable:
        kind = f"IPv{family}"
        if state in _STOPPED and not found:
            why = f"{entry.guest} is {state}: it has no address until it runs"
        elif found:
            others = ", ".join(a.address for a in found)
            why = f"{entry.guest} has no {kind} address ({others} only), and {entry.public} is {kind}"
        else:
            why = (
                f"no source knows an address of {entry.guest} (no DHCP lease, guest agent or ARP entry); "
                f"give it with `dom0 publish add ... --to GUEST_IP`"
            )
        return Target(entry, None, "", why)
    rank = {s: i for i, s in enumerate(_PREFERENCE)}
    usable.sort(key=lambda pair: rank.get(pair[0].source, len(rank)))
    best, ip = usable[0]
    note = ""
    distinct = sorted({str(i) for _, i in usable} - {str(ip)})
    if distinct:
        note = (
            f"{entry.guest} has several {f'IPv{family}'} addresses: using {ip} ({best.source}), "
            f"not {', '.join(distinct)}; pin one with --to"
        )
    return Target(entry, ip, best.source, note)


def _not_found(table: PublishTable, entry: PublishEntry) -> GuestNotFound:
    return GuestNotFound(
        f"{table.path}: line {entry.line}: no guest {entry.guest!r} ({entry.key}); nothing was changed",
        "check the name with `dom0 list --all`, or remove the entry with `dom0 publish remove`",
    )


def needs_hypervisor(table: PublishTable) -> bool:
    """Whether any entry's address must be asked for (a table of `to` addresses only needs no hypervisor)."""
    return any(e.to is None for e in table.entries)


def resolve(hv: Hypervisor | None, table: PublishTable, *, missing_ok: bool = False) -> tuple[Target, ...]:
    """Each entry's target now. An entry's `to` wins; the hypervisor is asked once per guest.

    Raises GuestNotFound for a guest the hypervisor does not know: the table names something that is not there,
    and `apply` refuses as a whole rather than dropping that entry's rules. With `missing_ok` (for the commands
    that only report), such an entry gets no address and a note instead."""
    asked: dict[str, tuple[list[GuestAddress], GuestState]] = {}
    checked: set[str] = set()
    targets: list[Target] = []
    for entry in table.entries:
        if entry.to is not None and hv is not None and entry.guest not in checked:
            # a pinned address still names a guest: a typo there would publish a port nobody meant
            checked.add(entry.guest)
            try:
                hv.guest(entry.guest)
            except GuestNotFound as exc:
                if not missing_ok:
                    raise _not_found(table, entry) from exc
        if entry.to is not None:
            if entry.to.version != entry.public.version:
                why = f"--to {entry.to} is IPv{entry.to.version} but {entry.public} is IPv{entry.public.version}"
                targets.append(Target(entry, None, "", why))
            else:
                targets.append(Target(entry, entry.to, "to"))
            continue
        if entry.guest not in asked:
            if hv is None:
                raise ValueError("resolve: a hypervisor is needed for entries without `to`")
            try:
                guest = hv.guest(entry.guest)
            except GuestNotFound as exc:
                if missing_ok:
                    targets.append(Target(entry, None, "", f"no guest {entry.guest!r} on this hypervisor"))
                    continue
                raise _not_found(table, entry) from exc
            found = [] if guest.state in _STOPPED else hv.addresses(entry.guest)
            asked[entry.guest] = (found, guest.state)
        found, state = asked[entry.guest]
        targets.append(_choose(entry, found, state))
    return tuple(targets)
