"""libvirt's bulk statistics read as dom0's values: a guest's list row and its balloon report, and whether a guest
can report its memory at all (its <memballoon> device and stats period)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

from dom0.errors import Dom0Error
from dom0.filedata import read_regular
from dom0.model import BalloonReport, StatsSource

# The balloon group's keys in libvirt's bulk statistics (virConnectGetAllDomainStats) and dom0's names for them.
_BALLOON_FIELDS = {
    "balloon.current": "current_kib",
    "balloon.maximum": "maximum_kib",
    "balloon.unused": "unused_kib",
    "balloon.available": "available_kib",
    "balloon.usable": "usable_kib",
    "balloon.disk_caches": "disk_caches_kib",
    "balloon.swap_in": "swap_in_kib",
    "balloon.swap_out": "swap_out_kib",
    "balloon.major_fault": "major_faults",
    "balloon.minor_fault": "minor_faults",
    "balloon.rss": "rss_kib",
    "balloon.last-update": "last_update",
}

# The keys a list row needs; a driver that leaves one out (test://) is asked with virDomainGetInfo instead.
ROW_KEYS = ("state.state", "balloon.current", "balloon.maximum", "vcpu.current", "cpu.time")

# A guest's report older than this (by the host's clock) may not be its state now: the balloon driver answers
# once when it loads even while nobody polls it, and a guest whose driver stopped answering keeps its last report.
# Such a guest's live XML then says which (with a long stats period, reports stay fresh for 3 periods). Short,
# so that every guest polled at dom0's own 2 s period is read from the bulk call alone.
FRESH_S = 5

# A PID file is a number and a newline; anything longer is not libvirt's.
_PID_FILE_LIMIT = 64


def balloon_report(stats: Mapping[str, object]) -> BalloonReport:
    """The balloon group of one guest's bulk statistics; fields libvirt left out stay None."""
    values: dict[str, int] = {}
    for key, name in _BALLOON_FIELDS.items():
        value = stats.get(key)
        if isinstance(value, int) and value >= 0:
            values[name] = value
    return BalloonReport(**values)


def is_fresh(report: BalloonReport, now: float, period_s: int = 0) -> bool:
    """Whether the guest made this report recently enough to describe it now (`now`: the host's epoch seconds)."""
    if report.last_update is None:
        return False
    return now - report.last_update <= max(FRESH_S, 3 * period_s + FRESH_S)


def hypervisor_side(report: BalloonReport) -> BalloonReport:
    """Only what the hypervisor itself knows (balloon size, maximum, QEMU's RSS), without a stale report's guest
    figures: an old "usable" shown as today's would hide a guest that has since run out."""
    return BalloonReport(current_kib=report.current_kib, maximum_kib=report.maximum_kib, rss_kib=report.rss_kib)


def stats_source(xml: str, driver: str) -> tuple[StatsSource, int]:
    """Whether a running guest's balloon driver is asked for statistics, from its live XML, and how often (s).

    Xen's libxl driver keeps no guest-side statistics whatever the XML says.
    """
    if driver.lower() == "xen":
        return StatsSource.UNSUPPORTED, 0
    try:
        balloon = ET.fromstring(xml).find("devices/memballoon")
    except ET.ParseError:
        return StatsSource.NO_DEVICE, 0
    if balloon is None or balloon.get("model", "none") == "none":
        return StatsSource.NO_DEVICE, 0
    stats = balloon.find("stats")
    period = stats.get("period", "0") if stats is not None else "0"
    seconds = int(period) if period.isdigit() else 0
    return (StatsSource.POLLED, seconds) if seconds > 0 else (StatsSource.PERIOD_OFF, 0)


def qemu_pid(uri: str, name: str) -> int | None:
    """The PID of the QEMU process libvirt started for guest `name`, from the PID file libvirt keeps, or None."""
    if uri.startswith("qemu:///system"):
        run_dir = Path("/run/libvirt/qemu")
    elif uri.startswith("qemu:///session"):
        runtime = os.environ.get("XDG_RUNTIME_DIR", "")
        if not runtime:
            return None
        run_dir = Path(runtime) / "libvirt" / "qemu" / "run"
    else:
        return None
    if "/" in name or name.startswith("."):
        return None
    try:
        text = read_regular(run_dir / f"{name}.pid", _PID_FILE_LIMIT).decode("ascii", "replace").strip()
    except (OSError, Dom0Error):
        return None
    return int(text) if text.isdigit() and int(text) > 1 else None
