"""`dom0 host stop` / `dom0 host start` on real QEMU guests: the host-shutdown job, with per-guest exceptions."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Dom0, MakeGuest, TestGuest, virsh
from .resume import assert_resumed, ticks


@pytest.fixture
def host_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    path = Path("/var/tmp/dom0-tests/host") / request.node.name
    subprocess.run(["rm", "-rf", str(path)], check=True)
    path.mkdir(parents=True)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


def _autostart(g: TestGuest) -> bool:
    return "enable" in next(ln for ln in virsh("dominfo", g.name).splitlines() if ln.startswith("Autostart"))


def test_host_stop_saves_shuts_down_and_never_destroys_then_start_brings_back(
    dom0: Dom0, make_guest: MakeGuest, host_dir: Path
) -> None:
    saved, polite, stubborn = make_guest(), make_guest(), make_guest(mode="idle,noacpi")
    for g in (saved, polite, stubborn):
        g.wait_console("tick 2", timeout=90)
    virsh("autostart", saved.name)
    virsh("autostart", polite.name)
    config = host_dir / "host.toml"
    config.write_text(
        f"""[save]
directory = "{host_dir / "images"}"
[stop]
shutdown_timeout = 8
[guests."{polite.name}"]
on_stop = "shutdown"
[guests."{stubborn.name}"]
on_stop = "shutdown"
"""
    )
    names = [saved.name, polite.name, stubborn.name]

    plan = json.loads(dom0("host", "stop", "--config", str(config), "--dry-run", "--json", *names).stdout)
    assert {g["name"]: g["action"] for g in plan["guests"]} == {
        saved.name: "save",
        polite.name: "shutdown",
        stubborn.name: "shutdown",
    }
    assert all(g.state() == "running" for g in (saved, polite, stubborn))  # a dry run changes nothing

    r = dom0("host", "stop", "--config", str(config), "--json", *names, check=False, timeout=300)
    before, last_tick = saved.console_text(), max(ticks(saved.console_text()))
    results = {g["name"]: g["result"] for g in json.loads(r.stdout)["guests"]}
    assert results == {saved.name: "saved", polite.name: "shut down", stubborn.name: "still running"}
    assert r.returncode == 1  # the stubborn guest is reported...
    assert stubborn.state() == "running"  # ...and never destroyed
    saved.wait_state("shut off")
    polite.wait_state("shut off")
    # While the image waits, libvirtd must not boot the guest afresh at its next start.
    assert not _autostart(saved)

    plan = json.loads(dom0("host", "start", "--config", str(config), "--dry-run", "--json", *names).stdout)
    assert {g["name"]: g["action"] for g in plan["guests"]} == {saved.name: "restore", polite.name: "start"}

    r = dom0("host", "start", "--config", str(config), "--json", *names, timeout=300)
    results = {g["name"]: g["result"] for g in json.loads(r.stdout)["guests"]}
    assert results == {saved.name: "restored", polite.name: "started"}
    assert_resumed(saved, before, last_tick)  # where it left off
    polite.wait_state("running")
    assert _autostart(saved)  # back on once it runs again
    assert list((host_dir / "images").iterdir()) == []
