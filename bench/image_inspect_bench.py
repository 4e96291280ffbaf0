"""`dom0 image inspect` against the seed's dd + `file -sL` loop and against virt-inspector, on a 1 GiB image.

The image is what the seed had: an MBR with one partition at sector 63 holding an ext4 filesystem (here with a
Debian 12 tree from tests/data/ostrees.py). The bars: dom0 at least 20x faster than each comparison that runs
(issue 4), and one `dom0 image inspect IMG --json` in at most 0.1 s, median of runs (issue 16), printed with where
its time goes: Python starting alone, importing the modules inspect loads (and dissect.extfs alone), the whole run.
Exit 1 when a bar is missed, or when dom0 does not report the partition at 63 and Debian 12 inside it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "data"))

import imagebuild  # noqa: E402  (the image builders live with the test data)
import ostrees  # noqa: E402
from list_bench import allow_bytecode  # noqa: E402

from dom0 import run  # noqa: E402

RUNS = 5
BAR = 20.0
SINGLE_GOAL = 0.1  # seconds, one `dom0 image inspect IMG --json`
SINGLE_RUNS = 11
GiB = 1024 * 1024 * 1024
DOM0 = Path(sys.executable).parent / "dom0"

# The seed's loop, as typed there (with the image and a scratch file for /dev/vg0/orig and /dev/vg0/dest),
# stopping at the first sector where `file` sees an ext filesystem instead of running until interrupted.
SEED_LOOP = r"""
n=1
while true ; do
  dd if="$1" of="$2" bs=512 skip=$n count=1000 2>/dev/null
  if file -sL "$2" | grep -q 'ext[234] filesystem' ; then echo $n ; break ; fi
  n=$(($n+1))
  [ $n -gt 4096 ] && { echo none ; break ; }
done
"""


def build_image(base: Path) -> Path:
    """1 GiB sparse MBR image, partition 1 at sector 63: ext4 with a Debian 12 tree."""
    tree = ostrees.debian12().build(base / "tree")
    img = imagebuild.sparse(base / "seed63.img", GiB)
    imagebuild.sfdisk(img, "label: dos\nstart=63, type=83, bootable\n")
    part = imagebuild.mkfs(
        "ext4", base / "p1", GiB - 63 * 512, "0d0e0000-0000-4000-8000-0000000000be", "root", tree=tree
    )
    imagebuild.place(img, 63 * 512, part)
    part.unlink()
    return img


def timed(cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float = 120) -> tuple[float, bytes]:
    """Wall time of one run of `cmd`, and its stdout."""
    start = time.perf_counter()
    if env is None:
        out = run.run(cmd, timeout=timeout).stdout
    else:
        # run.run passes the environment through; the caller's extra variables are set around the call.
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            out = run.run(cmd, timeout=timeout).stdout
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return time.perf_counter() - start, out


def medians(commands: dict[str, Sequence[str]]) -> dict[str, tuple[float, bytes]]:
    """Median wall time of RUNS runs after one warm-up, commands taking turns; and the last stdout."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    outs: dict[str, bytes] = {}
    for cmd in commands.values():
        timed(cmd)
    for _ in range(RUNS):
        for name, cmd in commands.items():
            t, outs[name] = timed(cmd)
            times[name].append(t)
    return {name: (statistics.median(ts), outs[name]) for name, ts in times.items()}


def loaded_modules(img: Path) -> list[str]:
    """The modules one `dom0 image inspect IMG --json` imports directly (each brings its own imports along)."""
    proc = run.run([sys.executable, "-X", "importtime", "-m", "dom0", "image", "inspect", str(img), "--json"])
    return [
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.decode().splitlines()
        if line.startswith("import time:")
        and "imported package" not in line  # not the report's header
        and not line.rsplit("|", 1)[1].startswith("  ")  # indented: imported by the one above
    ]


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def breakdown(img: Path) -> dict[str, tuple[float, float]]:
    """Where one inspection's time goes: median wall and CPU seconds of Python starting, of importing what inspect
    imports (all of it, and dissect.extfs alone), and of the whole command; SINGLE_RUNS each after a warm-up, taking
    turns. CPU time is shown too because other work on the host stretches wall time, not CPU time."""
    modules = [m for m in loaded_modules(img) if not m.startswith(("encodings", "_", "site", "runpy"))]
    commands = {
        "python start": [sys.executable, "-c", "pass"],
        "dissect.extfs import": [sys.executable, "-c", "import dissect.extfs"],
        "imports of inspect": [sys.executable, "-c", "import " + ", ".join(dict.fromkeys(modules))],
        "dom0 image inspect": [str(DOM0), "image", "inspect", str(img), "--json"],
    }
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    for cmd in commands.values():
        timed(cmd)
    for _ in range(SINGLE_RUNS):
        for name, cmd in commands.items():
            cpu = _cpu_of_children()
            wall, _ = timed(cmd)
            walls[name].append(wall)
            cpus[name].append(_cpu_of_children() - cpu)
    return {name: (statistics.median(walls[name]), statistics.median(cpus[name])) for name in commands}


