"""`dom0 mem`: each running guest's memory as the hypervisor, the guest's balloon driver and the host see it,
with a verdict in words, and the host's totals.

The figures come from two readings a short sample apart (one bulk statistics call each), so swap and fault
counters become rates. Where a guest has a balloon device but the hypervisor does not poll it, dom0 turns the
stats period on (live only, like `virsh dommemstat --period`) and says so.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlparse

from dom0.errors import Dom0Error
from dom0.hypervisor import Hypervisor
from dom0.memory.hostside import KernelMemory, qemu_cost, read_kernel_memory
from dom0.model import GuestMemory, GuestState, HostInfo, StatsSource

# A guest whose usable memory (the balloon driver's MemAvailable) is below this share of what it has is tight.
TIGHT_FRACTION = 0.10
# Swapping in or out faster than this (64 pages of 4 KiB a second, sustained over the sample) is paging.
PAGING_KIB_S = 256.0
# The period dom0 sets where none is: short enough that the sample sees a fresh report, and costing the guest
# one small virtio exchange every 2 s.
STATS_PERIOD_S = 2
# The sample between the two readings: one stats period plus the guest's time to answer, at most this long.
SAMPLE_LIMIT_S = 5.0
DEFAULT_SAMPLE_S = 1.0
# Set aside for dom0 itself (the reserve): its measured use plus a quarter of it, and at least this much more.
RESERVE_MARGIN_MIB = 256


class Verdict(StrEnum):
    """One word for a guest's memory, worst first."""

    PAGING = "paging"
    TIGHT = "tight"
    NO_STATS = "no stats"
    OK = "ok"


@dataclass(frozen=True, slots=True)
class GuestMemoryRow:
    """One guest's line of `dom0 mem`; None is "not known", never a made-up 0."""

    name: str
    uuid: str
    id: int | None
    state: GuestState
    max_mib: int | None
    current_mib: int | None
    used_mib: int | None
    usable_mib: int | None
    swap_in_kib_s: float | None
    swap_out_kib_s: float | None
    major_faults_s: float | None
    host_rss_mib: int | None
    host_pss_mib: int | None
    verdict: Verdict
    why: str
    hint: str = ""


@dataclass(frozen=True, slots=True)
class HostMemoryRow:
    """The host's line: what there is, what is free for guests, and what the guests were promised."""

    hostname: str
    hypervisor: str
    total_mib: int
    available_mib: int
    available_means: str  # where `available_mib` comes from, in words
    committed_max_mib: int
    committed_current_mib: int
    dom0_used_mib: int | None  # dom0's own use (Domain-0's memory on Xen); None where not measurable from here
    reserve_mib: int
    overcommit: float  # committed maxima per MiB of memory not reserved for dom0
    swap_used_mib: int | None
    swap_in_kib_s: float | None
    swap_out_kib_s: float | None
    pressure_some_avg10: float | None
    pressure_full_avg10: float | None


@dataclass(frozen=True, slots=True)
class MemoryReport:
    """What `dom0 mem` prints: the host, each guest, and what dom0 did or could not do on the way."""

    host: HostMemoryRow
    guests: tuple[GuestMemoryRow, ...]
    notes: tuple[str, ...] = ()
    sample_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Reading:
    """One raw reading: the hypervisor's host facts, each running guest, and this machine's kernel (if local)."""

    info: HostInfo
    guests: tuple[GuestMemory, ...]
    kernel: KernelMemory | None
    taken_at: float = field(default_factory=time.monotonic)


def is_local(uri: str) -> bool:
    """Whether the hypervisor's guests run on this machine (so its kernel and QEMU processes can be read)."""
    return not urlparse(uri).hostname and not uri.startswith("test:")


def take_reading(hv: Hypervisor, refs: Sequence[str] = ()) -> Reading:
    """Host facts, one bulk reading of the guests, and this machine's kernel memory."""
    info = hv.host()
    guests = tuple(hv.memory(refs))
    kernel = read_kernel_memory() if is_local(hv.uri) else None
    return Reading(info, guests, kernel)


