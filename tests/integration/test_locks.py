"""One change per guest at a time, on real QEMU guests: concurrent dom0 runs on one guest refuse (or wait) naming
the run that holds it, host-wide runs skip it, and a killed run's lock is gone with it. The locks are the real
ones under /run/dom0/locks (DOM0_LOCK_DIR unset), as every dom0 on the host sees them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dom0.locks import LockKey, hold, holder_of

from .conftest import URI, Dom0, MakeGuest, TestGuest, dom0_program, virsh
from .resume import assert_resumed, ticks

ROOT = Path("/var/tmp/dom0-tests/locks")


@pytest.fixture(autouse=True)
def real_locks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOM0_LOCK_DIR", raising=False)  # the default: /run/dom0/locks, shared by every dom0 run


@pytest.fixture
def work(request: pytest.FixtureRequest) -> Iterator[Path]:
    path = ROOT / request.node.name
    subprocess.run(["rm", "-rf", str(path)], check=True)
    path.mkdir(parents=True, mode=0o700)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


def _start(*args: str) -> subprocess.Popen[str]:
    """A dom0 run in the background, as a cron job beside an administrator's shell would be."""
    return subprocess.Popen(
        [*dom0_program(), "-c", URI, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in ("DOM0_CONNECT", "LIBVIRT_DEFAULT_URI")},
    )


def _holding(proc: subprocess.Popen[str], g: TestGuest, timeout: float = 30) -> None:
    """Wait until `proc` holds `g`'s lock (its PID in /proc/locks for the guest's lock file)."""
    key = LockKey(g.uuid, g.name)
    deadline = time.monotonic() + timeout
    while (holder := holder_of(key)) is None or holder.pid != proc.pid:
        assert proc.poll() is None, f"dom0 ended before it held {g.name}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"dom0 pid {proc.pid} never held {g.name}'s lock"
        time.sleep(0.002)


def _refused_by(err: str, g: TestGuest, pid: int, doing: str) -> None:
    first = err.splitlines()[0]
    assert re.fullmatch(rf"dom0: error: {g.name} is being {doing} by dom0 pid {pid} since \d\d:\d\d:\d\d", first), err


def _ticking(g: TestGuest) -> tuple[str, int]:
    g.wait_console("tick 1", timeout=90)
    text = g.console_text()
    return text, max(ticks(text))


def test_two_saves_of_one_guest_at_once_make_one_image(dom0: Dom0, make_guest: MakeGuest, work: Path) -> None:
    g = make_guest()
    before, last_tick = _ticking(g)
    dirs = [work / "one", work / "two"]
    began = time.monotonic()
    runs = [_start("save", g.name, "-d", str(d)) for d in dirs]
    ended: dict[int, float] = {}
    while len(ended) < 2:
        for i, proc in enumerate(runs):
            if i not in ended and proc.poll() is not None:
                ended[i] = time.monotonic() - began
        assert time.monotonic() - began < 120
        time.sleep(0.01)
    outputs = [proc.communicate() for proc in runs]
    codes = sorted(proc.returncode for proc in runs)
    assert codes == [0, 1], outputs
    won = next(i for i, proc in enumerate(runs) if proc.returncode == 0)
    lost = 1 - won
    _refused_by(outputs[lost][1], g, runs[won].pid, "saved")
    assert outputs[lost][0] == ""
    assert ended[lost] < 1.5, ended  # refused at once (a dom0 start-up and one lookup), not after the other's save
    images = sorted(p.name for d in dirs if d.exists() for p in d.iterdir())
    assert images == [f"{g.name}.manifest.json", f"{g.name}.save.zst"]
    assert not dirs[lost].exists()  # the refused run made nothing, not even its directory
    g.wait_state("shut off")
    dom0("restore", str(dirs[won] / f"{g.name}.manifest.json"))
    assert_resumed(g, before, last_tick)


def test_a_clone_while_a_save_holds_the_guest_refuses_and_the_save_goes_on(
    dom0: Dom0, make_guest: MakeGuest, work: Path
) -> None:
    g = make_guest()
    _ticking(g)
    clone = f"{g.name}-clone"
    saving = _start("save", g.name, "-d", str(work))
    _holding(saving, g)
    # held still while the clone starts, so the two surely overlap however loaded the host is
    os.kill(saving.pid, signal.SIGSTOP)
    try:
        cloning = _start("clone", g.name, clone, "--pause")
        _, c_err = cloning.communicate(timeout=180)
        os.kill(saving.pid, signal.SIGCONT)
        _, s_err = saving.communicate(timeout=180)
        assert (saving.returncode, cloning.returncode) == (0, 1), (s_err, c_err)
        _refused_by(c_err, g, saving.pid, "saved")
        assert clone not in virsh("list", "--all", "--name")
        assert work.joinpath(f"{g.name}.manifest.json").exists()
    finally:
        if saving.poll() is None:
            os.kill(saving.pid, signal.SIGCONT)
        if clone in virsh("list", "--all", "--name", check=False).split():
            virsh("destroy", clone, check=False)
            virsh("undefine", clone, "--remove-all-storage", check=False)