def check_dom0(out: bytes) -> list[str]:
    """What is wrong with dom0's JSON for this image (empty when it is right)."""
    doc = json.loads(out)
    problems = []
    parts = doc.get("partitions", [])
    if not parts or parts[0].get("start_sector") != 63 or parts[0].get("filesystem") != "ext4":
        problems.append(f"partition 1 should be ext4 at sector 63, got {parts[:1]}")
    systems = doc.get("operating_systems", [])
    if not systems or (systems[0]["distro"], systems[0]["version"]) != ("debian", "12"):
        problems.append(f"expected Debian 12, got {[(s['distro'], s['version']) for s in systems]}")
    return problems


def virt_inspector(img: Path) -> tuple[float | None, str]:
    """One run of virt-inspector under TCG (no KVM here): its time, or None and why it did not run."""
    if shutil.which("virt-inspector") is None:
        return None, "virt-inspector is not installed (apt-get install libguestfs-tools)"
    env = {"LIBGUESTFS_BACKEND": "direct", "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}
    try:
        t, out = timed(["virt-inspector", "-a", str(img)], env=env, timeout=900)
    except Exception as exc:
        return None, f"virt-inspector failed here: {str(exc).splitlines()[0]}"
    if b"debian" not in out:
        return None, "virt-inspector ran but did not find Debian: not a fair comparison"
    return t, "ran once (LIBGUESTFS_BACKEND_SETTINGS=force_tcg)"


def main() -> int:
    """Build the image, time the three, print ratios; 1 when dom0 misses the bar against any that ran."""
    for tool in ("sfdisk", "mkfs.ext4", "dd", "file"):
        if shutil.which(tool) is None:
            print(f"image_inspect_bench: {tool} is missing; run scripts/setup-host.sh", file=sys.stderr)
            return 1
    print(allow_bytecode())
    with tempfile.TemporaryDirectory(prefix="dom0-bench-") as tmp:
        base = Path(tmp)
        img = build_image(base)
        parts = breakdown(img)
        scratch = base / "dest"
        results = medians(
            {
                "dom0": [str(DOM0), "image", "inspect", str(img), "--json"],
                "seed loop": ["sh", "-c", SEED_LOOP, "seed-loop", str(img), str(scratch)],
            }
        )
        dom0_time, dom0_out = results["dom0"]
        loop_time, loop_out = results["seed loop"]
        vi_time, vi_note = virt_inspector(img)
    failed = False
    problems = check_dom0(dom0_out)
    for p in problems:
        print(f"dom0 is wrong: {p}")
        failed = True
    found = loop_out.decode().strip()
    print(f"image: 1 GiB, MBR, ext4 at sector 63 (the seed loop found it at {found})")
    print(f"dom0 image inspect --json     median {dom0_time * 1000:8.1f} ms of {RUNS}")
    print(f"dd + file -sL loop (n=1..{found})  median {loop_time * 1000:8.1f} ms of {RUNS}")
    ratio = loop_time / dom0_time
    print(f"  dom0 is {ratio:.1f}x faster than the seed's loop (bar {BAR:g}x)")
    failed |= ratio < BAR or found != "63"
    if vi_time is None:
        print(f"virt-inspector: skipped: {vi_note}")
    else:
        vi_ratio = vi_time / dom0_time
        print(f"virt-inspector -a             {vi_time * 1000:8.1f} ms, {vi_note}")
        print(f"  dom0 is {vi_ratio:.1f}x faster than virt-inspector (bar {BAR:g}x)")
        failed |= vi_ratio < BAR
    single, single_cpu = parts["dom0 image inspect"]
    print(
        f"one dom0 image inspect --json, median of {SINGLE_RUNS}: {single * 1000:.1f} ms wall, "
        f"{single_cpu * 1000:.1f} ms CPU (goal {SINGLE_GOAL * 1000:g} ms wall); load average {os.getloadavg()[0]:.2f}"
    )
    for name in ("python start", "dissect.extfs import", "imports of inspect"):
        wall, cpu = parts[name]
        print(f"  {name:22s} {wall * 1000:7.1f} ms wall  {cpu * 1000:7.1f} ms CPU")
    imports, imports_cpu = parts["imports of inspect"]
    rest, rest_cpu = (single - imports) * 1000, (single_cpu - imports_cpu) * 1000
    print(f"  {'the rest (reading)':22s} {rest:7.1f} ms wall  {rest_cpu:7.1f} ms CPU  (the whole run less its imports)")
    if single > SINGLE_GOAL:
        print(f"  goal missed by {(single - SINGLE_GOAL) * 1000:.1f} ms")
        failed = True
    print("FAIL" if failed else "ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
