"""Host checks against crafted /proc/pressure text, a save directory's room and a daemon that never answers."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from dom0.doctor import hostchecks
from dom0.doctor.findings import Severity
from dom0.errors import Dom0Error
from dom0.hypervisor import Hypervisor, UriChoice
from dom0.hypervisor.libvirt.backend import LibvirtHypervisor
from dom0.model import HostInfo


def _pressure(tmp_path: Path, some: float, full: float) -> Path:
    path = tmp_path / "memory"
    path.write_text(
        f"some avg10={some:.2f} avg60=1.00 avg300=0.50 total=123\n"
        f"full avg10={full:.2f} avg60=0.00 avg300=0.00 total=9\n"
    )
    return path


@pytest.mark.parametrize(
    ("some", "full", "expected"),
    [(0.5, 0.0, []), (12.0, 1.0, [Severity.WARNING]), (40.0, 7.5, [Severity.CRITICAL])],
)
def test_pressure_thresholds(tmp_path: Path, some: float, full: float, expected: list[Severity]) -> None:
    found, checked = hostchecks.pressure(_pressure(tmp_path, some, full))
    assert [f.severity for f in found] == expected
    assert f"some avg10 {some:.1f}%" in checked


def test_no_psi_is_said_not_flagged(tmp_path: Path) -> None:
    found, checked = hostchecks.pressure(tmp_path / "absent")
    assert found == []
    assert "not available" in checked


def _statvfs(free_bytes: int):  # type: ignore[no-untyped-def]
    real = os.statvfs("/")

    def fake(_path: Path) -> os.statvfs_result:
        values = list(real)
        values[1] = 4096  # f_frsize
        values[4] = free_bytes // 4096  # f_bavail
        return os.statvfs_result(values)

    return fake


def test_save_directory_too_small_says_raw_and_compressed(tmp_path: Path) -> None:
    found, _ = hostchecks.save_room(tmp_path, 4 << 20, 2, statvfs=_statvfs(1 << 30))  # 4 GiB of guests, 1 GiB free
    [finding] = found
    assert finding.severity is Severity.WARNING
    assert "hold 4.0 GiB" in finding.evidence
    assert "30-60%" in finding.evidence
    assert hostchecks.save_room(tmp_path, 512 << 10, 1, statvfs=_statvfs(1 << 30))[0] == []


def test_missing_save_directory_is_a_note(tmp_path: Path) -> None:
    [finding], _ = hostchecks.save_room(tmp_path / "nope", 1024, 1)
    assert finding.severity is Severity.NOTE


class Hung(LibvirtHypervisor):
    """A hypervisor whose daemon never answers (the call blocks until the test releases it)."""

    release = threading.Event()

    def host(self) -> HostInfo:
        self.release.wait(30)
        # Never into libvirt once released: the test has closed the connection by then (a call on a closed
        # connection is a use after free in libvirt's C library).
        raise Dom0Error("released by the test")


def test_daemon_that_does_not_answer_is_critical_and_returns_in_time() -> None:
    hv: Hypervisor = Hung.open(UriChoice("test:///default", "test"))
    try:
        found, answered, _checked = hostchecks.answers(hv, 0.3)
    finally:
        Hung.release.set()
        hv.close()
    assert not answered
    [finding] = found
    assert (finding.severity, finding.evidence) == (Severity.CRITICAL, "libvirtd did not answer within 0.3 s")


def test_leftover_save_work_directory_without_a_daemon_is_a_warning(tmp_path: Path) -> None:
    work = tmp_path / ".dom0-save-web-abcd1234"
    work.mkdir(mode=0o700)
    os.mkfifo(work / "stream", 0o600)
    (work / "lock").write_text("")
    proc = tmp_path / "proc"
    proc.mkdir()
    [finding], _ = hostchecks.waiting_saves(tmp_path, proc)
    assert (finding.severity, finding.subject, finding.check) == (Severity.WARNING, "web", "save-fifo")


def test_running_save_holding_its_lock_is_not_reported(tmp_path: Path) -> None:
    import fcntl

    work = tmp_path / ".dom0-save-web-abcd1234"
    work.mkdir(mode=0o700)
    os.mkfifo(work / "stream", 0o600)
    with open(work / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert hostchecks.waiting_saves(tmp_path, tmp_path)[0] == []
