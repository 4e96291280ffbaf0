"""`dom0 plan`: guests that fit by free memory and by committed maxima, who can give back, who needs more."""

from __future__ import annotations

from dom0.memory.capacity import plan_capacity
from dom0.memory.reading import GuestMemoryRow, HostMemoryRow, MemoryReport, Verdict
from dom0.model import GuestState


def _host(**changes: object) -> HostMemoryRow:
    values: dict[str, object] = {
        "hostname": "h",
        "hypervisor": "QEMU",
        "total_mib": 16384,
        "available_mib": 6000,
        "available_means": "MemAvailable",
        "committed_max_mib": 8192,
        "committed_current_mib": 6144,
        "dom0_used_mib": 800,
        "reserve_mib": 1056,
        "overcommit": 0.5,
        "swap_used_mib": 0,
        "swap_in_kib_s": 0.0,
        "swap_out_kib_s": 0.0,
        "pressure_some_avg10": 0.0,
        "pressure_full_avg10": 0.0,
    }
    values.update(changes)
    return HostMemoryRow(**values)  # type: ignore[arg-type]


def _guest(name: str, current: int, used: int | None, verdict: Verdict, maximum: int = 2048) -> GuestMemoryRow:
    usable = current - used if used is not None else None
    return GuestMemoryRow(
        name, name, 1, GuestState.RUNNING, maximum, current, used, usable, 0, 0, 0, current, current, verdict, "why"
    )


def test_fits_counts_both_ways_with_dom0s_reserve() -> None:
    report = MemoryReport(_host(), ())
    plan = plan_capacity(report, 1024)
    # free: 6000 MiB available, less the 256 MiB of the reserve dom0 does not use yet
    assert plan.fits_by_free == (6000 - 256) // 1024 == 5
    # committed: 16384 - 1056 reserve - 8192 maxima
    assert plan.fits_by_committed == (16384 - 1056 - 8192) // 1024 == 6
    assert plan.reserve_mib == 1056
    assert "dom0 uses 800 MiB" in plan.reserve_from


def test_an_explicit_reserve_wins_and_nothing_fits_below_zero() -> None:
    plan = plan_capacity(MemoryReport(_host(), ()), 4096, reserve_mib=12000)
    assert plan.reserve_mib == 12000
    assert plan.fits_by_committed == 0
    assert plan.reserve_from == "--reserve"


def test_a_guest_using_little_of_its_memory_can_give_back_and_a_paging_one_needs_more() -> None:
    guests = (
        _guest("idle", 2048, 300, Verdict.OK),
        _guest("busy", 1024, 900, Verdict.OK),
        _guest("swapping", 512, 500, Verdict.PAGING),
        _guest("full", 2048, 2000, Verdict.TIGHT),
        _guest("xen", 512, None, Verdict.NO_STATS),
    )
    plan = plan_capacity(MemoryReport(_host(), guests), 1024)
    assert [(g.name, g.suggest_mib, g.frees_mib) for g in plan.give_back] == [("idle", 512, 1536)]
    assert [n.name for n in plan.needs_more] == ["swapping", "full"]
    swapping, full = plan.needs_more
    assert "dom0 mem set swapping 768M" in swapping.hint
    assert "at its maximum" in full.hint
