"""How long a small command from the locked set takes to start under memory pressure, with and without
`dom0 memlock run` holding its files: the "dramatic difference" memlockd's author saw when logging in to a paging
host, made a number.

The pressure: a memory cgroup of the bench's own (160 MiB, cgroup v1, no swap) holds a filler that keeps what
the cgroup cannot reclaim within 24 MiB of the limit and churns 16 MiB of it up and down, so page cache charged
to the cgroup keeps being reclaimed. Inside it a runner times N runs each of `bash -c true` and `ps -e` (spawn to
exit); before every run it drops the page cache of every file `dom0 memlock check` lists for `+/bin/bash` and
`+/usr/bin/ps` (posix_fadvise DONTNEED: these files only; pages some process has mapped or locked stay). Phases
take turns, without and with the files held, twice each: one daemon runs inside the cgroup throughout (so its
own memory and what it locks count against the limit) and SIGHUP switches its config between the two files and
none. It prints median and p90 per command and phase and the ratio without/with.

Then `dom0 memlock check` against memlockd's own expansion of the same config, where memlockd is installed: the
files memlockd maps (read from /proc/PID/maps) must be the files dom0 lists. No bar: exit 0 once measured, 1 only
when it could not measure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from dom0 import run  # noqa: E402
from dom0.errors import CommandError  # noqa: E402
from integration import memcg  # noqa: E402  (the memory cgroup of the integration tests)

DOM0 = Path(sys.executable).parent / "dom0"
LIMIT = 160 * memcg.MiB
HEADROOM = 6 * memcg.MiB
SWING = 16 * memcg.MiB
RUNS = 20  # per command, per phase; each phase runs twice
COMMANDS = {"bash -c true": ["/bin/bash", "-c", "true"], "ps -e": ["/usr/bin/ps", "-e"]}
CONFIG = "# the bench's support path\n+/bin/bash\n+/usr/bin/ps\n"

# Keeps what the cgroup cannot reclaim (anonymous + locked) at the limit less headroom, 1 MiB at a time either way
# (so a lock taken meanwhile is made room for), and every half second lets `swing` go and grows it back, so the
# page cache read into the gap is pushed out again.
FILLER = r"""
import sys, time
cg, limit, headroom, swing = sys.argv[1], *map(int, sys.argv[2:5])
target = limit - headroom
def held_by_cgroup():
    with open(cg + "/memory.stat") as f:
        s = {k: int(v) for k, v in (line.split() for line in f)}
    return s["rss"] + s["unevictable"]
chunks, said, churned = [], False, time.monotonic()
while True:
    now = held_by_cgroup()
    if now > target + (1 << 20) and chunks:
        chunks.pop()
    elif now < target:
        chunks.append(bytearray(b"\x01") * (1 << 20))
    else:
        if not said:
            print("filled", flush=True)
            said = True
        if time.monotonic() - churned > 0.5:
            del chunks[-(swing >> 20):]
            churned = time.monotonic()
        time.sleep(0.005)
