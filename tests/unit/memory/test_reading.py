"""`dom0 mem`'s figures and verdicts from balloon reports, and its readings through libvirt's test:// driver."""

from __future__ import annotations

from pathlib import Path

import pytest

from dom0.hypervisor import UriChoice, connect
from dom0.memory.hostside import read_pressure
from dom0.memory.reading import (
    PAGING_KIB_S,
    Reading,
    Verdict,
    build_report,
    read_memory,
    reserve_rule,
    sample_seconds,
)
from dom0.model import BalloonReport, Guest, GuestMemory, GuestState, HostInfo, StatsSource

MIB = 1024


def _guest(name: str = "web1", state: GuestState = GuestState.RUNNING, guest_id: int = 3) -> Guest:
    return Guest(name, f"uuid-{name}", guest_id, state, 512 * MIB, 1024 * MIB, 1, 0)


def _polled(name: str = "web1", *, usable: int, swap_in: int = 0, swap_out: int = 0, at: int = 100) -> GuestMemory:
    report = BalloonReport(
        current_kib=512 * MIB,
        maximum_kib=1024 * MIB,
        available_kib=500 * MIB,
        usable_kib=usable * MIB,
        unused_kib=usable * MIB // 2,
        swap_in_kib=swap_in,
        swap_out_kib=swap_out,
        major_faults=swap_in // 4,
        last_update=at,
    )
    return GuestMemory(_guest(name), report, StatsSource.POLLED, 2, None, float(at))


def _info(hypervisor: str = "QEMU", total: int = 8192, free: int = 4096) -> HostInfo:
    return HostInfo("qemu:///system", "host1", hypervisor, "9.0.0", 4, total * MIB, free * MIB)


def _reading(*guests: GuestMemory, info: HostInfo | None = None, at: float = 0.0) -> Reading:
    return Reading(info or _info(), tuple(guests), None, at)


def test_a_guest_with_room_is_ok_and_its_use_is_what_its_driver_says() -> None:
    report = build_report(_reading(_polled(usable=300)), _reading(_polled(usable=300, at=102), at=2))
    (g,) = report.guests
    assert (g.verdict, g.current_mib, g.max_mib, g.usable_mib, g.used_mib) == (Verdict.OK, 512, 1024, 300, 200)
    assert (g.swap_in_kib_s, g.swap_out_kib_s) == (0.0, 0.0)


def test_a_guest_swapping_faster_than_the_threshold_is_paging_with_its_rates_as_evidence() -> None:
    swapped = int(PAGING_KIB_S * 2 * 4)  # over 2 s of the guest's clock
    before = _polled(usable=100, swap_in=1000, at=100)
    after = _polled(usable=100, swap_in=1000 + swapped, swap_out=4000, at=102)
    (g,) = build_report(_reading(before), _reading(after, at=2)).guests
    assert g.verdict is Verdict.PAGING
    assert g.swap_in_kib_s == swapped / 2
    assert g.swap_out_kib_s == 2000.0
    assert f"in {swapped // 2} KiB/s" in g.why
    assert "dom0 mem set web1" in g.hint


def test_usable_below_a_tenth_is_tight() -> None:
    (g,) = build_report(_reading(_polled(usable=40)), _reading(_polled(usable=40))).guests
    assert g.verdict is Verdict.TIGHT
    assert "usable 40 MiB of 512 MiB (8%)" in g.why


def test_no_rates_when_the_guest_did_not_report_again_and_never_a_made_up_zero() -> None:
    same = _polled(usable=300, swap_in=10, at=100)
    (g,) = build_report(_reading(same), _reading(same, at=2)).guests
    assert g.swap_in_kib_s is None
    assert g.major_faults_s is None


