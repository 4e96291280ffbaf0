"""Per-guest locks between real processes: refusals name the holder, the kernel drops a killed run's lock, waits
end when the holder lets go, and a hostile lock directory or file is refused in one line, never followed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dom0.errors import Dom0Error
from dom0.locks import GuestBusy, LockKey, hold, holder_of

WEB = LockKey("6a1c0f2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "web")
DB = LockKey("0b2c4d6e-8f01-4234-9567-89abcdef0123", "db")

# A second dom0 process: takes the locks named in argv[1] (JSON), says "held", keeps them until its stdin closes
# or for argv[3] seconds when that is given, then says "released" and waits for stdin to close.
_HOLDER = """
import json, sys, time
from dom0.locks import LockKey, hold
keys = [LockKey(u, n) for u, n in json.loads(sys.argv[1])]
held = hold(keys, sys.argv[2])
print("held", flush=True)
if len(sys.argv) > 3:
    time.sleep(float(sys.argv[3]))
else:
    sys.stdin.read()
held.release()
print("released", flush=True)
sys.stdin.read()
"""


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "locks"
    monkeypatch.setenv("DOM0_LOCK_DIR", str(directory))
    return directory


class HolderProcess:
    def __init__(self, keys: list[LockKey], action: str, release_after: float | None = None) -> None:
        argv = [sys.executable, "-c", _HOLDER, json.dumps([[k.uuid, k.name] for k in keys]), action]
        if release_after is not None:
            argv.append(str(release_after))
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line == "held\n", f"the holder did not take its locks: {line!r}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def end(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


@pytest.fixture
def holders() -> Iterator[list[HolderProcess]]:
    started: list[HolderProcess] = []
    yield started
    for h in started:
        if h.proc.poll() is None:
            h.proc.kill()
        h.proc.wait(timeout=10)


def _holding(holders: list[HolderProcess], keys: list[LockKey], action: str, after: float | None = None) -> int:
    h = HolderProcess(keys, action, after)
    holders.append(h)
    return h.pid


def test_a_second_process_is_refused_at_once_naming_pid_action_and_time(holders: list[HolderProcess]) -> None:
    pid = _holding(holders, [WEB], "save")
    began = time.monotonic()
    with pytest.raises(GuestBusy) as caught:
        hold([WEB], "clone")
    assert time.monotonic() - began < 1
    assert re.fullmatch(rf"web is being saved by dom0 pid {pid} since \d\d:\d\d:\d\d", str(caught.value))
    assert caught.value.hint == "try again when it ends, or add --wait-lock to wait for it"


def test_a_holder_killed_with_sigkill_leaves_no_stale_lock(holders: list[HolderProcess]) -> None:
    h = HolderProcess([WEB], "save")
    holders.append(h)
    os.kill(h.pid, signal.SIGKILL)
    h.proc.wait(timeout=10)
    began = time.monotonic()
    with hold([WEB], "restore"):
        assert time.monotonic() - began < 1
        assert holder_of(WEB) is not None
    assert holder_of(WEB) is None


def test_a_wait_ends_as_soon_as_the_holder_lets_go(holders: list[HolderProcess]) -> None:
    _holding(holders, [WEB], "save", after=0.5)
    told: list[str] = []
    began = time.monotonic()
    with hold([WEB], "clone", wait=2, waiting=lambda key, holder: told.append(holder.words())):
        took = time.monotonic() - began
    assert 0.2 < took < 1.5
    assert len(told) == 1
    assert told[0].startswith("being saved by dom0 pid")


def test_a_wait_too_short_says_the_lock_is_still_held(holders: list[HolderProcess]) -> None:
    pid = _holding(holders, [WEB], "export")
    began = time.monotonic()
    with pytest.raises(GuestBusy) as caught:
        hold([WEB], "destroy", wait=0.5)
    assert 0.4 < time.monotonic() - began < 1.5
    assert str(caught.value).startswith(f"web is being exported by dom0 pid {pid}")
    assert caught.value.hint.startswith("still held after waiting 0.5 s")


_BOTH_ORDERS = """
import sys
from dom0.locks import LockKey, hold
a, b = LockKey(sys.argv[1], "a"), LockKey(sys.argv[2], "b")
for _ in range(40):
    with hold([a, b], "save", wait=30):
        pass
