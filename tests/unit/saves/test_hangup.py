"""A daemon left waiting to reopen dom0's FIFO is made to fail its write, deterministically, never to complete it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from dom0.saves.hangup import cancel_waiting_writer, waiting_threads

# Stands in for libvirtd: named like it, it opens the FIFO for writing (blocking) and writes its 92-byte header as
# soon as the open returns. (The real libvirtd wins the race against a plain open-and-close of the read end; that
# case is tested against it in tests/integration/test_saves.py.)
DAEMON = """
import ctypes, os, sys
ctypes.CDLL(None).prctl(15, b"libvirtd", 0, 0, 0)
fd = os.open(sys.argv[1], os.O_WRONLY)
try:
    os.write(fd, b"LibvirtQemudSave" + bytes(76))
    print("written")
except BrokenPipeError:
    print("broken pipe")
"""


def _daemon(fifo: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", DAEMON, str(fifo)], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not any(pid == proc.pid for pid, _ in waiting_threads()):
        assert time.monotonic() < deadline, "the stand-in daemon never waited on the FIFO"
        time.sleep(0.01)
    return proc


def test_the_waiting_daemon_is_found_by_its_name_and_where_it_sleeps(tmp_path: Path) -> None:
    fifo = tmp_path / "stream"
    os.mkfifo(fifo)
    proc = _daemon(fifo)
    try:
        assert [t for t in waiting_threads() if t[0] == proc.pid] == [(proc.pid, proc.pid)]
    finally:
        proc.kill()
        proc.wait()


def test_its_header_write_fails_with_a_broken_pipe_every_time(tmp_path: Path) -> None:
    for attempt in range(5):
        fifo = tmp_path / f"stream{attempt}"
        os.mkfifo(fifo)
        proc = _daemon(fifo)
        cancel_waiting_writer(fifo)
        out, _ = proc.communicate(timeout=10)
        assert out.strip() == "broken pipe", f"attempt {attempt}: the daemon's write went through"


def test_a_daemon_waiting_on_another_fifo_is_left_waiting(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    os.mkfifo(ours)
    os.mkfifo(theirs)
    proc = _daemon(theirs)
    try:
        cancel_waiting_writer(ours)
        time.sleep(0.2)
        assert proc.poll() is None
        assert any(pid == proc.pid for pid, _ in waiting_threads())  # stopped and continued, it waits again
    finally:
        proc.kill()
        proc.wait()


def test_with_nobody_waiting_it_returns_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "stream"
    os.mkfifo(fifo)
    started = time.monotonic()
    cancel_waiting_writer(fifo)
    assert time.monotonic() - started < 0.5
