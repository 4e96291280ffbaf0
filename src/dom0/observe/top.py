"""What `dom0 top` measures: rates from two counter readings, and whether a guest is paging heavily.

Nothing here prints; dom0.cli.top draws the screen and the batch output from the Sample values made here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from dom0.errors import Dom0Error
from dom0.hypervisor import Hypervisor
from dom0.image.probe import SwapProbe
from dom0.model import DiskCounters, Guest, GuestCounters, GuestState, NicCounters
from dom0.observe.jsonview import vbd_number

# A guest is "paging heavily" when its swap disks carry more than this share of its disk I/O (bytes or requests)...
SWAP_SHARE = 0.5
# ...and that swap I/O is more than background noise. Linux touches swap a little even when memory is fine (kswapd
# pushing out a few idle pages, a swapon reading the header), in bursts of a handful of requests. Sustained 20
# requests/s, or 256 KiB/s (64 pages of 4 KiB every second), over a whole interval means the guest keeps faulting
# pages back in from disk: its programs wait for the disk instead of memory, which is what the admin must hear about.
MIN_SWAP_REQS_PER_S = 20.0
MIN_SWAP_BYTES_PER_S = 256 * 1024.0

# States worth a word in the NOTE column; running and blocked are the normal life of a guest.
_NOTED_STATES = (GuestState.PAUSED, GuestState.SHUTDOWN, GuestState.CRASHED, GuestState.DYING, GuestState.PMSUSPENDED)


@dataclass(frozen=True, slots=True)
class DiskRate:
    """One virtual disk's I/O per second over an interval."""

    target: str
    swap: bool | None = None  # None: the backing could not be read (remote, not raw, no permission)
    rd_bytes_per_s: float = 0.0
    wr_bytes_per_s: float = 0.0
    rd_reqs_per_s: float = 0.0
    wr_reqs_per_s: float = 0.0

    @property
    def vbd(self) -> int | None:
        """The Xen VBD number when the target is a Xen-style name (xvda, hda, sda), else None."""
        return vbd_number(self.target)

    @property
    def bytes_per_s(self) -> float:
        """Read plus write bytes per second."""
        return self.rd_bytes_per_s + self.wr_bytes_per_s

    @property
    def reqs_per_s(self) -> float:
        """Read plus write requests per second."""
        return self.rd_reqs_per_s + self.wr_reqs_per_s


@dataclass(frozen=True, slots=True)
class NicRate:
    """One virtual NIC's traffic per second, as the guest sees it (rx: received by the guest)."""

    target: str
    mac: str = ""
    rx_bytes_per_s: float = 0.0
    tx_bytes_per_s: float = 0.0
    rx_packets_per_s: float = 0.0
    tx_packets_per_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Paging:
    """Evidence that a guest is paging heavily: its swap disks and their share of the guest's disk I/O."""

    swap_targets: tuple[str, ...]
    share: float  # 0..1, the larger of the byte share and the request share
    bytes_per_s: float
    reqs_per_s: float

    def note(self) -> str:
        """The NOTE column text, e.g. 'paging heavily (swap vdb: 90% of disk I/O)'."""
        return f"paging heavily (swap {','.join(self.swap_targets)}: {self.share * 100:.0f}% of disk I/O)"


@dataclass(frozen=True, slots=True)
class GuestRates:
    """One guest over one interval."""

    guest: Guest
    interval_s: float
    cpu_percent: float
    memory_percent: float | None = None
    disks: tuple[DiskRate, ...] = ()
    nics: tuple[NicRate, ...] = ()
    paging: Paging | None = None
    notes: tuple[str, ...] = ()

    @property
    def paging_heavily(self) -> bool:
        """Whether the guest's swap disks carry most of its (non-trivial) disk I/O."""
        return self.paging is not None

    @property
    def disk_bytes_per_s(self) -> tuple[float, float]:
        """Total (read, write) bytes per second over all disks."""
        return sum(d.rd_bytes_per_s for d in self.disks), sum(d.wr_bytes_per_s for d in self.disks)

    @property
    def nic_bytes_per_s(self) -> tuple[float, float]:
        """Total (tx, rx) bytes per second over all NICs, in xentop's order."""
        return sum(n.tx_bytes_per_s for n in self.nics), sum(n.rx_bytes_per_s for n in self.nics)


@dataclass(frozen=True, slots=True)
class Sample:
    """Every guest's rates over one interval ending at `time`."""

    time: datetime
    interval_s: float
    guests: tuple[GuestRates, ...] = field(default=())


def _per_s(before: int, after: int, seconds: float) -> float:
    # A counter that went backwards was reset (device re-plugged, guest migrated back): no rate rather than a
    # negative one.
    return max(0, after - before) / seconds