def turn_on_stats(hv: Hypervisor, reading: Reading) -> tuple[set[str], list[str]]:
    """Set the stats period of guests whose balloon device nobody polls; the UUIDs done, and notes to print."""
    done: set[str] = set()
    failed: list[str] = []
    for m in reading.guests:
        if m.source is not StatsSource.PERIOD_OFF or m.guest.state is GuestState.PAUSED:
            continue
        try:
            hv.set_memory_stats_period(m.guest.uuid, STATS_PERIOD_S)
            done.add(m.guest.uuid)
        except Dom0Error as exc:
            failed.append(f"{m.guest.name}: {exc.message}")
    notes = []
    if done:
        names = ", ".join(m.guest.name for m in reading.guests if m.guest.uuid in done)
        notes.append(
            f"turned on memory statistics (every {STATS_PERIOD_S} s, until the guest stops) for: {names}; "
            f"to keep them, add <stats period='{STATS_PERIOD_S}'/> inside <memballoon> of the definition"
        )
    notes += [f"could not turn on memory statistics of {f}" for f in failed]
    return done, notes


def sample_seconds(reading: Reading, wanted: float, enabled: Collection[str] = ()) -> float:
    """How long to wait for the second reading: `wanted`, or one stats period and a little more when a guest's
    driver reports (or was just asked to: the UUIDs in `enabled`), so each guest has answered anew; never beyond
    SAMPLE_LIMIT_S. 0 when `wanted` is 0: one reading, no rates."""
    if wanted <= 0:
        return 0.0
    periods = [
        m.stats_period_s or STATS_PERIOD_S
        for m in reading.guests
        if m.source is StatsSource.POLLED or m.guest.uuid in enabled
    ]
    return min(max([wanted] + [p + 0.5 for p in periods]), SAMPLE_LIMIT_S)


def read_memory(hv: Hypervisor, refs: Sequence[str] = (), *, sample_s: float = DEFAULT_SAMPLE_S) -> MemoryReport:
    """`dom0 mem`: two readings `sample_s` apart (longer when a stats period needs it); 0 takes one, no rates."""
    first = take_reading(hv, refs)
    enabled, notes = turn_on_stats(hv, first)
    seconds = sample_seconds(first, sample_s, enabled)
    if seconds <= 0:
        return build_report(first, first, notes=notes, enabled=enabled)
    time.sleep(seconds)
    second = take_reading(hv, refs)
    return build_report(first, second, notes=notes, enabled=enabled)


def build_report(
    first: Reading, second: Reading, *, notes: Sequence[str] = (), enabled: set[str] | None = None
) -> MemoryReport:
    """The report from two readings (the same one twice gives no rates)."""
    enabled = enabled or set()
    before = {m.guest.uuid: m for m in first.guests}
    is_xen = second.info.hypervisor.lower() == "xen"
    domain0 = next((m for m in second.guests if is_xen and m.guest.id == 0), None)
    rows = tuple(
        guest_row(m, before.get(m.guest.uuid), is_xen=is_xen, just_enabled=m.guest.uuid in enabled)
        for m in second.guests
        if m is not domain0
    )
    host = host_row(second, first, rows, domain0)
    return MemoryReport(host, rows, tuple(notes), round(second.taken_at - first.taken_at, 2))


def _mib(kib: int | None) -> int | None:
    return None if kib is None else kib // 1024


def _rate(new: int | None, old: int | None, seconds: float) -> float | None:
    if new is None or old is None or seconds <= 0 or new < old:
        return None  # not reported, or the guest rebooted (its counters restarted)
    return round((new - old) / seconds, 1)


