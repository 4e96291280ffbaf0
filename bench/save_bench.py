"""`dom0 save` / `dom0 restore --all` against the seed's way: sequential `virsh save`, then `gzip -3` of each image.

Four real QEMU guests of 256 MiB (libvirt domain type qemu, named dom0bench-save-N) whose RAM holds ~140 MiB of
real host files (guestkit's `memfill` mode), saved and restored both ways in one run. The bars (issue 5):
dom0 save <= 0.5x of virsh save + gzip -3, <= 1.0x of virsh save alone; dom0's stored images <= 40% of the raw
ones; dom0 restore --all <= 1.0x of sequential virsh restore. It also prints python-zstandard's throughput and
ratio at levels 1/2/3/6 on one and two threads, on one raw image, so dom0's default level is chosen by measurement.
Exit 1 when a bar is missed or a guest does not come back running (and still ticking) after a restore.
Only the guests it creates are touched; they and /var/tmp/dom0-bench are removed at the end whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from benchkit import BenchFailure, wait_until  # noqa: E402  (beside this script)

from dom0 import run  # noqa: E402
from dom0.errors import CommandError  # noqa: E402
from integration import guestkit  # noqa: E402  (the test guests' kit lives with the integration tests)

URI = "qemu:///system"
BENCH_DIR = Path("/var/tmp/dom0-bench")
PREFIX = "dom0bench-save-"
GUESTS = 4
MEMORY_MIB = 256
DOM0 = Path(sys.executable).parent / "dom0"
BAR_VS_SEED = 0.5
BAR_VS_VIRSH_SAVE = 1.0
BAR_STORED = 0.40
BAR_RESTORE = 1.0
MB = 1_000_000
MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class BenchGuest:
    """A guest this bench defined: removed by its UUID at the end, so no other guest can be hit."""

    name: str
    uuid: str
    dir: Path

    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"

    def console(self) -> str:
        try:
            return self.console_log.read_text(errors="replace")
        except OSError:
            return ""


def virsh(*args: str, check: bool = True, timeout: float = 300) -> str:
    """virsh against qemu:///system, quiet; its stdout."""
    return run.run(["virsh", "-q", "-c", URI, *args], check=check, timeout=timeout).stdout.decode(errors="replace")


def timed(action: Callable[[], object]) -> float:
    """Wall time of one call."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def ticks(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"tick (\d+)", text)]


def start_guests(kit: guestkit.Kit, data: Path) -> list[BenchGuest]:
    """Define and start the guests (sharing the read-only data disk); refuse if one of the names is taken."""
    taken = set(virsh("list", "--all", "--name").split())
    names = [f"{PREFIX}{i}" for i in range(1, GUESTS + 1)]
    if clash := [n for n in names if n in taken]:
        raise BenchFailure(
            f"guest(s) {', '.join(clash)} already exist (left by an interrupted run?); "
            "remove them with virsh destroy/undefine and run again"
        )
    guests: list[BenchGuest] = []
    for name in names:
        g = BenchGuest(name=name, uuid=str(uuidlib.uuid4()), dir=BENCH_DIR / name)
        g.dir.mkdir(parents=True)
        g.dir.chmod(0o755)
        xml = guestkit.domain_xml(
            name=name,
            uuid=g.uuid,
            kit=kit,
            guest_dir=g.dir,
            disks=[data],
            memory_mib=MEMORY_MIB,
            mode="memfill",
            nic=False,
            readonly=[data],
        )
        (g.dir / "domain.xml").write_text(xml)
        virsh("define", str(g.dir / "domain.xml"))
        guests.append(g)
        virsh("start", name)
    return guests


def wait_memfilled(guests: Sequence[BenchGuest]) -> None:
    """Every guest copied the data disk into RAM and is ticking."""
    for g in guests:

        def filled(g: BenchGuest = g) -> bool:
            text = g.console()
            if "dom0test memfill FAILED" in text:
                raise BenchFailure(f"{g.name} could not fill its memory; console tail:\n{text[-600:]}")
            return "dom0test memfill done" in text and guestkit.READY in text

        wait_until(f"{g.name}: 'dom0test memfill done' on the console", filled, 600)


def remove_guests(guests: Sequence[BenchGuest]) -> None:
    """Destroy and undefine exactly the bench's guests (by UUID)."""
    known = virsh("list", "--all", "--uuid", check=False).split()
    for g in guests:
        assert g.name.startswith(PREFIX)
        if g.uuid in known:
            virsh("destroy", g.uuid, check=False)
            virsh("undefine", g.uuid, check=False)


def state(g: BenchGuest) -> str:
    return virsh("domstate", g.uuid, check=False).strip()


def consoles_before(guests: Sequence[BenchGuest]) -> dict[str, str]:
    """Each saved guest's console so far, to tell after the restore that it resumed rather than booted."""
    for g in guests:
        if state(g) != "shut off":
            raise BenchFailure(f"{g.name} is {state(g)!r} after its save, not 'shut off'")
    return {g.name: g.console() for g in guests}


