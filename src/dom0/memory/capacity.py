"""`dom0 plan`: how many more guests of a size fit, counted two ways, and which guests could give memory back or
need more, from their own balloon statistics.

- By free memory: what is free for guests now (the hypervisor's free memory on Xen, MemAvailable on KVM) minus the
  part of dom0's reserve it does not use yet. Right now, but guests that balloon up later eat into it.
- By committed maxima: the host's memory minus dom0's reserve minus every running guest's maximum. Safe even if
  every guest grows to its maximum.
"""

from __future__ import annotations

from dataclasses import dataclass

from dom0.memory.reading import MemoryReport, Verdict

# A guest gives memory back when it has this share of its memory, and at least GIVE_BACK_MIN_MIB, unused; what
# it keeps is its use plus GIVE_BACK_SLACK of it, rounded up to 64 MiB.
GIVE_BACK_SHARE = 0.5
GIVE_BACK_MIN_MIB = 128
GIVE_BACK_SLACK = 0.5
ROUND_MIB = 64


@dataclass(frozen=True, slots=True)
class GiveBack:
    """A guest with memory to spare: what it has, uses, could keep, and what that frees."""

    name: str
    current_mib: int
    used_mib: int
    suggest_mib: int
    frees_mib: int


@dataclass(frozen=True, slots=True)
class NeedsMore:
    """A guest short of memory: its verdict and evidence, and how far its balloon may still grow."""

    name: str
    verdict: str
    why: str
    current_mib: int | None
    max_mib: int | None
    hint: str


@dataclass(frozen=True, slots=True)
class CapacityPlan:
    """What `dom0 plan` prints."""

    guest_memory_mib: int
    guest_memory_from: str  # "--guest-memory" or how the default was found
    reserve_mib: int
    reserve_from: str
    total_mib: int
    available_mib: int
    committed_max_mib: int
    fits_by_free: int
    fits_by_committed: int
    give_back: tuple[GiveBack, ...]
    needs_more: tuple[NeedsMore, ...]


def _round_up(mib: float) -> int:
    return int(-(-mib // ROUND_MIB) * ROUND_MIB)


def plan_capacity(
    report: MemoryReport, guest_memory_mib: int, reserve_mib: int | None = None, *, guest_memory_from: str = ""
) -> CapacityPlan:
    """The plan for guests of `guest_memory_mib`, keeping `reserve_mib` (default: the documented rule) for dom0."""
    host = report.host
    reserve = host.reserve_mib if reserve_mib is None else reserve_mib
    if reserve_mib is not None:
        reserve_from = "--reserve"
    elif host.dom0_used_mib is not None:
        reserve_from = f"dom0 uses {host.dom0_used_mib} MiB; plus a quarter of that, at least 256 MiB"
    else:
        reserve_from = "dom0's own use cannot be measured from here: 1 GiB assumed"
    # Free memory already excludes what dom0 uses now; only the rest of its reserve comes off it.
    unused_reserve = max(0, reserve - (host.dom0_used_mib or 0))
    size = max(guest_memory_mib, 1)
    fits_free = max(0, host.available_mib - unused_reserve) // size
    fits_committed = max(0, host.total_mib - reserve - host.committed_max_mib) // size
    give: list[GiveBack] = []
    need: list[NeedsMore] = []
    for g in report.guests:
        if g.verdict in (Verdict.PAGING, Verdict.TIGHT):
            room = (g.max_mib or 0) - (g.current_mib or 0)
            hint = (
                f"`dom0 mem set {g.name} {min(g.max_mib or 0, _round_up((g.current_mib or 0) * 1.5))}M`"
                if room >= ROUND_MIB
                else "its balloon is at its maximum: raise the maximum in its definition and restart it"
            )
            need.append(NeedsMore(g.name, str(g.verdict), g.why, g.current_mib, g.max_mib, hint))
        elif g.verdict is Verdict.OK and g.used_mib is not None and g.current_mib:
            spare = g.current_mib - g.used_mib
            keep = _round_up(g.used_mib * (1 + GIVE_BACK_SLACK))
            if spare >= max(GIVE_BACK_MIN_MIB, g.current_mib * GIVE_BACK_SHARE) and keep < g.current_mib:
                give.append(GiveBack(g.name, g.current_mib, g.used_mib, keep, g.current_mib - keep))
    return CapacityPlan(
        guest_memory_mib=guest_memory_mib,
        guest_memory_from=guest_memory_from or "--guest-memory",
        reserve_mib=reserve,
        reserve_from=reserve_from,
        total_mib=host.total_mib,
        available_mib=host.available_mib,
        committed_max_mib=host.committed_max_mib,
        fits_by_free=int(fits_free),
        fits_by_committed=int(fits_committed),
        give_back=tuple(sorted(give, key=lambda x: -x.frees_mib)),
        needs_more=tuple(need),
    )