def disk_rates(
    before: Sequence[DiskCounters], after: Sequence[DiskCounters], seconds: float, swap: Mapping[str, bool | None]
) -> tuple[DiskRate, ...]:
    """Per-disk rates; a disk missing from `before` (just plugged) shows zero until the next interval."""
    old = {d.target: d for d in before}
    rates = []
    for d in after:
        b = old.get(d.target, d)
        rates.append(
            DiskRate(
                target=d.target,
                swap=swap.get(d.target),
                rd_bytes_per_s=_per_s(b.rd_bytes, d.rd_bytes, seconds),
                wr_bytes_per_s=_per_s(b.wr_bytes, d.wr_bytes, seconds),
                rd_reqs_per_s=_per_s(b.rd_reqs, d.rd_reqs, seconds),
                wr_reqs_per_s=_per_s(b.wr_reqs, d.wr_reqs, seconds),
            )
        )
    return tuple(rates)


def nic_rates(
    before: Sequence[NicCounters], after: Sequence[NicCounters], seconds: float, macs: Mapping[str, str]
) -> tuple[NicRate, ...]:
    """Per-NIC rates; the MAC comes from the counters or, when the driver leaves it out, from `macs`."""
    old = {n.target: n for n in before}
    rates = []
    for n in after:
        b = old.get(n.target, n)
        rates.append(
            NicRate(
                target=n.target,
                mac=n.mac or macs.get(n.target, ""),
                rx_bytes_per_s=_per_s(b.rx_bytes, n.rx_bytes, seconds),
                tx_bytes_per_s=_per_s(b.tx_bytes, n.tx_bytes, seconds),
                rx_packets_per_s=_per_s(b.rx_packets, n.rx_packets, seconds),
                tx_packets_per_s=_per_s(b.tx_packets, n.tx_packets, seconds),
            )
        )
    return tuple(rates)


def paging(disks: Sequence[DiskRate]) -> Paging | None:
    """Paging evidence when swap disks carry > 50% of the disk bytes or requests and that I/O is non-trivial."""
    swap = [d for d in disks if d.swap]
    if not swap:
        return None
    total_bytes = sum(d.bytes_per_s for d in disks)
    total_reqs = sum(d.reqs_per_s for d in disks)
    swap_bytes = sum(d.bytes_per_s for d in swap)
    swap_reqs = sum(d.reqs_per_s for d in swap)
    share = max(swap_bytes / total_bytes if total_bytes else 0.0, swap_reqs / total_reqs if total_reqs else 0.0)
    if share <= SWAP_SHARE:
        return None
    if swap_reqs < MIN_SWAP_REQS_PER_S and swap_bytes < MIN_SWAP_BYTES_PER_S:
        return None
    return Paging(tuple(d.target for d in swap), share, swap_bytes, swap_reqs)


def guest_rates(
    before: GuestCounters,
    after: GuestCounters,
    *,
    swap: Mapping[str, bool | None] | None = None,
    macs: Mapping[str, str] | None = None,
    host_memory_kib: int = 0,
) -> GuestRates | None:
    """The guest's rates between two readings; None when they are not comparable (another guest, a restart)."""
    g0, g1 = before.guest, after.guest
    seconds = after.taken_at - before.taken_at
    if g0.uuid != g1.uuid or g0.id != g1.id or seconds <= 0 or g1.cpu_time_ns < g0.cpu_time_ns:
        return None
    disks = disk_rates(before.disks, after.disks, seconds, swap or {})
    evidence = paging(disks)
    notes = []
    if evidence is not None:
        notes.append(evidence.note())
    if g1.state in _NOTED_STATES:
        notes.append(g1.state.words)
    return GuestRates(
        guest=g1,
        interval_s=seconds,
        cpu_percent=(g1.cpu_time_ns - g0.cpu_time_ns) / (seconds * 1e9) * 100,
        memory_percent=g1.memory_kib / host_memory_kib * 100 if host_memory_kib else None,
        disks=disks,
        nics=nic_rates(before.nics, after.nics, seconds, macs or {}),
        paging=evidence,
        notes=tuple(notes),
    )


@dataclass(frozen=True, slots=True)
class Layout:
    """What a guest's definition says about its devices, cached for the run: swap disks and NIC MACs."""

    swap: Mapping[str, bool | None]
    macs: Mapping[str, str]