def check_resumed(guests: Sequence[BenchGuest], before: dict[str, str], how: str) -> None:
    """Each guest runs again and keeps ticking from where it was saved, without booting again."""
    for g in guests:
        if (s := state(g)) != "running":
            raise BenchFailure(f"{g.name} is {s!r} after {how}, not 'running'")
        last = max(ticks(before[g.name]) or [0])

        def new_output(g: BenchGuest = g) -> str:
            text = g.console()
            old = before[g.name]
            return text[len(old) :] if text.startswith(old) else text  # QEMU rewrites the log when it starts

        wait_until(f"{g.name}: a tick after {last} following {how}", lambda: bool(ticks(new_output())), 90)
        new = new_output()
        if guestkit.READY in new or min(ticks(new)) <= last:
            raise BenchFailure(f"{g.name} booted again after {how} instead of resuming:\n{new[-600:]}")


def seed_way(guests: Sequence[BenchGuest]) -> dict[str, float]:
    """Sequential virsh save, gzip -3 of each image, sequential virsh restore; times and sizes."""
    vdir = BENCH_DIR / "virsh"
    vdir.mkdir()
    files = [vdir / f"{g.name}.save" for g in guests]
    t_save = timed(lambda: [virsh("save", g.name, str(f)) for g, f in zip(guests, files, strict=True)])
    before = consoles_before(guests)
    t_gzip = timed(lambda: [run.run(["gzip", "-3", "-k", "-f", str(f)], timeout=900) for f in files])
    raw = sum(f.stat().st_size for f in files)
    gz = sum(Path(f"{f}.gz").stat().st_size for f in files)
    for f in files:
        Path(f"{f}.gz").unlink()
    zstd_table(files[0])
    os.sync()  # the restore reads what the saves wrote, as after a reboot the files would be on disk
    t_restore = timed(lambda: [virsh("restore", str(f)) for f in files])
    check_resumed(guests, before, "virsh restore")
    shutil.rmtree(vdir)
    return {"save": t_save, "gzip": t_gzip, "restore": t_restore, "raw": raw, "gz": gz}


def zstd_table(image: Path) -> None:
    """python-zstandard on one raw image, for the record: MB/s and ratio per level and thread count."""
    try:
        import zstandard
    except ImportError:
        print("zstandard is not installed: no zstd table (pip install zstandard)")
        return
    data = image.read_bytes()
    print(f"python-zstandard {zstandard.__version__}, raw image of {len(data) / MiB:.0f} MiB, 1 MiB chunks, best of 2")
    for level in (1, 2, 3, 6):
        for threads in (1, 2):
            # threads=0 compresses in the calling thread; 2 means two worker threads
            cctx = zstandard.ZstdCompressor(level=level, threads=0 if threads == 1 else threads)
            secs = float("inf")
            for _ in range(2):  # best of two: the host may be busy with other guests
                start = time.perf_counter()
                comp = cctx.compressobj()
                size = 0
                view = memoryview(data)
                for off in range(0, len(data), MiB):
                    size += len(comp.compress(view[off : off + MiB]))
                size += len(comp.flush())
                secs = min(secs, time.perf_counter() - start)
            print(
                f"  zstd -{level} {threads} thread{'s' if threads > 1 else ' '}  "
                f"{len(data) / MB / secs:6.0f} MB/s  ratio {size / len(data):.3f}"
            )


def dom0_cli_ready() -> bool:
    try:
        run.run([str(DOM0), "save", "--help"], timeout=60)
        run.run([str(DOM0), "restore", "--help"], timeout=60)
    except (CommandError, OSError):
        return False
    return True


def dom0_way(guests: Sequence[BenchGuest]) -> dict[str, float]:
    """dom0 save of the bench's guests into one directory, then dom0 restore --all of it; times and sizes."""
    ddir = BENCH_DIR / "dom0"
    ddir.mkdir()
    names = [g.name for g in guests]
    save = [str(DOM0), "-c", URI, "save", *names, "-d", str(ddir)]
    t_save = timed(lambda: run.run(save, timeout=900))
    before = consoles_before(guests)
    manifests = [json.loads(p.read_text()) for p in sorted(ddir.glob("*.manifest.json"))]
    try:
        # the design nests name/uuid under "guest"; the first implementation writes them at the top level
        saved = sorted(m["guest"]["name"] if "guest" in m else m["name"] for m in manifests)
        stored = sum((ddir / m["image"]).stat().st_size for m in manifests)
        raw = sum(int(m["raw_bytes"]) for m in manifests)
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise BenchFailure(f"dom0 save's manifests are not as designed ({exc!r}): {manifests}") from exc
    if saved != sorted(names):
        raise BenchFailure(f"dom0 save left manifests for {saved}, not {names}")
    os.sync()
    restore = [str(DOM0), "-c", URI, "restore", "--all", str(ddir)]
    t_restore = timed(lambda: run.run(restore, timeout=900))
    check_resumed(guests, before, "dom0 restore --all")
    left = sorted(p.name for p in ddir.iterdir())
    if left:
        print(f"note: dom0 restore left in its directory: {' '.join(left)}")
    shutil.rmtree(ddir)
    return {"save": t_save, "restore": t_restore, "stored": stored, "raw": raw}


