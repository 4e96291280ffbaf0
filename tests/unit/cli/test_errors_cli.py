"""Errors through the real `dom0` command: one line, a hint, the right exit code, never a traceback."""

from __future__ import annotations

import io
import sys

import pytest
from unitkit import Result, dom0

from dom0.cli.main import main
from dom0.hypervisor import UriChoice, connect
from dom0.model import GuestState


def _assert_error(r: Result, rc: int, *, message: str, hint: str = "") -> None:
    assert r.rc == rc, (r.rc, r.err)
    assert r.out == ""
    assert "Traceback" not in r.err
    lines = r.err.splitlines()
    assert len(lines) == 2, r.err
    assert lines[0].startswith("dom0: error: ")
    assert message in lines[0]
    assert lines[1].strip().startswith("hint: ")
    assert hint in lines[1]


def test_unknown_guest() -> None:
    r = dom0("-c", "test:///default", "list", "no-such-guest")
    _assert_error(r, 1, message="no-such-guest", hint="dom0 list --all")


@pytest.mark.parametrize("command", ["start", "pause", "resume", "shutdown", "reboot", "destroy"])
def test_unknown_guest_in_every_control_command(command: str) -> None:
    r = dom0("-c", "test:///default", command, "no-such-guest", "--yes" if command == "destroy" else "--json")
    _assert_error(r, 1, message="no guest named 'no-such-guest'")


def test_bad_uri() -> None:
    r = dom0("-c", "bogus:///", "list")
    _assert_error(r, 1, message="bogus:///", hint="qemu:///system")


def test_unreachable_daemon_names_libvirtd() -> None:
    uri = "qemu+unix:///system?socket=/nonexistent"
    r = dom0("-c", uri, "list")
    _assert_error(r, 1, message=f"cannot connect to {uri}", hint="libvirtd")


def test_destroy_without_yes_on_a_pipe_is_refused() -> None:
    r = dom0("-c", "test:///default", "destroy", "test")
    _assert_error(r, 2, message="refusing to destroy test", hint="--yes")


def test_destroy_refused_leaves_the_guest_running(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # test:///default keeps one shared state while any connection to it is open; hold one to look afterwards.
    hv = connect(UriChoice("test:///default", "test"))
    try:
        assert hv.guest("test").state == GuestState.RUNNING
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        assert main(["-c", "test:///default", "destroy", "test"]) == 2
        assert "refusing to destroy" in capsys.readouterr().err
        assert hv.guest("test").state == GuestState.RUNNING
        # The same guest, with --yes, is destroyed: the refusal above was the guard, not a failure.
        assert main(["-c", "test:///default", "destroy", "--yes", "test"]) == 0
        assert hv.guest("test").state == GuestState.SHUTOFF
    finally:
        hv.close()


def test_starting_a_running_guest_says_so() -> None:
    r = dom0("-c", "test:///default", "start", "test")
    _assert_error(r, 1, message="already running", hint="dom0 list test")


@pytest.mark.parametrize(
    "args",
    [
        ["list", "--bogus"],
        [],
        ["no-such-command"],
        ["explain"],
        ["-c", "test:///default", "shutdown", "test", "--timeout", "0"],
        ["-c", "test:///default", "shutdown", "test", "--timeout", "soon"],
        ["-c", "test:///default", "create", "/nonexistent/guest.xml"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    r = dom0(*args)
    assert r.rc == 2, (r.rc, r.err)
    assert "Traceback" not in r.err
    assert "error:" in r.err
