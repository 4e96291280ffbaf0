"""The nouns of dom0: guests, their disks and NICs, states and statistics, as frozen values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

# How long work (a save, a disk copy, an extract) says how far it got: called with the bytes done so far, from
# whichever thread does the work. The CLI draws it as a progress bar; library callers that show none pass
# no_progress.
Progress = Callable[[int], None]
# Hands out one Progress per item of work (a guest, a disk): its label and the bytes expected (0 when unknown).
BarFactory = Callable[[str, int], Progress]


def no_progress(_done: int) -> None:
    """The progress callback of a caller that shows none."""


def no_bar(_label: str, _total: int) -> Progress:
    """The bar factory of a caller that shows no progress."""
    return no_progress


class GuestState(StrEnum):
    """A guest's run state, named as libvirt names it, with xl's one-letter code and a plain explanation."""

    RUNNING = "running"
    BLOCKED = "blocked"
    PAUSED = "paused"
    SHUTDOWN = "shutdown"
    CRASHED = "crashed"
    DYING = "dying"
    SHUTOFF = "shutoff"
    PMSUSPENDED = "pmsuspended"
    NOSTATE = "nostate"

    @property
    def letter(self) -> str:
        """xl's letter for the state ('-' for states xl has no letter for)."""
        return _LETTERS.get(self, "-")

    @property
    def flags(self) -> str:
        """The six-column state field of `xl list`, e.g. '-b----'."""
        columns = "rbpscd"
        letter = self.letter
        return "".join(c if c == letter else "-" for c in columns)

    @property
    def words(self) -> str:
        """A one-line explanation a non-expert on call can act on."""
        return STATE_WORDS[self]

    @property
    def is_active(self) -> bool:
        """Whether the guest exists in the hypervisor (has an ID and uses memory)."""
        return self not in (GuestState.SHUTOFF, GuestState.NOSTATE)


_LETTERS = {
    GuestState.RUNNING: "r",
    GuestState.BLOCKED: "b",
    GuestState.PAUSED: "p",
    GuestState.SHUTDOWN: "s",
    GuestState.CRASHED: "c",
    GuestState.DYING: "d",
}

STATE_WORDS: dict[GuestState, str] = {
    GuestState.RUNNING: "running: on a CPU now (or runnable); a normally idle guest shown busy is worth a note",
    GuestState.BLOCKED: "blocked: waiting for I/O, or idle with nothing to do; the normal state of a quiet guest",
    GuestState.PAUSED: "paused: stopped by an administrator (pause); holds its memory but gets no CPU",
    GuestState.SHUTDOWN: "shutting down: the guest was asked to stop and is stopping",
    GuestState.CRASHED: "crashed: the guest died and was kept for inspection (on_crash=preserve); call the admin",
    GuestState.DYING: "dying: being destroyed or shut down, not yet gone; stuck here means trouble",
    GuestState.SHUTOFF: "shut off: defined but not running; start it to run it",
    GuestState.PMSUSPENDED: "suspended: the guest put itself to sleep (ACPI S3/S4); it wakes on a wakeup event",
    GuestState.NOSTATE: "no state: the hypervisor reports none for this guest",
}


@dataclass(frozen=True, slots=True)
class Guest:
    """One guest as `xm list` shows it."""

    name: str
    uuid: str
    id: int | None
    state: GuestState
    memory_kib: int
    max_memory_kib: int
    vcpus: int
    cpu_time_ns: int
    persistent: bool = True


class DiskSource(StrEnum):
    """Where a virtual disk's bytes live on the host."""

    FILE = "file"
    BLOCK = "block"
    VOLUME = "volume"
    NETWORK = "network"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Disk:
    """A virtual disk: the device name the guest sees and the host object behind it."""

    target: str
    source_kind: DiskSource
    source: str
    device: str = "disk"
    bus: str = ""
    format: str = ""
    readonly: bool = False


@dataclass(frozen=True, slots=True)
class Nic:
    """A virtual network interface."""

    mac: str
    kind: str
    source: str = ""
    model: str = ""
    target: str = ""


class BootKind(StrEnum):
    """How the guest's kernel is found."""

    KERNEL = "kernel"  # direct boot: the host hands a kernel and initrd over
    BOOTLOADER = "bootloader"  # a host-side loader such as pygrub reads the guest's disk
    FIRMWARE = "firmware"  # BIOS/UEFI inside the guest boots from its disks


@dataclass(frozen=True, slots=True)
class Boot:
    """The guest's boot method and its parameters."""

    kind: BootKind
    kernel: str = ""
    initrd: str = ""
    cmdline: str = ""
    bootloader: str = ""
    devices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GuestDetails:
    """Everything `list --long` shows about one guest."""

    guest: Guest
    hypervisor_type: str
    os_type: str
    boot: Boot
    disks: tuple[Disk, ...] = ()
    nics: tuple[Nic, ...] = ()
    autostart: bool = False
    on_poweroff: str = ""
    on_reboot: str = ""
    on_crash: str = ""
    console_log: str = ""


@dataclass(frozen=True, slots=True)
class DiskCounters:
    """Cumulative I/O counters of one virtual disk."""

    target: str
    rd_bytes: int = 0
    wr_bytes: int = 0
    rd_reqs: int = 0
    wr_reqs: int = 0


