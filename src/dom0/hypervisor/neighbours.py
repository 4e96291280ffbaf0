"""This host's neighbour table: which IPv4 address answered ARP from which MAC, as the kernel of the network
namespace dom0 runs in saw it (/proc/net/arp). A guest on a plain bridge, with no DHCP server the hypervisor runs
and no guest agent, is found here by its NIC's MAC once it has sent anything."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dom0.errors import Dom0Error
from dom0.filedata import read_regular
from dom0.model import GuestAddress

ARP_TABLE = Path("/proc/net/arp")
_COMPLETE = 0x2  # ATF_COM: the entry has a MAC (an incomplete one is a question still unanswered)


def parse_arp_table(text: str) -> dict[str, list[str]]:
    """MAC (lower case) -> its IPv4 addresses, from /proc/net/arp's text; incomplete entries left out."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 6:
            continue
        address, _hw_type, flags, mac = fields[0], fields[1], fields[2], fields[3].lower()
        try:
            complete = int(flags, 16) & _COMPLETE
        except ValueError:
            continue
        if complete and mac != "00:00:00:00:00:00":
            found.setdefault(mac, []).append(address)
    return found


def neighbour_addresses(macs: Iterable[str], arp_table: Path | None = None) -> list[GuestAddress]:
    """The addresses this host's neighbour table holds for these MACs (none when the table cannot be read)."""
    try:
        text = read_regular(arp_table or ARP_TABLE, 1 << 20).decode(errors="replace")
    except (OSError, Dom0Error):
        return []
    table = parse_arp_table(text)
    return [GuestAddress(address=a, mac=m.lower(), source="neighbour") for m in macs for a in table.get(m.lower(), [])]
