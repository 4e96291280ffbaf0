"""`dom0 memlock run` as a real process: what it locks, what it leaves out, and how it follows the files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import unitkit

from dom0.memlock.daemon import can_lock_past_rlimit

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="locks past the 8 MiB RLIMIT_MEMLOCK need CAP_IPC_LOCK")


def _wait(what: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.05)
    return what()


def _status(state: Path) -> dict[str, Any]:
    result = unitkit.dom0("memlock", "status", "--state", str(state), "--json")
    assert result.rc == 0, result.err
    doc: dict[str, Any] = json.loads(result.out)
    return doc


class Daemon:
    def __init__(self, tmp_path: Path, config: Path, *extra: str) -> None:
        self.config = config
        self.state = tmp_path / "run" / "memlock.json"
        self.log = tmp_path / "daemon.log"
        cmd = [str(unitkit.DOM0), "memlock", "run", "-c", str(config), "--state", str(self.state), "--poll", "0.2"]
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen([*cmd, *extra], stdin=subprocess.DEVNULL, stderr=err)
        assert _wait(self.state.exists), self.log.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    made = []
    for name, size in (("sshd", 3 << 20), ("libc.so", 2 << 20), ("bash", 100_000)):
        f = tmp_path / name
        f.write_bytes(os.urandom(size))
        made.append(f)
    return made


@pytest.fixture
def daemon(tmp_path: Path, files: list[Path]) -> Iterator[Daemon]:
    config = tmp_path / "memlockd.cfg"
    config.write_text("# support path\n" + "".join(f"{f}\n" for f in files) + f"?{tmp_path}/absent\n")
    d = Daemon(tmp_path, config)
    yield d
    d.stop()


def test_status_shows_the_configured_files_locked_and_resident(daemon: Daemon, files: list[Path]) -> None:
    doc = _status(daemon.state)
    assert [(f["path"], f["locked_bytes"], f["resident"], f["stale"]) for f in doc["files"]] == [
        (str(f), f.stat().st_size, f.stat().st_size, False) for f in files
    ]
    assert doc["totals"]["locked_bytes"] == sum(f.stat().st_size for f in files)
    vmlck = next(ln for ln in Path(f"/proc/{daemon.proc.pid}/status").read_text().splitlines() if "VmLck" in ln)
    assert int(vmlck.split()[1]) >= doc["totals"]["locked_bytes"] // 1024
    table = unitkit.dom0("memlock", "status", "--state", str(daemon.state))
    assert table.rc == 0, table.err
    assert "3 of 3 files locked" in table.out


def test_a_replaced_file_is_relocked_and_not_stale(daemon: Daemon, files: list[Path], tmp_path: Path) -> None:
    sshd = files[0]
    new = tmp_path / "sshd.dpkg-new"
    new.write_bytes(os.urandom(1 << 20))
    os.replace(new, sshd)  # what a package upgrade does: a new inode under the old name
    inode = sshd.stat().st_ino

    def relocked() -> bool:
        row = _status(daemon.state)["files"][0]
        return bool(row["inode"] == inode and row["locked_bytes"] == 1 << 20 and not row["stale"])

    assert _wait(relocked, 2.0), daemon.log.read_text()
    assert f"relocked {sshd}: replaced on disk (new inode)" in daemon.log.read_text()


def test_sighup_rereads_the_config_and_releases_what_left_it(daemon: Daemon, files: list[Path]) -> None:
    daemon.config.write_text(f"{files[0]}\n")
    daemon.proc.send_signal(signal.SIGHUP)
    assert _wait(lambda: [f["path"] for f in _status(daemon.state)["files"]] == [str(files[0])])
    assert f"released {files[1]}: no longer in the config" in daemon.log.read_text()


def test_sigterm_releases_everything_and_removes_the_state_file(daemon: Daemon) -> None:
    assert daemon.stop() == 0
    assert not daemon.state.exists()
    result = unitkit.dom0("memlock", "status", "--state", str(daemon.state))
    assert result.rc == 1
    assert result.err.splitlines()[0] == f"dom0: error: dom0 memlock is not running (no {daemon.state})"
    assert "hint: start it" in result.err


def test_the_budget_leaves_out_what_does_not_fit_and_says_why(tmp_path: Path, files: list[Path]) -> None:
    config = tmp_path / "memlockd.cfg"
    config.write_text("".join(f"{f}\n" for f in files))
    # a share of RAM that holds sshd (3 MiB) but not sshd and libc: libc is left out, bash still fits after it
    total = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in ln)
    share = (4 << 10) / total
    d = Daemon(tmp_path, config, "--max-share", f"{share:.12f}")
    try:
        doc = _status(d.state)
        rows = {f["path"]: f for f in doc["files"]}
        assert rows[str(files[0])]["locked_bytes"] == 3 << 20
        assert rows[str(files[1])]["locked_bytes"] == 0
        assert rows[str(files[1])]["left_out_reason"].startswith("over the budget: ")
        assert "% of RAM = " in rows[str(files[1])]["left_out_reason"]
        assert rows[str(files[2])]["locked_bytes"] == 100_000
        table = unitkit.dom0("memlock", "status", "--state", str(d.state))
        assert f"left out {files[1]}: over the budget: " in table.out
    finally:
        assert d.stop() == 0


def test_rlimit_memlock_is_the_budget_without_cap_ipc_lock(tmp_path: Path, files: list[Path]) -> None:
    """Without CAP_IPC_LOCK (dropped with setpriv) the 8 MiB-or-lower soft limit caps what is locked."""
    config = tmp_path / "memlockd.cfg"
    config.write_text("".join(f"{f}\n" for f in files))
    state = tmp_path / "state.json"
    cmd = ["prlimit", "--memlock=4194304:4194304", "setpriv", "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock"]
    cmd += [str(unitkit.DOM0), "memlock", "run", "-c", str(config), "--state", str(state), "--poll", "0.2"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert _wait(state.exists)
        rows = {f["path"]: f for f in _status(state)["files"]}
        assert rows[str(files[0])]["locked_bytes"] == 3 << 20
        assert rows[str(files[1])]["left_out_reason"] == "over the budget: RLIMIT_MEMLOCK = 4.0 MiB"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert f"left out {files[1]} (2.0 MiB): over the budget: RLIMIT_MEMLOCK = 4.0 MiB" in proc.communicate()[1].decode()


def test_cap_ipc_lock_is_read_from_the_effective_set(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t0000000000004000\n")  # bit 14 alone: CAP_IPC_LOCK
    assert can_lock_past_rlimit(str(status))
    status.write_text("Name:\tx\nCapEff:\t000001ffffffbfff\n")  # everything but CAP_IPC_LOCK
    assert not can_lock_past_rlimit(str(status))
