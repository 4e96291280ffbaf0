"""diagnose() on libvirt's test:///default driver: a paused guest is flagged, a quiet host is not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dom0.doctor import Severity, diagnose
from dom0.hypervisor import Hypervisor, UriChoice, connect
from dom0.saves.hostconfig import HostConfig, OnStop


@pytest.fixture
def hv() -> Iterator[Hypervisor]:
    h = connect(UriChoice("test:///default", "test"))
    try:
        yield h
    finally:
        h.close()


def test_paused_guest_is_a_warning(hv: Hypervisor, tmp_path: Path) -> None:
    hv.pause("test")
    result = diagnose(hv, config=HostConfig(), config_source="host.toml", save_dir=tmp_path, sample_s=0)
    states = [f for f in result.findings if f.check == "state"]
    assert [(f.severity, f.subject) for f in states] == [(Severity.WARNING, "test")]
    assert "paused" in states[0].evidence
    assert result.failed


def test_running_guest_alone_is_no_problem(hv: Hypervisor, tmp_path: Path) -> None:
    result = diagnose(hv, config=HostConfig(), config_source="host.toml", save_dir=tmp_path, sample_s=0)
    assert not result.failed, result.findings
    assert any("1 guests" in c for c in result.checked)


def test_host_toml_guest_that_is_not_running(hv: Hypervisor, tmp_path: Path) -> None:
    hv.destroy("test")
    config = HostConfig(on_stop={"test": OnStop.SAVE, "left": OnStop.LEAVE})
    result = diagnose(hv, config=config, config_source="/etc/dom0/host.toml", save_dir=tmp_path, sample_s=0)
    [finding] = [f for f in result.findings if f.check == "not-running"]
    assert finding.subject == "test"
    assert 'on_stop = "save"' in finding.evidence
    assert "shut off" in finding.evidence
