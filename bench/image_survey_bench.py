"""`dom0 image inspect --all` over a host of 50 guests, against 50 `dom0 image inspect PATH` runs and virt-inspector.

The bench builds ten distinct guest disks from tests/data/ostrees.py trees (Debian 4 and 12, Ubuntu 22.04, CentOS
5.3, Rocky 9, Fedora 39, SLES 10, openSUSE Leap 42, Alpine, Gentoo), laid out as guests' disks are: MBR with the
root at sector 63 or 2048, GPT, a filesystem on the whole disk; raw or qcow2; 1 GiB and sparse. Each of the 50
guests gets its own sparse copy of one of them, and a libvirt test-driver node file (tests/data/nodegen.py) defines
the 50 guests, running, blocked, paused or shut off, with their disks pointing at those files.

Timed, taking turns, one warm-up and then the median of RUNS: `dom0 -c test:///NODE image inspect --all --json`
against the loop an admin writes today (`dom0 image inspect PATH --json` for each of the 50 disks, one process
each); and `virt-inspector -a IMG` once on one image, times 50 (it boots a helper VM per call; under TCG here).
The goal: all 50 in at most 2 s on this machine, every guest a row with no error and its right distribution and
version. Exit 1 when that is missed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "data"))

import imagebuild  # noqa: E402  (the image builders live with the test data)
import ostrees  # noqa: E402
from benchkit import BenchFailure  # noqa: E402  (beside this script)
from image_inspect_bench import virt_inspector  # noqa: E402
from list_bench import DOM0, allow_bytecode, medians, runs_ms  # noqa: E402
from nodegen import DiskSpec, GuestSpec, node_xml  # noqa: E402

from dom0 import run  # noqa: E402
from dom0.errors import CommandError  # noqa: E402

GUESTS = 50
# The loop of 50 processes takes 20-30 s a round here, so five rounds keep the bench near four minutes.
RUNS = 5
GOAL_S = 2.0
GiB = 1024 * 1024 * 1024
SECTOR = 512

# One process per image, as an admin's shell loop runs it; stop at the first failure so a broken image shows.
SEQUENTIAL = r'dom0=$1; shift; for img; do "$dom0" image inspect "$img" --json || exit 1; done'


@dataclass(frozen=True)
class Disk:
    """One distinct guest disk: which tree, how it is laid out, in which format."""

    tree: Callable[[], ostrees.OSTree]
    layout: str  # 'mbr63', 'mbr2048', 'gpt' or 'whole'
    format: str  # 'raw' or 'qcow2'


DISKS = (
    Disk(ostrees.debian12, "mbr2048", "raw"),
    Disk(ostrees.ubuntu22, "gpt", "raw"),
    Disk(ostrees.centos53, "mbr63", "raw"),
    Disk(ostrees.rocky9, "mbr2048", "qcow2"),
    Disk(ostrees.alpine, "whole", "raw"),
    Disk(ostrees.fedora39, "gpt", "qcow2"),
    Disk(ostrees.sles10, "mbr63", "raw"),
    Disk(ostrees.debian4, "whole", "raw"),
    Disk(ostrees.gentoo, "mbr2048", "qcow2"),
    Disk(ostrees.opensuse_leap42, "gpt", "raw"),
)

# Mostly running and quiet guests, as on a real host, with some shut off and one paused in every cycle.
STATES = ("running", "blocked", "shutoff", "running", "paused", "blocked", "shutoff")


def build_disk(base: Path, n: int, disk: Disk) -> tuple[Path, ostrees.OSTree]:
    """The n-th distinct disk under `base`: its image file, and the tree (with its expectations) inside."""
    tree = disk.tree()
    root = tree.build(base / f"tree{n}")
    raw = base / f"{tree.name}-{disk.layout}.img"
    uuid = f"0d0e0000-0000-4000-8000-0000000005{n:02d}"
    if disk.layout == "whole":
        imagebuild.mkfs("ext4", raw, GiB, uuid, "root", tree=root)
    else:
        start = 63 if disk.layout == "mbr63" else 2048
        imagebuild.sparse(raw, GiB)
        if disk.layout == "gpt":
            # GPT keeps a backup table in the disk's last 33 sectors: the root stops short of them.
            size = GiB - (start + 34) * SECTOR
            imagebuild.sfdisk(raw, f"label: gpt\nstart={start}, size={size // SECTOR}, type=linux\n")
        else:
            size = GiB - start * SECTOR
            imagebuild.sfdisk(raw, f"label: dos\nstart={start}, type=83, bootable\n")
        part = imagebuild.mkfs("ext4", base / f"part{n}", size, uuid, "root", tree=root)
        imagebuild.place(raw, start * SECTOR, part)
        part.unlink()
    shutil.rmtree(root)
    if disk.format == "raw":
        return raw, tree
    image = imagebuild.qcow2(raw, raw.with_suffix(".qcow2"))
    raw.unlink()
    return image, tree


def build_host(base: Path) -> tuple[Path, list[tuple[GuestSpec, Path, ostrees.OSTree]]]:
    """The 50 guests' disks (each its own sparse file) and the node file defining the guests; returns the node
    and, per guest, its spec, its disk and the tree inside it."""
    masters = [build_disk(base, n, disk) for n, disk in enumerate(DISKS)]
    images = base / "images"
    images.mkdir()
    guests = []
    for i in range(GUESTS):
        master, tree = masters[i % len(DISKS)]
        disk = DISKS[i % len(DISKS)]
        name = f"g{i:02d}-{tree.name}"
        path = images / f"{name}{master.suffix}"
        run.run(["cp", "--sparse=always", str(master), str(path)])
        boot = ("kernel", "bootloader", "firmware")[i % 3]
        target, bus = ("vda", "virtio") if boot == "firmware" else ("xvda", "xen")
        spec = GuestSpec(
            name=name,
            uuid=f"d0d0d0d0-0000-4000-8000-0000000016{i:02d}",
            state=STATES[i % len(STATES)],
            max_memory_kib=512 * 1024,
            memory_kib=512 * 1024,
            vcpus=1,
            boot=boot,
            disks=(DiskSpec("file", str(path), target, bus, disk.format),),
            nics=(),
        )
        guests.append((spec, path, tree))
    for master, _ in masters:
        master.unlink()
    node = base / "node.xml"
    node.write_text(node_xml([spec for spec, _, _ in guests]))
    return node, guests


def check_rows(out: bytes, guests: list[tuple[GuestSpec, Path, ostrees.OSTree]]) -> list[str]:
    """What is wrong with `--all --json` for these guests (empty when every row is right)."""
    try:
        rows = json.loads(out)
    except ValueError as exc:
        return [f"dom0 image inspect --all --json printed no JSON list: {exc}"]
    if not isinstance(rows, list):
        return ["dom0 image inspect --all --json printed no JSON list"]
    by_name = {r.get("guest"): r for r in rows if isinstance(r, dict)}
    problems = []
    if len(rows) != len(guests) or set(by_name) != {spec.name for spec, _, _ in guests}:
        problems.append(f"{len(rows)} rows, not one for each of the {len(guests)} guests")
    for spec, _, tree in guests:
        r = by_name.get(spec.name)
        if r is None:
            continue
        want = (tree.expected["distro"], tree.expected["version"])
        row = r.get("row") or {}
        got = (row.get("distro"), row.get("version"))
        if r.get("error") is not None:
            problems.append(f"{spec.name}: error: {r['error']}")
        elif got != want:
            problems.append(f"{spec.name}: expected {want[0]} {want[1]}, got {got[0]} {got[1]}")
    return problems


def main() -> int:
    """Build the host, time the three, print both ratios; 1 when the goal is missed or a row is wrong."""
    for tool in ("sfdisk", "mkfs.ext4", "qemu-img", "cp"):
        if shutil.which(tool) is None:
            print(f"image_survey_bench: {tool} is missing; run scripts/setup-host.sh", file=sys.stderr)
            return 1
    bytecode = allow_bytecode()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dom0-bench-") as tmp:
        try:
            node, guests = build_host(Path(tmp))
        except (CommandError, OSError) as exc:
            raise BenchFailure(f"building the guests' disks failed: {exc}") from exc
        paths = [str(path) for _, path, _ in guests]
        results = medians(
            {
                "all": [str(DOM0), "-c", f"test://{node}", "image", "inspect", "--all", "--json"],
                "loop": ["sh", "-c", SEQUENTIAL, "inspect-loop", str(DOM0), *paths],
            },
            RUNS,
        )
        # virt-inspector on the first guest's disk (Debian 12: image_inspect_bench's check looks for Debian).
        vi_time, vi_note = virt_inspector(guests[0][1])
        used = sum(Path(p).stat().st_blocks * 512 for p in paths)
    all_s, all_runs, all_out = results["all"]
    loop_s, loop_runs, _ = results["loop"]
    states = {spec.state for spec, _, _ in guests}
    print(
        f"host: {GUESTS} guests on test:// ({', '.join(sorted(states))}), each disk its own 1 GiB sparse file "
        f"({len(DISKS)} distributions; MBR at 63 and 2048, GPT, whole-disk; raw and qcow2; "
        f"{used / 2**20:.0f} MiB allocated in all)"
    )
    print(f"{bytecode}; median of {RUNS} after a warm-up, taking turns")
    # --all runs its readers in parallel, so what else the host runs shows in its time more than in the loop's.
    print(f"load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, on {os.cpu_count()} CPUs")
    print(f"dom0 image inspect --all --json       {all_s:7.2f} s   runs: {runs_ms(all_runs)} ms")
    print(f"{GUESTS} x dom0 image inspect PATH --json  {loop_s:7.2f} s   runs: {runs_ms(loop_runs)} ms")
    print(f"  --all is {loop_s / all_s:.1f}x faster than {GUESTS} separate runs")
    if vi_time is None:
        print(f"virt-inspector: skipped: {vi_note}")
    else:
        print(
            f"virt-inspector -a IMG, one image      {vi_time:7.2f} s   {vi_note}; x {GUESTS} = {vi_time * GUESTS:.0f} s"
        )
        print(f"  --all is {vi_time * GUESTS / all_s:.0f}x faster than virt-inspector on every image")
    failures = check_rows(all_out, guests)
    if all_s > GOAL_S:
        failures.append(f"--all over {GUESTS} guests took {all_s:.2f} s (goal: at most {GOAL_S:g} s)")
    for f in failures:
        print(f"FAIL: {f}")
    if not failures:
        print("ok")
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchFailure, CommandError) as exc:
        print(f"image_survey_bench: {exc}", file=sys.stderr)
        sys.exit(1)