@dataclass(frozen=True, slots=True)
class NicCounters:
    """Cumulative traffic counters of one virtual NIC (as the guest sees it: rx is what it received)."""

    target: str
    mac: str = ""
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    tx_packets: int = 0


@dataclass(frozen=True, slots=True)
class GuestCounters:
    """One reading of a guest's cumulative counters, taken at `taken_at` (a monotonic clock, seconds)."""

    guest: Guest
    taken_at: float
    disks: tuple[DiskCounters, ...] = field(default=())
    nics: tuple[NicCounters, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class HostInfo:
    """The host as the hypervisor describes it."""

    uri: str
    hostname: str
    hypervisor: str
    hypervisor_version: str
    cpus: int
    memory_kib: int
    free_memory_kib: int


class GuestType(StrEnum):
    """How Xen virtualizes a guest: paravirtualized, PVH, or fully virtualized (also every KVM guest)."""

    PV = "pv"
    PVH = "pvh"
    HVM = "hvm"


@dataclass(frozen=True, slots=True)
class GuestConfig:
    """A guest's definition, the one shape both libvirt XML and xl.cfg (and old xm configs) map to.

    memory_mib/max_memory_mib are 0 when the definition does not say (xl then uses its own default).
    """

    name: str
    uuid: str = ""
    type: GuestType = GuestType.PV
    memory_mib: int = 0
    max_memory_mib: int = 0
    vcpus: int = 1
    max_vcpus: int = 1
    boot: Boot = field(default_factory=lambda: Boot(BootKind.FIRMWARE))
    disks: tuple[Disk, ...] = ()
    nics: tuple[Nic, ...] = ()
    on_poweroff: str = "destroy"
    on_reboot: str = "restart"
    on_crash: str = "destroy"


class SaveFormat(StrEnum):
    """Whose save image a file holds: each hypervisor driver writes its own header before the memory stream."""

    QEMU = "qemu"  # libvirt's QEMU/KVM driver
    LIBXL = "libxl"  # libvirt's Xen (libxl) driver
    XL = "xl"  # Xen's own `xl save`

    @property
    def description(self) -> str:
        """Who writes this format, in words."""
        return _SAVE_FORMAT_WORDS[self]

    @property
    def one_at_a_time(self) -> bool:
        """Whether its driver must save and restore one guest after another.

        libvirtd's libxl driver (libvirt 9.0 on Xen 4.17) died when two guests were saved at once, and when two
        were restored at once; the guests it was saving died with it, no image kept. xl saves each guest in a
        process of its own, and libvirt's QEMU driver each in its guest's own QEMU."""
        return self is SaveFormat.LIBXL


_SAVE_FORMAT_WORDS = {
    SaveFormat.QEMU: "libvirt's QEMU/KVM driver",
    SaveFormat.LIBXL: "libvirt's Xen (libxl) driver",
    SaveFormat.XL: "Xen's xl toolstack",
}


@dataclass(frozen=True, slots=True)
class BalloonReport:
    """A running guest's memory as the hypervisor and the guest's balloon driver last reported it.

    KiB or counts, cumulative since the guest booted; None where nothing was reported, never a made-up 0. The
    guest-side figures (unused, available, usable, swap, faults, disk caches) exist only while the guest runs a
    balloon driver and the hypervisor polls it (libvirt's stats period); `rss_kib` is the QEMU process's resident
    memory; `last_update` is when the guest last answered (seconds, the host's clock).
    """

    current_kib: int | None = None
    maximum_kib: int | None = None
    unused_kib: int | None = None
    available_kib: int | None = None
    usable_kib: int | None = None
    disk_caches_kib: int | None = None
    swap_in_kib: int | None = None
    swap_out_kib: int | None = None
    major_faults: int | None = None
    minor_faults: int | None = None
    rss_kib: int | None = None
    last_update: int | None = None

    @property
    def from_guest(self) -> bool:
        """Whether the guest's own driver reported anything (not only the hypervisor's balloon size)."""
        return self.usable_kib is not None or self.unused_kib is not None or self.available_kib is not None


class StatsSource(StrEnum):
    """Whether and how a guest can tell the host about its memory use."""

    POLLED = "polled"  # a balloon device with the stats period on: the guest's driver answers (if loaded)
    PERIOD_OFF = "period-off"  # a balloon device, but the hypervisor does not ask it (stats period 0)
    NO_DEVICE = "no-device"  # the guest has no balloon device (libvirt <memballoon model='none'/>)
    UNSUPPORTED = "unsupported"  # the hypervisor keeps no guest-side statistics (Xen)


@dataclass(frozen=True, slots=True)
class GuestMemory:
    """One reading of a running guest's memory, taken at `taken_at` (a monotonic clock, seconds)."""

    guest: Guest
    report: BalloonReport
    source: StatsSource
    stats_period_s: int = 0
    host_pid: int | None = None  # the host process that holds the guest's memory (QEMU), where known
    taken_at: float = 0.0


@dataclass(frozen=True, slots=True)
class GuestAddress:
    """An IP address a guest's NIC holds, and where it was learnt: "lease" (the hypervisor's DHCP server), "agent"
    (the guest agent, from inside), "arp" (the hypervisor's view of the host's ARP table), or "neighbour" (this
    host's own neighbour table, matched by the NIC's MAC)."""

    address: str  # without prefix: 192.168.122.10, fd00::10
    mac: str
    source: str
    prefix: int | None = None
    interface: str = ""  # the guest's own name for the NIC, where the agent told it