def compare(
    before: Sequence[GuestCounters],
    after: Sequence[GuestCounters],
    *,
    layout: Callable[[GuestCounters], Layout] = lambda _c: Layout({}, {}),
    host_memory_kib: int = 0,
    interval_s: float | None = None,
    now: datetime | None = None,
) -> Sample:
    """Rates for the guests present in both readings, in the order of `after`."""
    old = {c.guest.uuid: c for c in before}
    rates = []
    for c in after:
        prev = old.get(c.guest.uuid)
        if prev is None:
            continue
        lay = layout(c)
        r = guest_rates(prev, c, swap=lay.swap, macs=lay.macs, host_memory_kib=host_memory_kib)
        if r is not None:
            rates.append(r)
    if interval_s is None:
        interval_s = max((r.interval_s for r in rates), default=0.0)
    return Sample(now or datetime.now().astimezone(), interval_s, tuple(rates))


class Sampler:
    """Reads a hypervisor's counters again and again, turning each pair of readings into a Sample."""

    def __init__(self, hv: Hypervisor, refs: Sequence[str] = (), probe: SwapProbe | None = None) -> None:
        self._hv = hv
        self._refs = tuple(refs)
        self._probe = probe or SwapProbe(local=not urlparse(hv.uri).hostname)
        self._layouts: dict[str, tuple[frozenset[str], Layout]] = {}
        self._last: tuple[list[GuestCounters], float] | None = None
        try:
            self._host_memory_kib = hv.host().memory_kib
        except Dom0Error:
            self._host_memory_kib = 0

    def _layout(self, c: GuestCounters) -> Layout:
        targets = frozenset(d.target for d in c.disks) | frozenset(n.target for n in c.nics)
        cached = self._layouts.get(c.guest.uuid)
        # Re-read the definition only when devices come or go, so a long session does not re-probe every disk.
        if cached is not None and cached[0] == targets:
            return cached[1]
        try:
            details = self._hv.details(c.guest.uuid)
        except Dom0Error:
            layout = Layout({}, {})  # the guest vanished meanwhile: its disks stay "unknown"
        else:
            layout = Layout(
                {d.target: self._probe.is_swap(d) for d in details.disks},
                {n.target: n.mac for n in details.nics if n.target},
            )
        self._layouts[c.guest.uuid] = (targets, layout)
        return layout

    def sample(self) -> Sample | None:
        """Read the counters; the rates since the previous call, or None on the first call (nothing to compare)."""
        counters = self._hv.counters(self._refs)
        now = time.monotonic()
        last, self._last = self._last, (counters, now)
        if last is None:
            return None
        return compare(
            last[0], counters, layout=self._layout, host_memory_kib=self._host_memory_kib, interval_s=now - last[1]
        )


def every(sampler: Sampler, iterations: int, delay: float) -> Iterator[Sample]:
    """`iterations` samples, `delay` seconds apart, after a first reading that only sets the baseline."""
    sampler.sample()
    deadline = time.monotonic()
    for _ in range(iterations):
        # Deadlines rather than plain sleeps keep samples `delay` apart however long a reading takes.
        deadline += delay
        time.sleep(max(0.0, deadline - time.monotonic()))
        sample = sampler.sample()
        assert sample is not None  # the baseline was read above
        yield sample


def as_json(sample: Sample) -> dict[str, Any]:
    """One sample as the JSON object `dom0 top --batch --json` prints on one line."""
    return {
        "time": sample.time.isoformat(timespec="seconds"),
        "interval_s": round(sample.interval_s, 3),
        "guests": [_guest_json(r) for r in sample.guests],
    }


def _guest_json(r: GuestRates) -> dict[str, Any]:
    g = r.guest
    return {
        "name": g.name,
        "id": g.id,
        "uuid": g.uuid,
        "state": g.state.value,
        "state_flags": g.state.flags,
        "cpu_s": round(g.cpu_time_ns / 1e9, 1),
        "cpu_percent": round(r.cpu_percent, 1),
        "memory_mib": g.memory_kib // 1024,
        "memory_percent": None if r.memory_percent is None else round(r.memory_percent, 1),
        "vcpus": g.vcpus,
        "disks": [
            {
                "target": d.target,
                "vbd": d.vbd,
                "swap": d.swap,
                "rd_bytes_per_s": round(d.rd_bytes_per_s, 1),
                "wr_bytes_per_s": round(d.wr_bytes_per_s, 1),
                "rd_reqs_per_s": round(d.rd_reqs_per_s, 1),
                "wr_reqs_per_s": round(d.wr_reqs_per_s, 1),
            }
            for d in r.disks
        ],
        "nics": [
            {
                "target": n.target,
                "mac": n.mac,
                "rx_bytes_per_s": round(n.rx_bytes_per_s, 1),
                "tx_bytes_per_s": round(n.tx_bytes_per_s, 1),
                "rx_packets_per_s": round(n.rx_packets_per_s, 1),
                "tx_packets_per_s": round(n.tx_packets_per_s, 1),
            }
            for n in r.nics
        ],
        "paging_heavily": r.paging_heavily,
        "notes": list(r.notes),
    }
