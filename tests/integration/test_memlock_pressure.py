"""`dom0 memlock run` under real memory pressure: a memory cgroup of 96 MiB holds the daemon (which locks one
32 MiB file), the page cache of a control file of the same size that nobody locks, and a filler process that
allocates and touches anonymous memory until only a few MiB are left for the page cache. The kernel then
reclaims page cache to keep the cgroup under its limit: the control file goes, the locked one must stay whole.

cgroup v1 charges a page-cache page to the cgroup of the process that first faults it in, so both files' cached
pages are dropped first (posix_fadvise DONTNEED on these two files only) and then read again from inside the
cgroup: the locked file by the daemon's own mlock, the control file by a `cat` run in the cgroup. memory.stat
shows both charged there. The machine has no swap, and the cgroup's swappiness is 0, so the filler's memory can
only be made room for by dropping page cache.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import memcg
from .conftest import REPO

DOM0 = REPO / ".venv" / "bin" / "dom0"
SIZE = 32 * memcg.MiB
LIMIT = 96 * memcg.MiB
# what the filler leaves the cgroup for page cache and kernel memory: less than half the control file
HEADROOM = 10 * memcg.MiB

# Grows its anonymous memory 1 MiB at a time, every page written, until what the cgroup cannot reclaim (anonymous
# plus locked) is within HEADROOM of the limit; then says so and holds it until killed.
FILLER = r"""
import sys, time
cg, limit, headroom = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def stat():
    with open(cg + "/memory.stat") as f:
        return {k: int(v) for k, v in (line.split() for line in f)}
held = []
while True:
    s = stat()
    if s["rss"] + s["unevictable"] >= limit - headroom:
        break
    held.append(bytearray(b"\x01") * (1 << 20))
print("filled", len(held), flush=True)
while True:
    time.sleep(3600)
"""


def _skip_reason() -> str:
    why = memcg.unavailable()
    if why:
        return why
    if not shutil.which("cat"):
        return "no cat"
    return ""


pytestmark = pytest.mark.skipif(bool(_skip_reason()), reason=_skip_reason() or "-")


def _wait(what: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.05)
    return what()


def _filesystem(path: Path) -> str:
    """The filesystem type `path` is on (longest mount point of /proc/self/mounts that holds it)."""
    best, kind = "", ""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        mnt = fields[1].replace("\\040", " ")
        if (str(path) == mnt or str(path).startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, kind = mnt, fields[2]
    return kind


@dataclass
class Setup:
    dir: Path
    locked: Path
    control: Path
    cg: memcg.MemCgroup
    state: Path
    log: Path
    procs: list[subprocess.Popen[bytes]]


@pytest.fixture
def setup() -> Iterator[Setup]:
    base = Path("/var/tmp")
    if _filesystem(base) in ("tmpfs", "ramfs", ""):
        pytest.skip(f"{base} is not on a disk filesystem: its pages could not be evicted")
    work = Path(tempfile.mkdtemp(prefix="dom0t-memlock-", dir=base))
    procs: list[subprocess.Popen[bytes]] = []
    cg = None
    try:
        locked, control = work / "locked.bin", work / "control.bin"
        for f in (locked, control):
            f.write_bytes(os.urandom(SIZE))
        cg = memcg.MemCgroup(LIMIT)
        yield Setup(work, locked, control, cg, work / "run" / "memlock.json", work / "daemon.log", procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if cg is not None:
            cg.close()
        shutil.rmtree(work, ignore_errors=True)


def _status(state: Path) -> dict[str, Any]:
    result = subprocess.run(
        [str(DOM0), "memlock", "status", "--state", str(state), "--json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def _vmlck_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmLck:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmLck in /proc/{pid}/status")


def test_locked_file_stays_resident_while_the_control_file_is_evicted(setup: Setup) -> None:
    s = setup
    cg = s.cg
    for f in (s.locked, s.control):
        memcg.drop_cache(f)
    assert memcg.resident_bytes(s.locked) < SIZE // 10, "DONTNEED did not drop the locked file's cache"
    assert memcg.resident_bytes(s.control) < SIZE // 10, "DONTNEED did not drop the control file's cache"

    config = s.dir / "memlockd.cfg"
    config.write_text(f"# only the first of the two\n{s.locked}\n")
    argv = [str(DOM0), "memlock", "run", "-c", str(config), "--state", str(s.state), "--poll", "0.5"]
    with s.log.open("wb") as err:
        daemon = subprocess.Popen(cg.enter_argv(argv), stdin=subprocess.DEVNULL, stderr=err)
    s.procs.append(daemon)
    assert _wait(s.state.exists, 30), s.log.read_text()
    assert daemon.pid in cg.pids()

    subprocess.run(cg.enter_argv(["cat", str(s.control)]), stdout=subprocess.DEVNULL, check=True, timeout=30)
    # both files in RAM, their pages charged to the cgroup (the locked file as unevictable)
    assert memcg.resident_bytes(s.control) > SIZE * 9 // 10
    before = cg.stat()
    assert before["unevictable"] >= SIZE * 9 // 10, before
    assert before["cache"] >= 2 * SIZE * 9 // 10, before

    filler = subprocess.Popen(
        cg.enter_argv([sys.executable, "-c", FILLER, str(cg.path), str(LIMIT), str(HEADROOM)]),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    s.procs.append(filler)
    assert filler.stdout is not None
    line = filler.stdout.readline().decode()
    assert line.startswith("filled"), f"the filler died before filling the cgroup (rc {filler.poll()})"

    after = cg.stat()
    control_left = memcg.resident_bytes(s.control)
    locked_left = memcg.resident_bytes(s.locked)
    doc = _status(s.state)
    msg = f"control {control_left >> 20} MiB, locked {locked_left >> 20} MiB resident; memory.stat {after}"
    print(msg)

    # the pressure was real: the cgroup hit its limit and the kernel took back the control file's pages
    assert cg.failcnt() > 0, msg
    assert control_left < SIZE // 2, msg
    # and the locked file stayed whole, by our own mincore and by what dom0 reports
    assert locked_left == SIZE, msg
    (row,) = doc["files"]
    assert (row["path"], row["locked_bytes"], row["resident"], row["stale"]) == (str(s.locked), SIZE, SIZE, False)
    assert doc["totals"]["resident_bytes"] == SIZE
    assert doc["running"] is True
    assert _vmlck_bytes(daemon.pid) == (SIZE + memcg.PAGE - 1) // memcg.PAGE * memcg.PAGE
    # nothing was killed to get there: the daemon and the filler both still run
    assert daemon.poll() is None, s.log.read_text()
    assert filler.poll() is None
    assert cg.oom_kills() == 0