"""

# Times each command from spawn to exit, the listed files' page cache dropped before each run.
RUNNER = r"""
import json, os, sys, time
files, runs, commands = json.loads(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
out = {name: [] for name in commands}
actions = [(os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0)]
for _ in range(runs):
    for name, argv in commands.items():
        for path in files:
            fd = os.open(path, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
        start = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
        _, status = os.waitpid(pid, 0)
        out[name].append(time.perf_counter() - start)
        if status:
            sys.exit(f"{name} failed: wait status {status}")
print(json.dumps(out))
"""


class CannotMeasure(Exception):
    """The bench could not set up what it measures; the message says why."""


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def expansion(config: Path) -> list[str]:
    proc = run.run([str(DOM0), "memlock", "check", "-c", str(config), "--json"], check=False, timeout=120)
    doc = json.loads(proc.stdout)
    if doc["problems"]:
        raise CannotMeasure(f"dom0 memlock check: {doc['problems']}")
    return [f["path"] for f in doc["files"]]


def wait_for(what: str, ready: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise CannotMeasure(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)


class Holder:
    """One `dom0 memlock run` inside the cgroup for the whole bench, so its own memory weighs on both phases alike;
    a phase with nothing locked is the same daemon re-reading (SIGHUP) a config of comments only."""

    def __init__(self, cg: memcg.MemCgroup, work: Path) -> None:
        self.config, self.state, self.log = work / "holder.cfg", work / "state.json", work / "daemon.log"
        self.config.write_text("# nothing\n")
        argv = [str(DOM0), "memlock", "run", "-c", str(self.config), "--state", str(self.state), "--poll", "1"]
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(cg.enter_argv(argv), stdin=subprocess.DEVNULL, stderr=err)
        wait_for("dom0 memlock run publishing its state", self.state.exists, 60)

    def locked_files(self) -> int:
        try:
            return int(json.loads(self.state.read_text())["totals"]["locked_files"])
        except (OSError, ValueError, KeyError):
            return -1

    def hold(self, text: str, files: int) -> None:
        self.config.write_text(text)
        self.proc.send_signal(signal.SIGHUP)
        wait_for(f"dom0 memlock holding {files} files", lambda: self.locked_files() == files, 30)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def phase(cg: memcg.MemCgroup, files: list[str]) -> dict[str, list[float]]:
    """RUNS per command in the cgroup, the listed files' cache dropped before each."""
    proc = run.run(
        cg.enter_argv([sys.executable, "-c", RUNNER, json.dumps(files), str(RUNS), json.dumps(COMMANDS)]),
        timeout=600,
    )
    result: dict[str, list[float]] = json.loads(proc.stdout)
    return result


def pressure_ratio(work: Path) -> None:
    config = work / "memlockd.cfg"
    config.write_text(CONFIG)
    files = expansion(config)
    size = sum(os.stat(f).st_size for f in files)
    print(f"locked set: {len(files)} files, {size / memcg.MiB:.1f} MiB ({', '.join(Path(f).name for f in files)})")
    times: dict[tuple[str, bool], list[float]] = {(n, lk): [] for n in COMMANDS for lk in (False, True)}
    with memcg.memory_cgroup(LIMIT) as cg:
        filler = subprocess.Popen(
            cg.enter_argv([sys.executable, "-c", FILLER, str(cg.path), str(LIMIT), str(HEADROOM), str(SWING)]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        try:
            assert filler.stdout is not None
            if not filler.stdout.readline().startswith(b"filled"):
                raise CannotMeasure(f"the filler died before filling the cgroup (rc {filler.poll()})")
            holder = Holder(cg, work)
            try:
                fail0 = cg.failcnt()
                for locked in (False, True, False, True):
                    holder.hold(CONFIG if locked else "# nothing\n", len(files) if locked else 0)
                    for name, values in phase(cg, files).items():
                        times[(name, locked)].extend(values)
            finally:
                holder.stop()
            if filler.poll() is not None or cg.oom_kills():
                raise CannotMeasure(f"the filler died (rc {filler.poll()}, {cg.oom_kills()} OOM kills)")
            print(
                f"pressure: cgroup limit {LIMIT >> 20} MiB hit {cg.failcnt() - fail0} times during the runs; "
                f"{cg.stat()['cache'] / memcg.MiB:.1f} MiB of page cache left in it"
            )
        finally:
            filler.kill()
            filler.wait()
    print(f"{'command':14} {'phase':16} {'median':>9} {'p90':>9}   ({2 * RUNS} runs each, spawn to exit)")
    for name in COMMANDS:
        for locked in (False, True):
            v = times[(name, locked)]
            label = "dom0 memlock" if locked else "nothing locked"
            print(f"{name:14} {label:16} {statistics.median(v) * 1000:7.2f}ms {p90(v) * 1000:7.2f}ms")
        ratio = statistics.median(times[(name, False)]) / statistics.median(times[(name, True)])
        ratio90 = p90(times[(name, False)]) / p90(times[(name, True)])
        print(f"{name:14} ratio without/with: median {ratio:.1f}x, p90 {ratio90:.1f}x")


def against_memlockd(work: Path) -> None:
    """memlockd's own expansion of the same config: the files it maps while running in the foreground."""
    binary = shutil.which("memlockd") or next((p for p in ("/usr/sbin/memlockd",) if os.path.exists(p)), None)
    if binary is None:
        print("memlockd: not installed here (Debian package memlockd): comparison with its expansion skipped")
        return
    config = work / "memlockd.cfg"
    ours = set(expansion(config))
    proc = subprocess.Popen([binary, "-f", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)  # it runs ldd on each `+` file before mapping
        maps = Path(f"/proc/{proc.pid}/maps").read_text().splitlines()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    theirs = {line.split(None, 5)[5] for line in maps if len(line.split(None, 5)) == 6 and "/" in line}
    theirs.discard(os.path.realpath(binary))
    theirs = {p for p in theirs if p in ours or not p.startswith("[")}
    print(f"memlockd maps {len(theirs)} files, dom0 memlock check lists {len(ours)}")
    for p in sorted(ours - theirs):
        print(f"  only dom0: {p}")
    for p in sorted(theirs - ours):
        print(f"  only memlockd: {p}")


def main() -> int:
    why = memcg.unavailable()
    if why:
        print(f"cannot measure: {why}")
        return 1
    with tempfile.TemporaryDirectory(prefix="dom0-bench-memlock-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        try:
            pressure_ratio(work)
            against_memlockd(work)
        except (CannotMeasure, CommandError) as exc:
            print(f"cannot measure: {exc}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
