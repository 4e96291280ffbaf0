"""`dom0 list --json` against `virsh list --all` on a libvirt test:// node of 200 guests.

The bar (issue 2): dom0's median wall time is at most 3x virsh's. Exit 1 when it is not, or when dom0's JSON
does not list all 200 guests.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "data"))

from nodegen import write_node  # noqa: E402  (the generator lives with the test data)

from dom0 import run  # noqa: E402

GUESTS = 200
RUNS = 5
BAR = 3.0
DOM0 = Path(sys.executable).parent / "dom0"


def timed(cmd: Sequence[str]) -> tuple[float, bytes]:
    """Wall time of one run of `cmd`, and its stdout."""
    start = time.perf_counter()
    out = run.run(cmd, timeout=120).stdout
    return time.perf_counter() - start, out


def medians(commands: dict[str, Sequence[str]]) -> dict[str, tuple[float, list[float], bytes]]:
    """Per command: median wall time over RUNS runs after one warm-up, every time, and the last stdout.

    The commands take turns, so a burst of load on the machine slows all of them rather than one.
    """
    for cmd in commands.values():
        timed(cmd)
    times: dict[str, list[float]] = {name: [] for name in commands}
    outs: dict[str, bytes] = {}
    for _ in range(RUNS):
        for name, cmd in commands.items():
            t, outs[name] = timed(cmd)
            times[name].append(t)
    return {name: (statistics.median(times[name]), times[name], outs[name]) for name in commands}


def main() -> int:
    """Run the benchmark; print the medians and the ratio; 0 when within the bar."""
    with tempfile.TemporaryDirectory(prefix="dom0-bench-") as tmp:
        node = Path(tmp) / "node.xml"
        specs = write_node(node, GUESTS)
        uri = f"test://{node}"
        results = medians(
            {
                "virsh": ["virsh", "-c", uri, "list", "--all"],
                "dom0": [str(DOM0), "-c", uri, "list", "--json"],
                "dom0 --all": [str(DOM0), "-c", uri, "list", "--all", "--json"],
            }
        )
    virsh_s, virsh_all, _ = results["virsh"]
    dom0_s, dom0_all, out = results["dom0"]
    dom0_all_s, _, out_all = results["dom0 --all"]

    running = json.loads(out)
    everyone = json.loads(out_all)
    ratio = dom0_s / virsh_s
    print(
        f"node: {GUESTS} guests on test:// ({sum(s.active for s in specs)} running); median of {RUNS} after a warm-up"
    )
    print(f"virsh list --all       {virsh_s * 1000:7.1f} ms   runs: {_ms(virsh_all)}")
    print(f"dom0 list --json       {dom0_s * 1000:7.1f} ms   runs: {_ms(dom0_all)}")
    print(f"dom0 list --all --json {dom0_all_s * 1000:7.1f} ms   (for reference)")
    print(f"ratio dom0/virsh       {ratio:7.2f}   (bar: {BAR:.1f})")

    failures = []
    if len(everyone) != GUESTS or {g["name"] for g in everyone} != {s.name for s in specs}:
        failures.append(f"dom0 list --all --json listed {len(everyone)} guests, not the {GUESTS} of the node")
    if [g["name"] for g in running] != [s.name for s in specs if s.active]:
        failures.append("dom0 list --json did not list exactly the running guests, in ID order")
    if ratio > BAR:
        failures.append(f"dom0 is {ratio:.2f}x slower than virsh (bar {BAR:.1f}x)")
    for f in failures:
        print(f"FAIL: {f}")
    return 1 if failures else 0


def _ms(times: list[float]) -> str:
    return " ".join(f"{t * 1000:.0f}" for t in times)


if __name__ == "__main__":
    sys.exit(main())
