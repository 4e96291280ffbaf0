"""A guest another dom0 run is changing: every command that changes it refuses at once naming that run, or waits
with --wait-lock; commands that only read never wait. On libvirt's test:// driver, the lock held by this process."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from exportkit import UUID as EXPORT_UUID
from exportkit import make_export
from unitkit import Result, dom0

from dom0.locks import Held, LockKey, hold

TEST = ("-c", "test:///default")
GUEST = LockKey("6695eb01-f6a4-8304-79aa-97f2502e193f", "test")  # the test driver's own guest "test"


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "locks"
    monkeypatch.setenv("DOM0_LOCK_DIR", str(directory))  # this process and the dom0 runs it starts meet there
    return directory


@pytest.fixture
def saving() -> Iterator[Held]:
    """The guest "test" held as `dom0 save` holds it."""
    held = hold([GUEST], "save")
    yield held
    held.release()


def _timed(*args: str) -> tuple[Result, float]:
    began = time.monotonic()
    r = dom0(*args, timeout=30)
    return r, time.monotonic() - began


def _refused_naming_this_process(r: Result, took: float) -> None:
    assert r.rc == 1, (r.rc, r.out, r.err)
    lines = r.err.splitlines()
    assert re.fullmatch(rf"dom0: error: test is being saved by dom0 pid {os.getpid()} since \d\d:\d\d:\d\d", lines[0])
    assert lines[1:] == ["  hint: try again when it ends, or add --wait-lock to wait for it"]
    assert r.out == ""  # nothing was done, so nothing to report
    assert took < 5  # at once: a dom0 start-up, no wait


def test_shutdown_of_a_guest_being_saved_is_refused_naming_the_save(saving: Held) -> None:
    r, took = _timed(*TEST, "shutdown", "test")
    _refused_naming_this_process(r, took)


def test_shutdown_with_wait_lock_goes_ahead_once_the_save_lets_go(saving: Held) -> None:
    threading.Timer(1.0, saving.release).start()
    r, took = _timed(*TEST, "shutdown", "test", "--wait-lock=5")
    assert r.rc == 0, r.err
    assert r.out == "asked test to shut down (use --wait to wait for it)\n"
    assert r.err.startswith(f"waiting for test: it is being saved by dom0 pid {os.getpid()} since ")
    assert 0.9 < took < 5


def test_a_wait_lock_too_short_refuses_saying_it_waited(saving: Held) -> None:
    r, took = _timed(*TEST, "shutdown", "test", "--wait-lock=0.5")
    assert r.rc == 1
    assert took > 0.5
    assert "dom0: error: test is being saved by dom0 pid" in r.err
    assert "hint: still held after waiting 0.5 s" in r.err
    assert r.out == ""


@pytest.mark.parametrize(
    "command",
    [
        ("start", "test"),
        ("reboot", "test"),
        ("pause", "test"),
        ("resume", "test"),
        ("shutdown", "--wait", "--timeout", "5", "test"),
        ("destroy", "--yes", "test"),
        ("mem", "set", "test", "1G"),
        ("clone", "test", "copy"),
        ("image", "adapt", "test", "--for", "kvm"),
        ("image", "hints", "test"),
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_every_command_that_changes_the_guest_is_refused_before_touching_it(
    saving: Held, command: tuple[str, ...]
) -> None:
    r, took = _timed(*TEST, *command)
    _refused_naming_this_process(r, took)


def test_export_of_a_guest_being_saved_writes_nothing(saving: Held, tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    r, took = _timed(*TEST, "export", "test", str(media))
    _refused_naming_this_process(r, took)
    assert list(media.iterdir()) == []


def test_clone_dry_run_takes_no_lock(saving: Held) -> None:
    r = dom0(*TEST, "clone", "--dry-run", "test", "copy", timeout=30)
    # it gets as far as reading the disks (which the test driver's guest does not have)
    assert "/guest/diskimage1: no such file" in r.err


def test_an_import_keeping_the_uuid_is_refused_while_another_import_of_it_runs(tmp_path: Path) -> None:
    export = make_export(tmp_path)
    store = tmp_path / "store"
    store.mkdir()
    with hold([LockKey(EXPORT_UUID, "web")], "import"):
        r = dom0(*TEST, "import", str(export), "--storage", str(store), timeout=30)
        assert r.rc == 1, r.err
        assert f"dom0: error: web is being imported by dom0 pid {os.getpid()}" in r.err
        assert list(store.iterdir()) == []
        # a renamed copy gets a UUID of its own: nothing to wait for
        r = dom0(*TEST, "import", str(export), "--storage", str(store), "--name", "copy", timeout=30)
        assert r.rc == 0, r.err


def test_reading_commands_answer_at_once_while_the_guest_is_locked(saving: Held) -> None:
    for args in (("list", "--long"), ("mem", "--sample", "0"), ("doctor",), ("image", "inspect", "test")):
        r, took = _timed(*TEST, *args)
        assert "is being saved" not in r.err, args
        assert "waiting for" not in r.err, args
        assert took < 10, args
    r = dom0(*TEST, "list", "--long", timeout=30)
    line = rf"^  lock        being saved by dom0 pid {os.getpid()} since \d\d:\d\d:\d\d \(.*pytest.*\)$"
    assert re.search(line, r.out, re.M), r.out
    r = dom0(*TEST, "list", "--long", "--json", timeout=30)
    (guest,) = json.loads(r.out)
    assert guest["lock"]["pid"] == os.getpid()
    assert guest["lock"]["action"] == "save"


def test_list_long_shows_no_lock_for_a_free_guest() -> None:
    r = dom0(*TEST, "list", "--long", timeout=30)
    assert "  lock  " not in r.out
    r = dom0(*TEST, "list", "--long", "--json", timeout=30)
    (guest,) = json.loads(r.out)
    assert guest["lock"] is None
