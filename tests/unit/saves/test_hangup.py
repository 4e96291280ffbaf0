"""A daemon left waiting to reopen dom0's FIFO is made to fail its write, deterministically, never to complete it;
and only that daemon, on that FIFO, is ever stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from libvirtd_standin import Standins, thread_state

from dom0.saves.hangup import cancel_waiting_writer, fifo_inode, waiting_threads


@pytest.fixture
def libvirtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standins]:
    with Standins(tmp_path_factory.mktemp("sbin")) as started:
        yield started


def _fifo(path: Path) -> Path:
    os.mkfifo(path, 0o600)
    return path


def _waiters(fifo: Path) -> list[tuple[int, int]]:
    inode = fifo_inode(fifo)
    assert inode is not None
    return waiting_threads(inode)


def test_the_waiting_daemon_is_found_by_its_binary_and_the_fifo_it_opens(tmp_path: Path, libvirtd: Standins) -> None:
    fifo = _fifo(tmp_path / "stream")
    proc = libvirtd(fifo)
    assert [t for t in _waiters(fifo) if t[0] == proc.pid] == [(proc.pid, proc.pid)]


def test_its_header_write_fails_with_a_broken_pipe_every_time(tmp_path: Path, libvirtd: Standins) -> None:
    for attempt in range(5):
        fifo = _fifo(tmp_path / f"stream{attempt}")
        proc = libvirtd(fifo)
        cancel_waiting_writer(fifo)
        out, _ = proc.communicate(timeout=10)
        assert out.strip() == "broken pipe", f"attempt {attempt}: the daemon's write went through"


def test_a_daemon_waiting_on_another_fifo_is_never_disturbed(tmp_path: Path, libvirtd: Standins) -> None:
    ours, theirs = _fifo(tmp_path / "ours"), _fifo(tmp_path / "theirs")
    proc = libvirtd(theirs)
    before = thread_state(proc.pid)
    cancel_waiting_writer(ours)
    time.sleep(0.2)
    assert proc.poll() is None
    assert _waiters(ours) == []
    # Never stopped: a stop and continue would have woken its open (one more sleep counted).
    assert thread_state(proc.pid) == before


def test_a_process_merely_named_libvirtd_is_not_stopped(
    tmp_path: Path, libvirtd: Standins, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = _fifo(tmp_path / "stream")
    impostor = libvirtd(fifo, real=False)  # comm says libvirtd, its executable is the Python interpreter
    assert _waiters(fifo) == []
    sent: list[tuple[int, int]] = []
    kill = os.kill

    def recorded(pid: int, sig: int) -> None:
        sent.append((pid, sig))
        kill(pid, sig)

    monkeypatch.setattr(os, "kill", recorded)
    cancel_waiting_writer(fifo)
    assert (impostor.pid, signal.SIGSTOP) not in sent
    assert thread_state(impostor.pid)[0] != "T"


def test_a_link_named_like_the_fifo_is_never_written(tmp_path: Path, libvirtd: Standins) -> None:
    libvirtd(_fifo(tmp_path / "elsewhere"))  # a daemon waits, so dom0 would go on to fill the pipe
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "stream").symlink_to(victim)
    cancel_waiting_writer(tmp_path / "stream")
    assert victim.read_bytes() == b"precious"


def test_with_nobody_waiting_it_returns_at_once(tmp_path: Path) -> None:
    fifo = _fifo(tmp_path / "stream")
    started = time.monotonic()
    cancel_waiting_writer(fifo)
    assert time.monotonic() - started < 0.5


# Stops the process it is given, says so, and then hangs with it stopped: killed there, only the watchdog is left.
STOPPER = """
import sys, time
from dom0.saves.hangup import stopped
with stopped([int(sys.argv[1])]):
    print("stopped", flush=True)
    time.sleep(60)
"""


def test_a_daemon_stopped_by_a_dom0_killed_mid_way_is_continued(tmp_path: Path, libvirtd: Standins) -> None:
    daemon = libvirtd(_fifo(tmp_path / "stream"))
    stopper = subprocess.Popen([sys.executable, "-c", STOPPER, str(daemon.pid)], stdout=subprocess.PIPE, text=True)
    try:
        assert stopper.stdout is not None
        assert stopper.stdout.readline().strip() == "stopped"
        # SIGSTOP takes effect once the daemon is next scheduled: on a loaded host that is a moment later
        deadline = time.monotonic() + 3
        while thread_state(daemon.pid)[0] != "T":
            assert time.monotonic() < deadline, "the daemon was never stopped"
            time.sleep(0.01)
        stopper.kill()  # SIGKILL: dom0 gets no chance to continue it
        stopper.wait()
        deadline = time.monotonic() + 3
        while thread_state(daemon.pid)[0] == "T":
            assert time.monotonic() < deadline, "the daemon was left stopped"
            time.sleep(0.01)
        assert daemon.poll() is None  # continued, it waits on its FIFO again
    finally:
        stopper.kill()
        stopper.wait()
