"""`dom0 clone` against the seed's `dd bs=1M` of the disk and against `virt-clone`, on a 2 GiB disk with ~600 MiB.

The source is a real QEMU guest (libvirt domain type qemu, named dom0bench-clone-src) booting the test kit's
`identity` mode: its one disk is a 2 GiB sparse raw file holding an ext4 filesystem with a Debian 12 tree and
~600 MiB of the host's own /usr files. One run measures, each contestant taking turns and the page cache dropped
before every timed copy (so each reads its source from disk), and each copy flushed (`sync -f` of the
destination inside the timing):
  - the seed's way: `dd if=DISK of=COPY bs=1M conv=fsync` with the guest paused;
  - `dom0 clone SRC NEW --pause` (a full sparse copy on ext4, the definition and the identity reset included);
  - with the source shut off: `virt-clone --auto-clone` and `dom0 clone --offline` (virt-clone refuses running
    guests);
  - `dom0 clone --mode reflink` of the running guest moved onto a btrfs loop filesystem of the bench's own;
  - `dom0 clone --mode overlay` of the running guest converted to qcow2.
Each dom0 clone is also timed as a `--dry-run` (cold), which shows what dom0 spends before copying anything, and
the reflink and overlay clones once more with the caches warm, for reference. The first dom0 clone is booted
once: its console must show its new hostname. The bars (issue 6): dd / dom0 at least 3, reflink and overlay clones
(cold) under 1 s, on medians of 3. Exit 1 when a bar is missed or something fails.
Only the guests it creates are touched; they, their files, any storage pool virt-clone made for the bench's
directories, and the btrfs mount are removed at the end whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import sys
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from xml.etree import ElementTree as ET

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "data"))

import imagebuild  # noqa: E402  (the image builders live with the test data)
import ostrees  # noqa: E402
from benchkit import BenchFailure, wait_until  # noqa: E402  (beside this script)

from dom0 import run  # noqa: E402
from dom0.errors import CommandError  # noqa: E402
from integration import guestkit  # noqa: E402  (the test guests' kit lives with the integration tests)

URI = "qemu:///system"
BENCH_DIR = Path("/var/tmp/dom0-bench-clone")
PREFIX = "dom0bench-clone-"
SOURCE = f"{PREFIX}src"
DOM0 = Path(sys.executable).parent / "dom0"
ROUNDS = 3
DISK_BYTES = 2 << 30
DATA_MIB = 600
# Where the ~600 MiB come from: the host's libraries and shared data, as a real root disk holds them.
DATA_SOURCES: tuple[tuple[str, int], ...] = (("/usr/lib", 420), ("/usr/share", 180))
BAR_VS_DD = 3.0
BAR_FAST_S = 1.0
MiB = 1 << 20
IDENTITY = re.compile(r"dom0test identity hostname=(\S*) ip=(\S*) mac=(\S*) machine-id=(\S*)")


@dataclass
class Made:
    """Everything this run created that outlives a step: removed at the end, and nothing else."""

    names: set[str] = field(default_factory=set)  # guests this run defined (or let dom0/virt-clone define)
    pools_before: set[str] = field(default_factory=set)
    mount: Path | None = None


def virsh(*args: str, check: bool = True, timeout: float = 300) -> str:
    """virsh against qemu:///system, quiet; its stdout."""
    return run.run(["virsh", "-q", "-c", URI, *args], check=check, timeout=timeout).stdout.decode(errors="replace")


def guest_names() -> set[str]:
    return set(virsh("list", "--all", "--name", check=False).split())


def state(name: str) -> str:
    return virsh("domstate", name, check=False).strip()


