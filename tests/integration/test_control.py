"""Controlling real guests: create, start, shutdown, reboot, pause/resume, destroy, and the errors users meet."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from . import guestkit
from .conftest import Dom0, MakeGuest, TestGuest, dom0_program, virsh


def _state(dom0: Dom0, ref: str) -> dict[str, object]:
    (entry,) = json.loads(dom0("list", "--json", ref).stdout)
    assert isinstance(entry, dict)
    return entry


def _assert_one_line_error(proc: subprocess.CompletedProcess[str], exit_code: int, *words: str) -> None:
    """The CLI's error contract: the exit code, `dom0: error: ...` on one line, a hint line, no traceback."""
    assert proc.returncode == exit_code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith("dom0: error: "), proc.stderr
    assert lines[1].startswith("  hint: "), proc.stderr
    assert lines[1].removeprefix("  hint: ").strip(), proc.stderr
    for word in words:
        assert word in lines[0], (word, proc.stderr)


def _ticks(guest: TestGuest) -> int:
    return guest.console_text().count("tick ")


def test_create_from_file_and_refuse_a_second_create(make_guest: MakeGuest, dom0: Dom0) -> None:
    g = make_guest(start=False)  # defined, so `create` of the same name must be refused
    refused = dom0("create", str(g.xml_path), check=False)
    _assert_one_line_error(refused, 1, g.name, "already defined")
    assert f"dom0 start {g.name}" in refused.stderr

    virsh("undefine", g.name)
    created = dom0("create", str(g.xml_path))
    assert g.name in created.stdout
    g.wait_console(guestkit.READY, timeout=120)
    entry = _state(dom0, g.name)
    assert (entry["state"], entry["uuid"]) == ("running", g.uuid)

    again = dom0("create", str(g.xml_path), check=False)
    _assert_one_line_error(again, 1, g.name, "already runs")
    assert g.state() == "running"

    # a transient guest is gone once it stops
    dom0("destroy", "--yes", g.name)
    assert g.name not in dom0("list", "--all").stdout


def test_create_of_missing_or_bad_file(tmp_path: Path, dom0: Dom0) -> None:
    missing = dom0("create", str(tmp_path / "nope.xml"), check=False)
    _assert_one_line_error(missing, 2, "nope.xml")
    bad = tmp_path / "bad.xml"
    bad.write_text("this is not xml")
    _assert_one_line_error(dom0("create", str(bad), check=False), 1)


def test_start_then_orderly_shutdown_with_wait(make_guest: MakeGuest, dom0: Dom0) -> None:
    g = make_guest(start=False)
    started = dom0("start", g.name)
    assert f"started {g.name}" in started.stdout
    g.wait_console(guestkit.READY, timeout=120)

    again = dom0("start", g.name, check=False)
    _assert_one_line_error(again, 1, "already running")

    done = dom0("shutdown", "--wait", "--timeout", "90", g.uuid)
    assert f"{g.name} shut down" in done.stdout
    assert g.state() == "shut off"
    assert "powering off" in g.console_text()  # it went down through its own power-button handler
    off = json.loads(dom0("list", "--all", "--json", g.name).stdout)[0]
    assert (off["state"], off["id"]) == ("shutoff", None)

    not_running = dom0("shutdown", g.name, check=False)
    _assert_one_line_error(not_running, 1, "not running")


def test_shutdown_wait_times_out_on_a_guest_that_ignores_acpi(make_guest: MakeGuest, dom0: Dom0) -> None:
    g = make_guest(mode="idle,noacpi")
    began = time.monotonic()
    proc = dom0("shutdown", "--wait", "--timeout", "5", virsh("domid", g.name).strip(), check=False)
    took = time.monotonic() - began
    _assert_one_line_error(proc, 1, g.name, "still runs")
    assert 5 <= took < 60
    assert g.state() == "running"
    assert _state(dom0, g.name)["state"] == "running"


def test_reboot_boots_the_guest_again(make_guest: MakeGuest, dom0: Dom0) -> None:
    g = make_guest()
    proc = dom0("reboot", g.uuid)
    assert f"asked {g.name} to reboot" in proc.stdout
    g.wait_console(guestkit.READY, timeout=120, count=2)
    assert g.state() == "running"


def test_pause_stops_the_guest_and_resume_lets_it_run(make_guest: MakeGuest, dom0: Dom0) -> None:
    g = make_guest()
    dom_id = virsh("domid", g.name).strip()
    g.wait_console("tick 1", timeout=30)

    assert f"paused {g.name}" in dom0("pause", dom_id).stdout
    entry = _state(dom0, g.name)
    assert (entry["state"], entry["state_flags"]) == ("paused", "--p---")
    assert "--p---" in dom0("list").stdout
    ticks = _ticks(g)
    time.sleep(7)  # a running guest prints a tick every 5 s
    assert _ticks(g) == ticks

    _assert_one_line_error(dom0("pause", g.name, check=False), 1, "already paused")

    assert f"resumed {g.name}" in dom0("resume", g.uuid).stdout
    assert _state(dom0, g.name)["state"] == "running"
    g.wait_console(f"tick {ticks + 1}", timeout=30)
    _assert_one_line_error(dom0("resume", g.name, check=False), 1, "not paused")


def test_destroy_refuses_without_yes_when_not_on_a_terminal(make_guest: MakeGuest, dom0: Dom0) -> None:
    g = make_guest()
    refused = dom0("destroy", g.name, check=False)
    _assert_one_line_error(refused, 2, g.name)
    assert "--yes" in refused.stderr
    assert g.state() == "running"

    done = dom0("destroy", "--yes", g.name)
    assert f"destroyed {g.name}" in done.stdout
    assert g.state() == "shut off"  # persistent: still defined, no longer running


@pytest.mark.parametrize(
    "args",
    [
        ("list", "dom0test-no-such-guest"),
        ("list", "--long", "dom0test-no-such-guest"),
        ("start", "dom0test-no-such-guest"),
        ("shutdown", "--wait", "dom0test-no-such-guest"),
        ("reboot", "dom0test-no-such-guest"),
        ("pause", "dom0test-no-such-guest"),
        ("resume", "dom0test-no-such-guest"),
        ("destroy", "--yes", "dom0test-no-such-guest"),
        ("destroy", "dom0test-no-such-guest"),
    ],
)
def test_unknown_guest_is_a_one_line_error_with_hint(dom0: Dom0, args: tuple[str, ...]) -> None:
    proc = dom0(*args, check=False)
    _assert_one_line_error(proc, 1, "dom0test-no-such-guest")
    assert "dom0 list --all" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("uri", "hint_words"),
    [
        ("qemu+unix:///system?socket=/nonexistent", "libvirtd"),
        ("bogus:///", "qemu:///system"),
    ],
)
def test_unreachable_hypervisor_is_a_one_line_error_with_hint(dom0: Dom0, uri: str, hint_words: str) -> None:
    for args in (("list",), ("destroy", "--yes", "dom0test-x"), ("shutdown", "dom0test-x")):
        proc = dom0("-c", uri, *args, check=False)
        _assert_one_line_error(proc, 1, uri, "from -c/--connect")
        assert hint_words in proc.stderr.splitlines()[1]


def test_hypervisor_from_environment_is_named_in_the_error(dom0: Dom0) -> None:
    proc = subprocess.run(
        [*dom0_program(), "list"],
        env={"PATH": "/usr/bin:/bin", "DOM0_CONNECT": "bogus:///"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    _assert_one_line_error(proc, 1, "bogus:///", "$DOM0_CONNECT")