def guest_row(now: GuestMemory, before: GuestMemory | None, *, is_xen: bool, just_enabled: bool) -> GuestMemoryRow:
    """One guest's figures and verdict; rates only between two reports the guest made at different times."""
    r = now.report
    current = r.current_kib if r.current_kib is not None else now.guest.memory_kib or None
    maximum = r.maximum_kib if r.maximum_kib is not None else now.guest.max_memory_kib or None
    seen = r.available_kib if r.available_kib is not None else current
    used = seen - r.usable_kib if seen is not None and r.usable_kib is not None else None
    swap_in = swap_out = faults = None
    if before is not None and r.last_update is not None and before.report.last_update is not None:
        seconds = float(r.last_update - before.report.last_update)
        b = before.report
        swap_in = _rate(r.swap_in_kib, b.swap_in_kib, seconds)
        swap_out = _rate(r.swap_out_kib, b.swap_out_kib, seconds)
        faults = _rate(r.major_faults, b.major_faults, seconds)
    rss = pss = None
    if is_xen:
        rss = current  # a Xen domain's cost to the host is the pages it holds
    elif now.host_pid is not None and (cost := qemu_cost(now.host_pid, now.guest.name)) is not None:
        rss, pss = cost.rss_kib, cost.pss_kib
    elif r.rss_kib is not None:
        rss = r.rss_kib
    verdict, why, hint = judge(now, current, maximum, swap_in, swap_out, just_enabled=just_enabled)
    return GuestMemoryRow(
        name=now.guest.name,
        uuid=now.guest.uuid,
        id=now.guest.id,
        state=now.guest.state,
        max_mib=_mib(maximum),
        current_mib=_mib(current),
        used_mib=_mib(max(used, 0)) if used is not None else None,
        usable_mib=_mib(r.usable_kib),
        swap_in_kib_s=swap_in,
        swap_out_kib_s=swap_out,
        major_faults_s=faults,
        host_rss_mib=_mib(rss),
        host_pss_mib=_mib(pss),
        verdict=verdict,
        why=why,
        hint=hint,
    )


def judge(
    m: GuestMemory,
    current_kib: int | None,
    max_kib: int | None,
    swap_in: float | None,
    swap_out: float | None,
    *,
    just_enabled: bool = False,
) -> tuple[Verdict, str, str]:
    """The verdict, the evidence in one line, and what to do."""
    r = m.report
    name = m.guest.name
    grow = f"`dom0 mem set {name} SIZE` (up to its maximum, {_mib(max_kib)} MiB)" if max_kib else "more memory"
    if (swap_in or 0) > PAGING_KIB_S or (swap_out or 0) > PAGING_KIB_S:
        return (
            Verdict.PAGING,
            f"swapping now: in {swap_in or 0:.0f} KiB/s, out {swap_out or 0:.0f} KiB/s",
            f"give it more memory with {grow}, or find what grew inside it (`dom0 doctor`)",
        )
    if r.usable_kib is not None and current_kib:
        share = r.usable_kib / current_kib
        if share < TIGHT_FRACTION:
            return (
                Verdict.TIGHT,
                f"usable {r.usable_kib // 1024} MiB of {current_kib // 1024} MiB ({share:.0%})",
                f"it is close to swapping or its OOM killer; give it more with {grow}",
            )
        return Verdict.OK, f"usable {r.usable_kib // 1024} MiB of {current_kib // 1024} MiB ({share:.0%})", ""
    return (Verdict.NO_STATS, *_why_no_stats(m, just_enabled))