print("done", flush=True)
"""


def test_two_processes_taking_two_guests_in_opposite_orders_never_deadlock() -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", _BOTH_ORDERS, x.uuid, y.uuid], stdout=subprocess.PIPE, text=True)
        for x, y in ((WEB, DB), (DB, WEB))
    ]
    try:
        outs = [p.communicate(timeout=60)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert outs == ["done\n", "done\n"]
    assert [p.returncode for p in procs] == [0, 0]


def test_all_or_none_a_busy_second_guest_leaves_the_first_free(holders: list[HolderProcess]) -> None:
    pid = _holding(holders, [DB], "save")
    with pytest.raises(GuestBusy, match=f"db is being saved by dom0 pid {pid}"):
        hold([WEB, DB], "host stop")
    assert holder_of(WEB) is None


def test_a_nested_hold_in_one_process_counts_up(holders: list[HolderProcess]) -> None:
    outer = hold([WEB], "host stop")
    with hold([WEB], "save"):
        assert holder_of(WEB) is not None
    mine = holder_of(WEB)
    assert mine is not None
    assert mine.pid == os.getpid()
    assert mine.action == "host stop"
    outer.release()
    assert holder_of(WEB) is None
    _holding(holders, [WEB], "save")  # another process gets it at once


def test_holder_of_reads_who_holds_without_locking(holders: list[HolderProcess], lock_dir: Path) -> None:
    assert holder_of(WEB) is None  # no directory yet: nothing created
    assert not lock_dir.exists()
    h = HolderProcess([WEB], "mem set")
    holders.append(h)
    found = holder_of(WEB)
    assert found is not None
    assert (found.pid, found.action) == (h.pid, "mem set")
    assert found.words().startswith(f"being given new memory by dom0 pid {h.pid} since ")
    assert "-c" in found.command
    h.end()
    assert holder_of(WEB) is None


def _one_line(exc: Dom0Error) -> None:
    assert "\n" not in exc.message
    assert "\n" not in exc.hint
    assert exc.hint


def test_a_symlink_as_the_lock_directory_is_refused_not_followed(tmp_path: Path, lock_dir: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    lock_dir.symlink_to(elsewhere)
    with pytest.raises(Dom0Error) as caught:
        hold([WEB], "save")
    _one_line(caught.value)
    assert str(lock_dir) in caught.value.message
    assert list(elsewhere.iterdir()) == []
    assert holder_of(WEB) is None


def test_a_dangling_symlink_as_the_lock_directory_is_refused_not_created(tmp_path: Path, lock_dir: Path) -> None:
    lock_dir.symlink_to(tmp_path / "nowhere")
    with pytest.raises(Dom0Error) as caught:
        hold([WEB], "save")
    _one_line(caught.value)
    assert not (tmp_path / "nowhere").exists()


def test_a_lock_directory_writable_by_the_group_is_refused(lock_dir: Path) -> None:
    lock_dir.mkdir(mode=0o700)
    lock_dir.chmod(0o770)
    with pytest.raises(Dom0Error, match="is not this user's own") as caught:
        hold([WEB], "save")
    _one_line(caught.value)
    assert list(lock_dir.iterdir()) == []


def test_a_lock_directory_of_another_user_is_refused(lock_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a directory to another user needs root")
    lock_dir.mkdir(mode=0o700)
    os.chown(lock_dir, 65534, 65534)
    with pytest.raises(Dom0Error, match="owner uid 65534") as caught:
        hold([WEB], "save")
    _one_line(caught.value)
    assert list(lock_dir.iterdir()) == []


def test_a_lock_file_that_is_a_symlink_is_refused_not_followed(tmp_path: Path, lock_dir: Path) -> None:
    lock_dir.mkdir(mode=0o700)
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    (lock_dir / WEB.file_name).symlink_to(target)
    with pytest.raises(Dom0Error, match="cannot open the lock of web") as caught:
        hold([WEB], "save")
    _one_line(caught.value)
    assert target.read_text() == "keep me\n"
    (lock_dir / WEB.file_name).unlink()
    (lock_dir / WEB.file_name).symlink_to(tmp_path / "nowhere")
    with pytest.raises(Dom0Error):
        hold([WEB], "save")
    assert not (tmp_path / "nowhere").exists()


def test_a_lock_file_that_is_a_fifo_is_refused_without_hanging(lock_dir: Path) -> None:
    lock_dir.mkdir(mode=0o700)
    os.mkfifo(lock_dir / WEB.file_name)
    began = time.monotonic()
    with pytest.raises(Dom0Error, match="is not a file of this user's") as caught:
        hold([WEB], "save")
    _one_line(caught.value)
    assert holder_of(WEB) is None
    assert time.monotonic() - began < 1


def test_a_hostile_second_lock_file_lets_the_first_lock_go(lock_dir: Path) -> None:
    lock_dir.mkdir(mode=0o700)
    # the one taken second (locks go in UUID order: DB's before WEB's)
    os.mkfifo(lock_dir / WEB.file_name)
    with pytest.raises(Dom0Error):
        hold([WEB, DB], "host stop")
    proc = subprocess.run(
        [sys.executable, "-c", f"from dom0.locks import LockKey, hold; hold([LockKey({DB.uuid!r}, 'db')], 'save')"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "words",
    [
        b"\x00\xff garbage \x1b[2J" * 100,
        b"x" * (1 << 20),
        b'{"pid": PID, "action": "save", "started": 1e400, "command": "dom0 save web\\n\\u001b[2J"}',
        b'{"pid": PID, "action": "save", "started": NaN}',
        b'{"pid": PID, "action": "save", "started": -1e300}',
        b'{"pid": PID, "action": ["save"], "started": "noon", "command": {"a": 1}}',
        b"[1, 2, 3]",
    ],
    ids=["garbage", "1MiB", "infinite-time", "nan-time", "ancient-time", "wrong-types", "a-list"],
)
def test_a_lock_file_full_of_garbage_still_names_the_holder_by_pid(
    holders: list[HolderProcess], lock_dir: Path, words: bytes
) -> None:
    pid = _holding(holders, [WEB], "save")
    (lock_dir / WEB.file_name).write_bytes(words.replace(b"PID", str(pid).encode()))
    found = holder_of(WEB)
    assert found is not None
    assert found.pid == pid
    line = found.words()
    assert f"by dom0 pid {pid}" in line
    assert line.isprintable()
    assert found.command.isprintable()
    with pytest.raises(GuestBusy) as caught:
        hold([WEB], "clone")
    assert "web is being " in str(caught.value)
    assert f"by dom0 pid {pid}" in str(caught.value)
    assert str(caught.value).isprintable()
