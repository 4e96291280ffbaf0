"""What every backend implements and shares: the Hypervisor and Console protocols, the logs they return, the URI
they are opened with and how a guest ID is told from a name.

The backends (libvirt/, xl/) import this module, never the package: connecting (dom0.hypervisor) imports them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dom0.errors import Dom0Error
from dom0.filedata import open_regular
from dom0.model import Guest, GuestAddress, GuestCounters, GuestDetails, GuestMemory, HostInfo, SaveFormat


@dataclass(frozen=True, slots=True)
class LogText:
    """A log and where it came from, so the user is told which log they are reading."""

    source: str
    text: str


def read_log_tail(path: Path, limit: int = 1 << 20) -> str | None:
    """The last `limit` bytes of a log file as text, or None when it cannot be read or is no regular file (a FIFO
    or a device in a log's place would otherwise block or never end)."""
    try:
        with os.fdopen(open_regular(path), "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - limit))
            return f.read(limit).decode(errors="replace")
    except (OSError, Dom0Error):
        return None


class Console(Protocol):
    """A guest's serial console as a byte stream."""

    def read(self, timeout: float) -> bytes | None:
        """Bytes from the guest, b'' if none arrived within `timeout`, None once the console closed."""
        ...

    def write(self, data: bytes) -> None:
        """Send keystrokes to the guest."""
        ...

    def close(self) -> None:
        """Detach; the guest keeps running."""
        ...


class Hypervisor(Protocol):
    """What dom0 needs from a hypervisor; libvirt (QEMU/KVM, Xen's libxl, test://) and xl implement it."""

    uri: str

    @property
    def save_format(self) -> SaveFormat | None:
        """The save image format this hypervisor writes and reads; None where saving is not supported."""
        ...

    def host(self) -> HostInfo:
        """Facts about the host and the hypervisor."""
        ...

    def guests(self, *, include_inactive: bool = False) -> list[Guest]:
        """Guests sorted as `xl list` sorts them: by ID, then inactive ones by name."""
        ...

    def guest(self, ref: str) -> Guest:
        """The guest with that name, UUID or ID; GuestNotFound otherwise."""
        ...

    def details(self, ref: str) -> GuestDetails:
        """What `list --long` shows for one guest."""
        ...

    def definition(self, ref: str) -> str:
        """The guest's definition in the hypervisor's own format (libvirt XML, xl.cfg)."""
        ...

    def counters(self, refs: Sequence[str] = ()) -> list[GuestCounters]:
        """Cumulative CPU, disk and network counters of running guests (all of them when `refs` is empty)."""
        ...

    def memory(self, refs: Sequence[str] = ()) -> list[GuestMemory]:
        """Memory readings of running guests (all of them when `refs` is empty), in as few calls as the hypervisor
        allows (libvirt's bulk statistics: one round trip)."""
        ...

    def addresses(self, ref: str) -> list[GuestAddress]:
        """The IP addresses the guest's NICs hold, from every source this hypervisor has (DHCP leases, the guest
        agent, ARP); empty when none knows. A stopped guest has none."""
        ...

    def set_memory_stats_period(self, ref: str, seconds: int) -> None:
        """Make the hypervisor ask the guest's balloon driver for its statistics every `seconds` (live only)."""
        ...

    def set_memory(self, ref: str, kib: int) -> None:
        """Move the running guest's balloon so it has `kib` of memory (within its maximum); returns at once."""
        ...

    def create(self, definition: str) -> Guest:
        """Start a guest from a definition, without keeping the definition."""
        ...

    def define(self, definition: str) -> Guest:
        """Keep a new guest's definition (libvirt XML; an xl.cfg text on xl://), without starting it."""
        ...

    def undefine(self, ref: str) -> None:
        """Forget a stopped guest's definition; dom0 only ever undefines what it defined itself."""
        ...

    def editable_definition(self, ref: str) -> str:
        """The definition a copy is made from: libvirt's inactive XML, or the guest's xl.cfg file on xl://."""
        ...

    def external_snapshot(self, ref: str, overlays: Mapping[str, str]) -> None:
        """Make the guest write to new qcow2 overlays (target dev -> new file), live if it runs; its old disks
        become read-only bases that clones can share."""
        ...

    def start(self, ref: str) -> Guest:
        """Start a defined guest."""
        ...

    def shutdown(self, ref: str) -> None:
        """Ask the guest for an orderly shutdown; returns at once."""
        ...

    def reboot(self, ref: str) -> None:
        """Ask the guest to reboot."""
        ...

    def destroy(self, ref: str) -> None:
        """Stop the guest at once, like pulling the power cord."""
        ...

    def pause(self, ref: str) -> None:
        """Stop scheduling the guest's CPUs; it keeps its memory."""
        ...

    def resume(self, ref: str) -> None:
        """Let a paused guest run again."""
        ...

    def save(self, ref: str, path: str) -> None:
        """Write the running guest's memory and state to `path` (a file on the host); the guest stops."""
        ...

    def restore(self, path: str, *, paused: bool = False, expect: str = "") -> Guest:
        """Start the guest saved in `path` again where it left off; with `paused`, leave it paused.

        `expect` names the guest (UUID or name) when the caller already read the image's header: a FIFO cannot be
        read twice, and parallel restores make "the guest that is new" ambiguous.
        """
        ...

    def autostart_guests(self) -> list[str]:
        """Names of the guests the host starts at boot (libvirt's autostart flag, xl's /etc/xen/auto)."""
        ...

    def set_autostart(self, ref: str, enabled: bool) -> None:
        """Turn the guest's start at boot on or off (libvirt starts it itself; xl:// leaves /etc/xen/auto alone)."""
        ...

    def console(self, ref: str) -> Console:
        """Attach to the guest's serial console."""
        ...

    def hypervisor_log(self) -> LogText:
        """The hypervisor's own log (`xl dmesg` on Xen, the host kernel's log for KVM/QEMU)."""
        ...

    def guest_logs(self, ref: str) -> list[LogText]:
        """The guest's console log and the hypervisor's log of that guest, those that exist."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


# libvirt takes a guest ID as a C int; Xen's domids stop far below this.
MAX_GUEST_ID = 2**31 - 1


def guest_id(ref: str) -> int | None:
    """The guest ID `ref` spells (plain ASCII digits, within a C int), or None: then it is a name or UUID only."""
    if ref.isascii() and ref.isdigit() and len(ref) <= len(str(MAX_GUEST_ID)):
        number = int(ref)
        return number if number <= MAX_GUEST_ID else None
    return None


@dataclass(frozen=True, slots=True)
class UriChoice:
    """The URI dom0 will use and why, so an error can say what was tried."""

    uri: str
    reason: str