def drop_caches() -> None:
    """Flush and drop the page cache, so the next copy reads its source from disk (as the first copy of a day)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def timed_copy(
    cmd: Sequence[str], dest: Callable[[str], Path], *, cold: bool = True, timeout: float = 900
) -> tuple[float, str]:
    """Cold cache, then the wall time of `cmd` plus a `sync -f` of the file it wrote (dest(stdout)); its stdout."""
    if cold:
        drop_caches()
    else:
        os.sync()  # nothing earlier left to flush inside the timing
    start = time.perf_counter()
    out = run.run(cmd, timeout=timeout).stdout.decode(errors="replace")
    run.run(["sync", "-f", str(dest(out))], timeout=timeout)
    return time.perf_counter() - start, out


# -- the source guest ----------------------------------------------------------------------------------------------


def _data_files(sources: Sequence[tuple[str, int]]) -> list[tuple[Path, int]]:
    """Regular readable files from each source in sorted order, up to its budget in MiB, with their sizes."""
    chosen: list[tuple[Path, int]] = []
    for top, budget_mib in sources:
        left = budget_mib * MiB
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path.is_symlink() or not path.is_file() or not os.access(path, os.R_OK):
                    continue
                size = path.stat().st_size
                if 0 < size <= left:
                    chosen.append((path, size))
                    left -= size
            if left < MiB:
                break
    return chosen


def build_root_disk(path: Path, scratch: Path) -> int:
    """The source's disk: 2 GiB sparse raw, ext4 with a Debian 12 tree the identity guest reads, plus host files.

    Returns the bytes of host files packed.
    """
    tree = ostrees.debian12().build(scratch / "tree")
    guestkit.identity_tree(tree)
    packed = 0
    for src, size in _data_files(DATA_SOURCES):
        dst = tree / str(src).lstrip("/")
        if dst.exists() or dst.is_symlink():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        packed += size
    imagebuild.mkfs("ext4", path, DISK_BYTES, str(uuidlib.uuid4()), "root", tree=tree)
    shutil.rmtree(tree)
    path.chmod(0o666)
    return packed


def define_source(kit: guestkit.Kit, uuid: str, disk: Path, guest_dir: Path, fmt: str = "raw") -> Path:
    """(Re)define the source guest on `disk` (its console log in guest_dir) and start it; its console log."""
    xml = guestkit.domain_xml(
        name=SOURCE, uuid=uuid, kit=kit, guest_dir=guest_dir, disks=[disk], mode="identity", memory_mib=128
    )
    if fmt != "raw":
        xml = xml.replace(
            f"<driver name='qemu' type='raw'/>\n      <source file='{disk}'/>",
            f"<driver name='qemu' type='{fmt}'/>\n      <source file='{disk}'/>",
        )
    (guest_dir / "domain.xml").write_text(xml)
    virsh("define", str(guest_dir / "domain.xml"))
    virsh("start", SOURCE)
    log = guest_dir / "console.log"
    identity(log, "source-vm", 180)
    return log


def identity(log: Path, hostname: str, timeout: float) -> tuple[str, ...]:
    """Wait for the guest's identity line on its console; it must name `hostname`."""
    found: list[tuple[str, ...]] = []

    def seen() -> bool:
        text = log.read_text(errors="replace") if log.exists() else ""
        if m := IDENTITY.search(text):
            found.append(m.groups())
            return True
        return False

    try:
        wait_until(f"an identity line on {log}", seen, timeout)
    except BenchFailure:
        tail = log.read_text(errors="replace")[-800:] if log.exists() else "(no log)"
        raise BenchFailure(f"no 'dom0test identity' line within {timeout:g} s in {log}:\n{tail}") from None
    if found[0][0] != hostname:
        raise BenchFailure(f"{log}: the guest says hostname={found[0][0]}, not {hostname}")
    return found[0]


def stop_source() -> None:
    """Power the source off (ACPI; destroy if it does not go within 60 s)."""
    if state(SOURCE) == "shut off":
        return
    virsh("shutdown", SOURCE, check=False)
    try:
        wait_until(f"{SOURCE} shut off", lambda: state(SOURCE) == "shut off", 60)
    except BenchFailure:
        virsh("destroy", SOURCE, check=False)


# -- the contestants -----------------------------------------------------------------------------------------------


def dom0_clone(made: Made, new: str, *extra: str, cold: bool = True) -> tuple[float, list[dict[str, Any]]]:
    """Time `dom0 clone SOURCE NEW --hostname NEW ... --json` (cold cache, copies flushed); its disks' steps."""
    made.names.add(new)
    cmd = [str(DOM0), "-c", URI, "clone", SOURCE, new, "--hostname", new, *extra, "--json"]
    secs, out = timed_copy(cmd, lambda out: Path(json.loads(out)["disks"][0]["dest"]), cold=cold)
    disks: list[dict[str, Any]] = json.loads(out)["disks"]
    return secs, disks


def dom0_plan(times: Times, key: str, new: str, *extra: str) -> None:
    """Time the same clone's `--dry-run` (cold cache): what dom0 spends before copying anything."""
    cmd = [str(DOM0), "-c", URI, "clone", SOURCE, new, "--hostname", new, *extra, "--dry-run", "--json"]
    drop_caches()
    start = time.perf_counter()
    run.run(cmd, timeout=300)
    times.dry.setdefault(key, []).append(time.perf_counter() - start)


def dd_copy(disk: Path, copy: Path) -> float:
    """The seed's copy, with the source paused as its frozen snapshot would be (pausing is not timed)."""
    virsh("suspend", SOURCE)
    try:
        secs, _ = timed_copy(
            ["dd", f"if={disk}", f"of={copy}", "bs=1M", "conv=fsync", "status=none"], lambda _out: copy
        )
    finally:
        virsh("resume", SOURCE)
    copy.unlink()
    return secs


