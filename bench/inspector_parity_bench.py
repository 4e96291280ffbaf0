"""`dom0 image inspect --json --applications` against `virt-inspector` on one real Debian 12 image, field by field.

The image is the labs' debootstrapped Debian 12 root (tests/data/ostrees.py) packed into a partitioned 2 GiB sparse
disk (/boot on partition 1, / on partition 2), built once per set of inputs and reused; virt-inspector's XML is
cached by a hash of the image's data, so a re-run takes seconds instead of its helper VM's minute. Printed: each
field where the two disagree (distro, major/minor version, arch, hostname, package format and management, osinfo,
product name, mountpoints, filesystems, and every application's epoch, version, release, arch, source package and
summary), and how many times faster dom0 is. Exit 1 when a field differs or dom0 is under 100x faster.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "data"))

import ostrees  # noqa: E402  (the image recipe lives with the test data)
import paritykit  # noqa: E402
from list_bench import allow_bytecode  # noqa: E402

from dom0 import run  # noqa: E402

RUNS = 5
BAR = 100.0
DOM0 = Path(sys.executable).parent / "dom0"


def image(tree: Path) -> Path:
    """The packed image of this tree, built once per set of inputs and reused."""
    return paritykit.cached_image(
        "plain-debian12", paritykit.tree_inputs(tree), lambda out: paritykit.pack_debian12(tree, out)
    )


def time_dom0(img: Path) -> tuple[float, bytes, str]:
    """Median wall time of RUNS `dom0 image inspect IMG --json --applications` after a warm-up, its JSON, and its
    error when it failed."""
    cmd = [str(DOM0), "image", "inspect", str(img), "--json", "--applications"]
    first = run.run(cmd, check=False, timeout=120)
    if first.returncode != 0:
        return 0.0, b"", first.stderr.decode(errors="replace").strip()
    times = []
    out = first.stdout
    for _ in range(RUNS):
        start = time.perf_counter()
        out = run.run(cmd, timeout=120).stdout
        times.append(time.perf_counter() - start)
    return statistics.median(times), out, ""


def main() -> int:
    """Build or reuse the image, run both tools, print what differs and the ratio; 1 on a difference or < 100x."""
    tree = ostrees.debootstrap_tree()
    if tree is None:
        print("inspector_parity_bench: no debootstrapped Debian 12 root (needs root, debootstrap and a mirror once)")
        return 1
    print(allow_bytecode())
    start = time.perf_counter()
    img = image(tree)
    ready = time.perf_counter() - start
    print(f"image: {img} (2 GiB sparse, MBR: /boot on partition 1, / on 2), ready in {ready:.1f} s")
    dom0_time, dom0_out, dom0_error = time_dom0(img)
    if dom0_error:
        print(f"dom0 image inspect failed: {dom0_error}")
        print("FAIL")
        return 1
    dom0 = paritykit.from_dom0(json.loads(dom0_out))
    print(f"dom0 image inspect --json --applications  median {dom0_time * 1000:8.1f} ms of {RUNS}")
    vi_run = paritykit.virt_inspector(img)
    if vi_run.xml is None or vi_run.seconds is None:
        print(f"virt-inspector: skipped: {vi_run.note}")
        print(f"dom0 found {dom0.fields['distro']} {dom0.fields['major_version']}, {len(dom0.apps)} applications")
        print("ok (nothing to compare with)")
        return 0
    vi = paritykit.from_xml(vi_run.xml)
    print(f"virt-inspector -a                         {vi_run.seconds * 1000:8.1f} ms, {vi_run.note}")
    failed = False
    diffs = paritykit.differences(vi, dom0)
    compared = len(paritykit.OS_FIELDS) + 2 + len(vi.apps) * len(paritykit.APP_FIELDS)
    for line in diffs:
        print(f"differs: {line}")
    if diffs:
        failed = True
    else:
        print(
            f"same: {', '.join(paritykit.OS_FIELDS)}, mountpoints {sorted(vi.mountpoints)}, "
            f"filesystems {sorted(vi.filesystems)}, {len(vi.apps)} applications ({compared} values in all)"
        )
    ratio = vi_run.seconds / dom0_time
    print(f"  dom0 is {ratio:.0f}x faster than virt-inspector (bar {BAR:g}x); load average {os.getloadavg()[0]:.2f}")
    failed |= ratio < BAR
    print("FAIL" if failed else "ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