@pytest.mark.parametrize(
    ("source", "state", "words"),
    [
        (StatsSource.NO_DEVICE, GuestState.RUNNING, "no balloon device"),
        (StatsSource.PERIOD_OFF, GuestState.RUNNING, "stats period 0"),
        (StatsSource.POLLED, GuestState.RUNNING, "driver does not answer"),
        (StatsSource.POLLED, GuestState.PAUSED, "paused"),
        (StatsSource.UNSUPPORTED, GuestState.RUNNING, "Xen's balloon driver reports no usage"),
    ],
)
def test_no_stats_says_why_and_how_to_fix(source: StatsSource, state: GuestState, words: str) -> None:
    m = GuestMemory(_guest(state=state), BalloonReport(current_kib=512 * MIB), source, 0, None, 0.0)
    (g,) = build_report(_reading(m), _reading(m)).guests
    assert g.verdict is Verdict.NO_STATS
    assert words in g.why
    assert g.hint
    assert (g.used_mib, g.usable_mib) == (None, None)


def test_on_xen_the_host_row_is_the_hypervisors_and_domain0_is_dom0_not_a_guest() -> None:
    info = _info("Xen", total=16384, free=9000)
    domain0 = GuestMemory(
        _guest("Domain-0", guest_id=0), BalloonReport(current_kib=1024 * MIB), StatsSource.UNSUPPORTED
    )
    web = GuestMemory(
        _guest("web"), BalloonReport(current_kib=512 * MIB, maximum_kib=768 * MIB), StatsSource.UNSUPPORTED
    )
    report = build_report(_reading(domain0, web, info=info), _reading(domain0, web, info=info))
    assert [g.name for g in report.guests] == ["web"]
    assert report.guests[0].host_rss_mib == 512  # a domain's cost is the pages it holds
    h = report.host
    assert (h.total_mib, h.available_mib, h.dom0_used_mib) == (16384, 9000, 1024)
    assert "xl info free_memory" in h.available_means
    assert (h.committed_max_mib, h.committed_current_mib) == (768, 512)
    assert h.reserve_mib == reserve_rule(1024) == 1024 + 256


def test_reserve_rule_is_dom0s_use_plus_a_quarter_and_at_least_256_mib() -> None:
    assert reserve_rule(400) == 656
    assert reserve_rule(4000) == 5000
    assert reserve_rule(None) == 1024


def test_the_sample_waits_one_stats_period_when_a_guest_reports_but_never_past_the_limit() -> None:
    assert sample_seconds(_reading(_polled(usable=1)), 1.0) == 2.5
    assert sample_seconds(_reading(), 1.0) == 1.0
    assert sample_seconds(_reading(_polled(usable=1)), 0) == 0
    slow = GuestMemory(_guest(), BalloonReport(usable_kib=1), StatsSource.POLLED, 60, None, 0.0)
    assert sample_seconds(_reading(slow), 1.0) == 5.0
    unpolled = GuestMemory(_guest(), BalloonReport(), StatsSource.PERIOD_OFF, 0, None, 0.0)
    assert sample_seconds(_reading(unpolled), 1.0) == 1.0
    assert sample_seconds(_reading(unpolled), 1.0, {unpolled.guest.uuid}) == 2.5  # just turned on: wait for it


def test_pressure_is_read_from_psi_and_absent_without_it(tmp_path: Path) -> None:
    psi = tmp_path / "memory"
    psi.write_text("some avg10=12.50 avg60=3.00 avg300=1.00 total=5\nfull avg10=4.25 avg60=0.00 avg300=0.00 total=1\n")
    assert read_pressure(psi) == (12.5, 4.25)
    assert read_pressure(tmp_path / "missing") == (None, None)
    psi.write_text("some avg10=oops\n" + "x" * 10000)
    assert read_pressure(psi) == (None, None)  # garbled or too long: not a reading


def test_read_memory_on_the_test_driver_turns_the_stats_period_on_and_says_so() -> None:
    hv = connect(UriChoice("test:///default", "unit test"))
    try:
        report = read_memory(hv, sample_s=0)
    finally:
        hv.close()
    (g,) = report.guests
    assert (g.name, g.current_mib, g.max_mib) == ("test", 2048, 8192)
    assert g.verdict is Verdict.NO_STATS
    assert "just turned on" in g.why
    assert any("turned on memory statistics" in n and "test" in n for n in report.notes)
    assert report.host.total_mib > 0