def virt_clone(made: Made, new: str) -> float:
    """Time `virt-clone --original SOURCE --name NEW --auto-clone` (cold cache, its copy flushed)."""
    made.names.add(new)
    cmd = ["virt-clone", "--connect", URI, "--original", SOURCE, "--name", new, "--auto-clone"]
    secs, _ = timed_copy(cmd, lambda _out: disk_paths(new)[0])
    return secs


def disk_paths(name: str) -> list[Path]:
    root = ET.fromstring(virsh("dumpxml", name))
    return [Path(s.get("file", "")) for s in root.iterfind("./devices/disk/source") if s.get("file")]


def console_log(name: str) -> Path:
    root = ET.fromstring(virsh("dumpxml", name))
    node = root.find("./devices/serial/log")
    if node is None or not node.get("file"):
        raise BenchFailure(f"{name} has no serial console log file in its definition")
    return Path(node.get("file", ""))


def remove_guest(made: Made, name: str) -> None:
    """Destroy and undefine a guest this run made, and delete its disk files (all under BENCH_DIR)."""
    if name not in made.names or name not in guest_names():
        return
    files = set(disk_paths(name)) - set(disk_paths(SOURCE))  # an overlay clone's base is the source's
    virsh("destroy", name, check=False)
    virsh("undefine", name, check=False)
    for f in files:
        if f.is_relative_to(BENCH_DIR):
            f.unlink(missing_ok=True)


def check_clone_boots(made: Made, new: str) -> None:
    """The clone starts and its console shows its new hostname (the source is untouched)."""
    virsh("start", new)
    got = identity(console_log(new), new, 180)
    print(f"clone {new} booted: hostname={got[0]} ip={got[1]} mac={got[2]} machine-id={got[3]}")
    remove_guest(made, new)


# -- the run -------------------------------------------------------------------------------------------------------


@dataclass
class Times:
    dd: list[float] = field(default_factory=list)
    pause: list[float] = field(default_factory=list)
    virt_clone: list[float] = field(default_factory=list)
    offline: list[float] = field(default_factory=list)
    reflink: list[float] = field(default_factory=list)
    overlay: list[float] = field(default_factory=list)
    virt_clone_skipped: str = ""
    dry: dict[str, list[float]] = field(default_factory=dict)  # the plan alone (--dry-run), per kind of clone
    warm: dict[str, float] = field(default_factory=dict)  # caches not dropped, per --mode


def all_names() -> list[str]:
    kinds = ("copy", "offline", "virt", "reflink", "overlay")
    warm = (f"{PREFIX}reflink-warm", f"{PREFIX}overlay-warm")
    return [SOURCE, *warm, *(f"{PREFIX}{k}{i}" for k in kinds for i in range(1, ROUNDS + 1))]


def warm_run(made: Made, times: Times, mode: str) -> None:
    """One more clone right after the cold ones, dom0's own files still cached: for reference, not the bar."""
    new = f"{PREFIX}{mode}-warm"
    times.warm[mode], _ = dom0_clone(made, new, "--mode", mode, cold=False)
    remove_guest(made, new)


def ext4_phase(made: Made, times: Times, kit: guestkit.Kit, uuid: str) -> None:
    ext4 = BENCH_DIR / "ext4"
    ext4.mkdir()
    ext4.chmod(0o755)
    disk = ext4 / f"{SOURCE}.img"
    packed = build_root_disk(disk, ext4)
    used = disk.stat().st_blocks * 512
    print(
        f"source disk: {DISK_BYTES / MiB:.0f} MiB raw, {used / MiB:.0f} MiB allocated "
        f"(ext4: a Debian 12 tree + {packed / MiB:.0f} MiB of host files from /usr/lib and /usr/share)"
    )
    made.names.add(SOURCE)
    define_source(kit, uuid, disk, ext4)
    for i in range(1, ROUNDS + 1):
        dom0_plan(times, "pause", f"{PREFIX}copy{i}", "--pause")
        times.dd.append(dd_copy(disk, ext4 / "dd-copy.img"))
        secs, disks = dom0_clone(made, f"{PREFIX}copy{i}", "--pause")
        times.pause.append(secs)
        if state(SOURCE) != "running":
            raise BenchFailure(f"{SOURCE} is {state(SOURCE)!r} after dom0 clone --pause, not running")
        dest = Path(disks[0]["dest"])
        if dest.stat().st_blocks * 512 > used + 64 * MiB:
            raise BenchFailure(f"dom0's copy {dest} is not sparse: {dest.stat().st_blocks * 512 / MiB:.0f} MiB")
        if i == 1:
            check_clone_boots(made, f"{PREFIX}copy{i}")
        remove_guest(made, f"{PREFIX}copy{i}")
    stop_source()
    if not run.available("virt-clone"):
        times.virt_clone_skipped = "virt-clone is not installed (Debian package virtinst)"
    for i in range(1, ROUNDS + 1):
        if not times.virt_clone_skipped:
            try:
                times.virt_clone.append(virt_clone(made, f"{PREFIX}virt{i}"))
            except CommandError as exc:
                times.virt_clone_skipped = f"virt-clone failed: {exc}"
            remove_guest(made, f"{PREFIX}virt{i}")
            remove_pools(made)
        secs, _ = dom0_clone(made, f"{PREFIX}offline{i}", "--offline")
        times.offline.append(secs)
        remove_guest(made, f"{PREFIX}offline{i}")