def _why_no_stats(m: GuestMemory, just_enabled: bool) -> tuple[str, str]:
    if m.source is StatsSource.UNSUPPORTED:
        return (
            "Xen's balloon driver reports no usage to dom0; the pages the domain holds are all the host sees",
            "run `free -m` in the guest (or a monitoring agent) for its own view",
        )
    if m.source is StatsSource.NO_DEVICE:
        return (
            "the guest has no balloon device, so it cannot report its memory",
            "add <memballoon model='virtio'><stats period='5'/></memballoon> to its definition (from its next start)",
        )
    if m.guest.state is GuestState.PAUSED:
        return "paused: a paused guest cannot answer", f"`dom0 resume {m.guest.name}`, then read again"
    if just_enabled:
        return (
            "statistics were just turned on and the guest has not answered yet",
            "run `dom0 mem` again in a few seconds; if this stays, load virtio_balloon in the guest",
        )
    if m.source is StatsSource.PERIOD_OFF:
        return (
            "its balloon device is not polled (stats period 0)",
            f"`virsh dommemstat {m.guest.name} --period 5 --live`, or let `dom0 mem` turn it on",
        )
    return (
        "its balloon device is polled but the guest's driver does not answer",
        "load the virtio_balloon module in the guest (`modprobe virtio_balloon`) and keep it loaded at boot",
    )


def reserve_rule(dom0_used_mib: int | None) -> int:
    """dom0's reserve: its measured use plus a quarter, at least RESERVE_MARGIN_MIB more (1 GiB if unmeasured)."""
    if dom0_used_mib is None:
        return 1024
    return dom0_used_mib + max(RESERVE_MARGIN_MIB, dom0_used_mib // 4)


def host_row(
    now: Reading, before: Reading, guests: Sequence[GuestMemoryRow], domain0: GuestMemory | None
) -> HostMemoryRow:
    """Totals, free memory for guests (the hypervisor's on Xen), commitments and dom0's own use."""
    info = now.info
    k = now.kernel
    committed_max = sum(g.max_mib or 0 for g in guests)
    committed_current = sum(g.current_mib or 0 for g in guests)
    if info.hypervisor.lower() == "xen":
        total, available = info.memory_kib // 1024, info.free_memory_kib // 1024
        means = "Xen's free memory (xl info free_memory); dom0's own `free` does not count for guests"
        dom0_used = None
        if domain0 is not None:
            dom0_used = _mib(domain0.report.current_kib or domain0.guest.memory_kib)
    elif k is not None:
        total, available = k.total_kib // 1024, k.available_kib // 1024
        means = "MemAvailable of this host's kernel"
        costs = [g.host_rss_mib for g in guests]
        dom0_used = None
        if all(c is not None for c in costs):
            dom0_used = max(0, total - available - sum(c or 0 for c in costs))
    else:
        total, available = info.memory_kib // 1024, info.free_memory_kib // 1024
        means = "free memory as the hypervisor reports it"
        dom0_used = None
    reserve = reserve_rule(dom0_used)
    swap_in = swap_out = None
    if k is not None and before.kernel is not None and k.taken_at > before.kernel.taken_at:
        seconds = k.taken_at - before.kernel.taken_at
        swap_in = _rate(k.swapped_in_kib, before.kernel.swapped_in_kib, seconds)
        swap_out = _rate(k.swapped_out_kib, before.kernel.swapped_out_kib, seconds)
    return HostMemoryRow(
        hostname=info.hostname,
        hypervisor=info.hypervisor,
        total_mib=total,
        available_mib=available,
        available_means=means,
        committed_max_mib=committed_max,
        committed_current_mib=committed_current,
        dom0_used_mib=dom0_used,
        reserve_mib=reserve,
        overcommit=round(committed_max / max(total - reserve, 1), 2),
        swap_used_mib=_mib(k.swap_used_kib) if k else None,
        swap_in_kib_s=swap_in,
        swap_out_kib_s=swap_out,
        pressure_some_avg10=k.pressure_some_avg10 if k else None,
        pressure_full_avg10=k.pressure_full_avg10 if k else None,
    )


def typical_guest_mib(report: MemoryReport) -> int | None:
    """The median maximum of the running guests: the size `dom0 plan` assumes for one more."""
    sizes = [g.max_mib for g in report.guests if g.max_mib]
    return int(statistics.median(sizes)) if sizes else None
