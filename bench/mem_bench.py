"""`dom0 mem --json` against a `virsh dommemstat` loop over the running guests of a test:// node of 200 guests.

Bars: `dom0 mem` takes less wall time than the loop (one `virsh -c URI dommemstat NAME` per running guest, the
script an admin writes today), and `dom0 list` stays within 1.5x of `virsh list --all` (list_bench.py, run again
here so one run prints both ratios). Exit 1 when a bar is missed or dom0's JSON does not list exactly the running
guests.

`dom0 mem` is timed as users run it: it turns each guest's statistics period on where it is off, reads every
guest in one bulk call, waits its sample (1 s by default) and reads again for the rates. `--sample 0` (one
reading, no rates) is timed for reference. Each virsh in the loop opens the test driver afresh, which parses the
200-guest node file again (test:// lives inside each process): that is the cost of the loop as written, as on a
real host each virsh pays its own connection to libvirtd; the test driver prints no balloon figures, so the
loop's time is all connecting and asking.
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from pathlib import Path

from list_bench import BAR as LIST_BAR
from list_bench import DOM0, GUESTS, allow_bytecode, list_ratio, medians, runs_ms, timed
from nodegen import write_node  # list_bench put tests/data on the path

# The loop takes 0.2-0.3 s per running guest (35-45 s for the 167 here) and dom0 a few percent of that, so the loop
# runs once and dom0's median of RUNS is compared with it: the bench stays under two minutes on a loaded machine.
RUNS = 3
LIST_RUNS = 7
BAR = 1.0


def main() -> int:
    """Run both comparisons; print the medians and both ratios; 0 when both bars hold."""
    bytecode = allow_bytecode()

    with tempfile.TemporaryDirectory(prefix="dom0-bench-") as tmp:
        node = Path(tmp) / "node.xml"
        specs = write_node(node, GUESTS)
        uri = f"test://{node}"
        running = [s.name for s in specs if s.active]
        print(f"node: {GUESTS} guests on test:// ({len(running)} running); {bytecode}")
        print(f"-- dom0 list against virsh list, median of {LIST_RUNS} after a warm-up")
        list_r, failures = list_ratio(uri, specs, LIST_RUNS)

        loop = "; ".join(f"virsh -c {shlex.quote(uri)} dommemstat {shlex.quote(n)} >/dev/null" for n in running)
        mem = [str(DOM0), "-c", uri, "mem", "--json"]
        mem0 = [*mem, "--sample", "0"]
        print(
            f"-- dom0 mem (median of {RUNS} after a warm-up) against one run of a loop of {len(running)} "
            "`virsh dommemstat NAME` (each virsh re-parses the node file, as each opens its own connection)"
        )
        loop_s, _ = timed(["sh", "-c", loop])
        results = medians({"dom0 mem": mem, "dom0 mem --sample 0": mem0}, RUNS)
    mem_s, mem_all, out = results["dom0 mem"]
    mem0_s, mem0_all, out0 = results["dom0 mem --sample 0"]
    mem_r = mem_s / loop_s
    print(f"virsh dommemstat loop  {loop_s * 1000:7.0f} ms   (one run)")
    print(f"dom0 mem --json        {mem_s * 1000:7.0f} ms   runs: {runs_ms(mem_all)}")
    print(f"dom0 mem --sample 0    {mem0_s * 1000:7.0f} ms   runs: {runs_ms(mem0_all)}   (one reading, for reference)")
    print(f"ratio mem dom0/loop    {mem_r:7.3f}   (bar: under {BAR:.1f})")
    print(f"ratio list dom0/virsh  {list_r:7.2f}   (bar: at most {LIST_BAR:.1f})")

    for name, text in (("dom0 mem --json", out), ("dom0 mem --json --sample 0", out0)):
        listed = [g["name"] for g in json.loads(text)["guests"]]
        if sorted(listed) != sorted(running):
            failures.append(f"{name} listed {len(listed)} guests, not exactly the {len(running)} running ones")
    if mem_r >= BAR:
        failures.append(f"dom0 mem took {mem_r:.2f}x the dommemstat loop (bar: under {BAR:.1f}x)")
    if list_r > LIST_BAR:
        failures.append(f"dom0 list is {list_r:.2f}x slower than virsh list (bar {LIST_BAR:.1f}x)")
    for f in failures:
        print(f"FAIL: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