def mount_btrfs(made: Made) -> Path:
    backing = BENCH_DIR / "btrfs.img"
    mnt = BENCH_DIR / "btrfs"
    imagebuild.sparse(backing, 4 << 30)
    run.run(["mkfs.btrfs", "-q", "-f", str(backing)])
    mnt.mkdir()
    run.run(["mount", "-o", "loop", str(backing), str(mnt)])
    made.mount = mnt
    mnt.chmod(0o755)
    return mnt


def reflink_phase(made: Made, times: Times, kit: guestkit.Kit, uuid: str) -> None:
    mnt = mount_btrfs(made)
    disk = mnt / f"{SOURCE}.img"
    run.run(["cp", "--sparse=always", str(BENCH_DIR / "ext4" / f"{SOURCE}.img"), str(disk)], timeout=900)
    disk.chmod(0o666)
    define_source(kit, uuid, disk, mnt)
    for i in range(1, ROUNDS + 1):
        dom0_plan(times, "reflink", f"{PREFIX}reflink{i}", "--mode", "reflink")
        secs, disks = dom0_clone(made, f"{PREFIX}reflink{i}", "--mode", "reflink")
        times.reflink.append(secs)
        methods = [d["method"] for d in disks]
        if methods != ["reflink"] or state(SOURCE) != "running":
            raise BenchFailure(f"dom0 clone --mode reflink: disks {methods}, source {state(SOURCE)!r}")
        remove_guest(made, f"{PREFIX}reflink{i}")
    warm_run(made, times, "reflink")
    stop_source()


def overlay_phase(made: Made, times: Times, kit: guestkit.Kit, uuid: str) -> None:
    qdir = BENCH_DIR / "qcow2"
    qdir.mkdir()
    qdir.chmod(0o755)
    disk = qdir / f"{SOURCE}.qcow2"
    run.run(["qemu-img", "convert", "-O", "qcow2", str(BENCH_DIR / "ext4" / f"{SOURCE}.img"), str(disk)], timeout=900)
    disk.chmod(0o666)
    define_source(kit, uuid, disk, qdir, fmt="qcow2")
    for i in range(1, ROUNDS + 1):
        dom0_plan(times, "overlay", f"{PREFIX}overlay{i}", "--mode", "overlay")
        secs, disks = dom0_clone(made, f"{PREFIX}overlay{i}", "--mode", "overlay")
        times.overlay.append(secs)
        methods = [d["method"] for d in disks]
        if methods != ["qcow2 overlay"] or state(SOURCE) != "running":
            raise BenchFailure(f"dom0 clone --mode overlay: disks {methods}, source {state(SOURCE)!r}")
        remove_guest(made, f"{PREFIX}overlay{i}")
    warm_run(made, times, "overlay")


def remove_pools(made: Made) -> None:
    """Storage pools virt-clone defined for the bench's directories (only those: others are not ours)."""
    for pool in set(virsh("pool-list", "--all", "--name", check=False).split()) - made.pools_before:
        try:
            target = ET.fromstring(virsh("pool-dumpxml", pool)).findtext("./target/path") or ""
        except (CommandError, ET.ParseError):
            continue
        if Path(target).is_relative_to(BENCH_DIR):
            virsh("pool-destroy", pool, check=False)
            virsh("pool-undefine", pool, check=False)