def test_host_stop_while_a_save_holds_one_guest_saves_the_other(dom0: Dom0, make_guest: MakeGuest, work: Path) -> None:
    busy, other = make_guest(), make_guest()
    saving = _start("save", busy.name, "-d", str(work / "by-hand"))
    _holding(saving, busy)
    os.kill(saving.pid, signal.SIGSTOP)  # held still, so the host stop surely meets it holding the lock
    try:
        config = work / "host.toml"
        config.write_text("")
        r = dom0(
            "host", "stop", "--config", str(config), "-d", str(work / "host"), "--json", busy.name, other.name,
            check=False, timeout=180,
        )  # fmt: skip
    finally:
        os.kill(saving.pid, signal.SIGCONT)
    assert r.returncode == 1, r.stderr  # not every guest was stopped
    guests = {g["name"]: g for g in json.loads(r.stdout)["guests"]}
    assert guests[other.name]["result"] == "saved"
    assert guests[busy.name]["result"] == "skipped"
    assert guests[busy.name]["detail"].startswith(f"being saved by dom0 pid {saving.pid} since ")
    _, err = saving.communicate(timeout=120)
    assert saving.returncode == 0, err  # the save the host stop met finished undisturbed
    assert sorted(p.name for p in (work / "by-hand").iterdir()) == [
        f"{busy.name}.manifest.json",
        f"{busy.name}.save.zst",
    ]
    assert sorted(p.name for p in (work / "host").iterdir()) == [
        f"{other.name}.manifest.json",
        f"{other.name}.save.zst",
    ]


def test_a_save_killed_while_it_holds_the_lock_does_not_block_the_next(
    dom0: Dom0, make_guest: MakeGuest, work: Path
) -> None:
    from dom0.saves.hangup import cancel_waiting_writer

    g = make_guest()
    killed = _start("save", g.name, "-d", str(work))
    _holding(killed, g)
    killed.kill()
    killed.wait()
    assert holder_of(LockKey(g.uuid, g.name)) is None  # the kernel let the lock go with the process
    try:
        # Killed this early, libvirtd may be left waiting to open the dead run's FIFO (every libvirt call on the
        # guest then waits): the next save's sweep, before it connects, is what releases it.
        began = time.monotonic()
        r = dom0("save", g.name, "-d", str(work), "--replace", timeout=180)
    finally:
        for fifo in work.glob(".dom0-save-*/stream"):
            cancel_waiting_writer(fifo)  # never leave libvirtd wedged for the tests that follow
    assert "waiting" not in r.stderr
    assert "being saved" not in r.stderr
    assert time.monotonic() - began < 60
    g.wait_state("shut off")
    assert sorted(os.listdir(work)) == [f"{g.name}.manifest.json", f"{g.name}.save.zst"]  # the leftovers swept
    dom0("restore", str(work / f"{g.name}.manifest.json"))
    g.wait_state("running")


def test_wait_lock_waits_for_the_holder_then_saves(dom0: Dom0, make_guest: MakeGuest, work: Path) -> None:
    g = make_guest()
    held = hold([LockKey(g.uuid, g.name)], "save")  # this process, as another dom0 run would
    try:
        waiting = _start("save", g.name, "-d", str(work), "--wait-lock=60")
        assert waiting.stderr is not None
        line = waiting.stderr.readline()
        assert line.startswith(f"waiting for {g.name}: it is being saved by dom0 pid {os.getpid()} since "), line
        time.sleep(1)
        assert waiting.poll() is None  # still waiting
        assert not work.joinpath(f"{g.name}.manifest.json").exists()
    finally:
        held.release()
    out, err = waiting.communicate(timeout=180)
    assert waiting.returncode == 0, err
    assert "saved 1 guest(s)" in out
    g.wait_state("shut off")
    assert sorted(os.listdir(work)) == [f"{g.name}.manifest.json", f"{g.name}.save.zst"]