def orphan_reap_delay() -> float:
    """Seconds a killed orphan (a process whose parent exited, as libvirt's QEMU is) lingers until init reaps it.

    libvirt's save waits for its QEMU to be gone: on a host whose init reaps late, every virsh save waits that long,
    and sequential saves add it up while dom0's parallel jobs overlap it. Printed so a run can be read for what it is.
    """
    out = run.run(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"], timeout=10).stdout
    pid = int(out.decode().strip())
    start = time.perf_counter()
    os.kill(pid, signal.SIGTERM)
    while time.perf_counter() - start < 30:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.002)
    return time.perf_counter() - start


def report(seed: dict[str, float], dom0: dict[str, float] | None) -> list[str]:
    """Print the times, sizes and ratios; the bars missed."""
    print(f"guests: {GUESTS} x {MEMORY_MIB} MiB, QEMU (TCG), RAM filled from a read-only disk of host files")
    # other guests on the host compete for the same cores: the load tells how much to trust one run
    print(f"host: {os.cpu_count()} cores, load average now {os.getloadavg()[0]:.1f} (1 min)")
    print(f"a killed orphan is reaped after {orphan_reap_delay():.2f} s here (libvirt waits that long after each save)")
    print(f"raw images (virsh save)     {seed['raw'] / MiB:8.1f} MiB")
    print(f"gzip -3 of them             {seed['gz'] / MiB:8.1f} MiB   ratio {seed['gz'] / seed['raw']:.3f}")
    print(f"virsh save x{GUESTS} (sequential) {seed['save']:8.2f} s")
    print(f"gzip -3 of the {GUESTS} images     {seed['gzip']:8.2f} s")
    print(f"virsh save + gzip -3        {seed['save'] + seed['gzip']:8.2f} s")
    print(f"virsh restore x{GUESTS}           {seed['restore']:8.2f} s")
    if dom0 is None:
        return ["dom0 save/restore are not available yet (`dom0 save --help` fails): no dom0 numbers"]
    print(f"dom0 save ({GUESTS} guests)        {dom0['save']:8.2f} s")
    print(f"dom0 restore --all          {dom0['restore']:8.2f} s")
    print(
        f"dom0 stored images          {dom0['stored'] / MiB:8.1f} MiB   (dom0's raw_bytes: {dom0['raw'] / MiB:.1f} MiB)"
    )
    bars = [
        ("dom0 save / (virsh save + gzip -3)", dom0["save"] / (seed["save"] + seed["gzip"]), BAR_VS_SEED),
        ("dom0 save / virsh save", dom0["save"] / seed["save"], BAR_VS_VIRSH_SAVE),
        ("dom0 stored / raw", dom0["stored"] / seed["raw"], BAR_STORED),
        ("dom0 restore / virsh restore", dom0["restore"] / seed["restore"], BAR_RESTORE),
    ]
    missed = []
    for label, ratio, bar in bars:
        print(f"{label:36s} {ratio:6.2f}   (bar <= {bar:.2f})")
        if ratio > bar:
            missed.append(f"{label} is {ratio:.2f}, above the bar of {bar:.2f}")
    return missed


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so the guests and files are still removed


def main() -> int:
    """Start the guests, run both ways, print the ratios; 1 when a bar is missed or something went wrong."""
    if os.geteuid() != 0:
        print("save_bench: needs root (guests at qemu:///system)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _terminate)
    shutil.rmtree(BENCH_DIR, ignore_errors=True)
    BENCH_DIR.mkdir(parents=True)
    BENCH_DIR.chmod(0o755)
    guests: list[BenchGuest] = []
    try:
        kit = guestkit.build_kit()
        data = guestkit.build_data_disk()
        print(f"data disk: {data.stat().st_size / MiB:.0f} MiB of host files ({data.name})")
        try:
            guests = start_guests(kit, data)
            wait_memfilled(guests)
            seed = seed_way(guests)
            dom0 = dom0_way(guests) if dom0_cli_ready() else None
        except (BenchFailure, CommandError) as exc:
            print(f"FAIL: {exc}")
            return 1
    finally:
        remove_guests(guests)
        shutil.rmtree(BENCH_DIR, ignore_errors=True)
    missed = report(seed, dom0)
    for m in missed:
        print(f"FAIL: {m}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
