"""libvirt's balloon statistics read as dom0's: which reports still describe the guest, and why one has none."""

from __future__ import annotations

from dom0.hypervisor.libvirt.memstats import balloon_report, hypervisor_side, is_fresh, qemu_pid, stats_source
from dom0.model import StatsSource

NOW = 1_800_000_000.0


def test_a_report_from_boot_is_stale_and_keeps_only_what_the_hypervisor_knows() -> None:
    stats = {
        "balloon.current": 393216,
        "balloon.maximum": 393216,
        "balloon.usable": 300000,
        "balloon.rss": 200000,
        "balloon.last-update": int(NOW - 600),
    }
    report = balloon_report(stats)
    assert report.from_guest
    assert not is_fresh(report, NOW)
    assert is_fresh(report, NOW - 596)
    kept = hypervisor_side(report)
    assert (kept.current_kib, kept.maximum_kib, kept.rss_kib, kept.usable_kib) == (393216, 393216, 200000, None)
    assert not kept.from_guest


def test_a_slow_period_keeps_its_reports_fresh_for_three_periods() -> None:
    report = balloon_report({"balloon.usable": 1, "balloon.last-update": int(NOW - 100)})
    assert not is_fresh(report, NOW)
    assert is_fresh(report, NOW, period_s=60)


def test_fields_libvirt_left_out_stay_unknown() -> None:
    report = balloon_report({"balloon.current": 1024, "balloon.swap_in": -1})
    assert (report.current_kib, report.swap_in_kib, report.usable_kib, report.last_update) == (1024, None, None, None)


def test_the_live_xml_says_whether_the_balloon_is_polled() -> None:
    def xml(balloon: str) -> str:
        return f"<domain><devices>{balloon}</devices></domain>"

    polled = xml("<memballoon model='virtio'><stats period='5'/></memballoon>")
    assert stats_source(polled, "QEMU") == (StatsSource.POLLED, 5)
    assert stats_source(xml("<memballoon model='virtio'/>"), "QEMU") == (StatsSource.PERIOD_OFF, 0)
    assert stats_source(xml("<memballoon model='none'/>"), "QEMU") == (StatsSource.NO_DEVICE, 0)
    assert stats_source(xml(""), "QEMU") == (StatsSource.NO_DEVICE, 0)
    assert stats_source(polled, "Xen") == (StatsSource.UNSUPPORTED, 0)


def test_no_pid_file_is_read_for_a_name_that_would_leave_libvirts_directory() -> None:
    assert qemu_pid("qemu:///system", "../../etc/passwd") is None
    assert qemu_pid("qemu:///system", ".hidden") is None
    assert qemu_pid("test:///default", "test") is None