def clean_up(made: Made) -> None:
    """Every guest, pool, mount and file this run made; nothing else."""
    for name in [*sorted(made.names - {SOURCE}), SOURCE]:
        if name in made.names and name in guest_names():
            virsh("destroy", name, check=False)
            virsh("undefine", name, check=False)
    remove_pools(made)
    if made.mount is not None:
        run.run(["umount", str(made.mount)], check=False)
    shutil.rmtree(BENCH_DIR, ignore_errors=True)


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def report(times: Times) -> list[str]:
    """Print the medians and ratios; the bars missed."""
    med = {k: statistics.median(v) for k, v in vars(times).items() if isinstance(v, list) and v}
    print(f"each time: median of {ROUNDS}, page cache dropped before each (echo 3 > /proc/sys/vm/drop_caches),")
    print("  the copy flushed inside the timing (dd conv=fsync; `sync -f` of the new file after every command)")
    rows = [
        ("dd bs=1M conv=fsync (guest paused)", "dd"),
        ("dom0 clone --pause (sparse copy)", "pause"),
        ("virt-clone --auto-clone (shut off)", "virt_clone"),
        ("dom0 clone --offline (shut off)", "offline"),
        ("dom0 clone --mode reflink (btrfs)", "reflink"),
        ("dom0 clone --mode overlay (qcow2)", "overlay"),
    ]
    for label, key in rows:
        if key in med:
            runs = " ".join(f"{t:.2f}" for t in getattr(times, key))
            print(f"{label:38s} {med[key]:7.2f} s   ({runs})")
        if key in times.dry:
            runs = " ".join(f"{t:.2f}" for t in times.dry[key])
            plan = statistics.median(times.dry[key])
            print(f"{'  the same, planned only (--dry-run)':38s} {plan:7.2f} s   ({runs})")
    if times.virt_clone_skipped:
        print(f"virt-clone skipped: {times.virt_clone_skipped}")
    missed = []
    ratio = med["dd"] / med["pause"]
    print(f"{'dd / dom0 clone --pause':38s} {ratio:7.2f}     (bar >= {BAR_VS_DD:.1f})")
    if ratio < BAR_VS_DD:
        missed.append(f"dd / dom0 clone is {ratio:.2f}, below the bar of {BAR_VS_DD:.1f}")
    if "virt_clone" in med:
        print(f"{'virt-clone / dom0 clone --offline':38s} {med['virt_clone'] / med['offline']:7.2f}")
        print(f"{'virt-clone / dom0 clone --pause':38s} {med['virt_clone'] / med['pause']:7.2f}")
    for key in ("reflink", "overlay"):
        print(f"{'dom0 clone --mode ' + key:38s} {med[key]:7.2f} s   (bar < {BAR_FAST_S:.1f} s)")
        if key in times.warm:
            print(f"{'  once more, caches not dropped':38s} {times.warm[key]:7.2f} s   (for reference)")
        if med[key] >= BAR_FAST_S:
            missed.append(f"dom0 clone --mode {key} takes {med[key]:.2f} s, not under {BAR_FAST_S:.1f} s")
    return missed


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so the guests, mount and files are still removed


def main() -> int:
    """Build the source guest, run every contestant, print the ratios; 1 when a bar is missed or a step failed."""
    if os.geteuid() != 0:
        print("clone_bench: needs root (guests at qemu:///system, loop mounts, drop_caches)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _terminate)
    if clash := sorted(set(all_names()) & guest_names()):
        print(
            f"FAIL: guest(s) {', '.join(clash)} already exist (left by an interrupted run?); "
            "remove them with virsh destroy/undefine and run again"
        )
        return 1
    if BENCH_DIR.exists():
        run.run(["umount", str(BENCH_DIR / "btrfs")], check=False)
        shutil.rmtree(BENCH_DIR)
    BENCH_DIR.mkdir(parents=True)
    BENCH_DIR.chmod(0o755)
    made = Made(pools_before=set(virsh("pool-list", "--all", "--name").split()))
    times = Times()
    print(f"host: {os.cpu_count()} cores, load average {load()} (1/5/15 min) at the start")
    # An installed dom0 has its bytecode compiled (pip does it); this environment may set PYTHONDONTWRITEBYTECODE,
    # and then every timed run would compile dom0's modules from source again.
    run.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src" / "dom0")], timeout=300)
    try:
        kit = guestkit.build_kit(modules=guestkit.IDENTITY_MODULES)
        uuid = str(uuidlib.uuid4())
        ext4_phase(made, times, kit, uuid)
        reflink_phase(made, times, kit, uuid)
        overlay_phase(made, times, kit, uuid)
    except (BenchFailure, CommandError, OSError, KeyError, ValueError) as exc:
        print(f"FAIL: {exc}")
        return 1
    finally:
        print(f"host: load average {load()} (1/5/15 min) at the end")
        clean_up(made)
    missed = report(times)
    for m in missed:
        print(f"FAIL: {m}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
