"""Save and restore through the Hypervisor protocol (the raw building blocks), on real QEMU guests via libvirt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dom0.hypervisor import Hypervisor, UriChoice, connect
from dom0.model import GuestState

from .conftest import URI, MakeGuest, TestGuest
from .resume import assert_resumed, ticks

SAVE_DIR = Path("/var/tmp/dom0-tests")


@pytest.fixture
def hv() -> Iterator[Hypervisor]:
    h = connect(UriChoice(URI, "integration test"))
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def save_path(request: pytest.FixtureRequest) -> Iterator[Path]:
    SAVE_DIR.mkdir(parents=True, exist_ok=True)
    path = SAVE_DIR / f"{request.node.name}.save"
    path.unlink(missing_ok=True)
    yield path
    path.unlink(missing_ok=True)


def _save_after_ticks(hv: Hypervisor, g: TestGuest, path: Path) -> tuple[str, int]:
    """Let the guest tick a little, save it; the console text and last tick number at that moment."""
    g.wait_console("tick 2", timeout=60)
    hv.save(g.name, str(path))
    before = g.console_text()
    return before, max(ticks(before))


def test_save_stops_the_guest_and_restore_resumes_it(make_guest: MakeGuest, hv: Hypervisor, save_path: Path) -> None:
    g = make_guest()
    before, last_tick = _save_after_ticks(hv, g, save_path)
    assert save_path.stat().st_size > 1 << 20  # the guest's memory is in there
    assert hv.guest(g.uuid).state == GuestState.SHUTOFF
    g.wait_state("shut off")

    restored = hv.restore(str(save_path))
    assert restored.uuid == g.uuid
    assert restored.state.is_active
    assert restored.state != GuestState.PAUSED
    assert_resumed(g, before, last_tick)


def test_restore_paused_keeps_it_paused_until_resumed(make_guest: MakeGuest, hv: Hypervisor, save_path: Path) -> None:
    g = make_guest()
    before, last_tick = _save_after_ticks(hv, g, save_path)
    restored = hv.restore(str(save_path), paused=True)
    assert restored.state == GuestState.PAUSED
    g.wait_state("paused")
    hv.resume(g.name)
    assert_resumed(g, before, last_tick)
