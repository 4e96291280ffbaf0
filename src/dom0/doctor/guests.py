"""The guests' side of `dom0 doctor`: states, guests meant to run that do not, memory verdicts, OOM kills in their
logs, and worker pools their own disks allow beyond their memory."""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path

from dom0 import storage
from dom0.doctor import oomlog, workers
from dom0.doctor.findings import Finding, Severity
from dom0.errors import Dom0Error
from dom0.hypervisor import Hypervisor
from dom0.image.layout import scan
from dom0.image.osinspect import find_roots
from dom0.image.source import ImageSource, open_image
from dom0.image.tree import ResolvingTree
from dom0.memory.reading import GuestMemoryRow, MemoryReport, Verdict
from dom0.model import Disk, DiskSource, Guest, GuestState
from dom0.saves import manifest
from dom0.saves.hostconfig import HostConfig, OnStop


def states(guests: Sequence[Guest]) -> list[Finding]:
    """Guests crashed, dying or paused."""
    found = []
    for g in guests:
        if g.state is GuestState.CRASHED:
            found.append(
                Finding(
                    Severity.CRITICAL,
                    g.name,
                    "state",
                    "crashed: it died and is kept for inspection (on_crash=preserve)",
                    f"`dom0 dmesg {g.name}` shows its last console lines; then `dom0 destroy {g.name}` and start it",
                )
            )
        elif g.state is GuestState.DYING:
            found.append(
                Finding(
                    Severity.CRITICAL,
                    g.name,
                    "state",
                    "dying: being destroyed or shut down, and not gone yet",
                    "stuck here means the hypervisor cannot free it: `dom0 dmesg` shows the hypervisor's log",
                )
            )
        elif g.state is GuestState.PAUSED:
            found.append(
                Finding(
                    Severity.WARNING,
                    g.name,
                    "state",
                    "paused: it holds its memory and runs nothing (a save left unfinished pauses a guest too)",
                    f"`dom0 resume {g.name}`, unless it was paused on purpose",
                )
            )
    return found


def meant_to_run(
    guests: Sequence[Guest],
    autostart: Sequence[str],
    config: HostConfig,
    config_source: str,
    only: Sequence[str] = (),
) -> list[Finding]:
    """Guests the host starts at boot (autostart), or host.toml restores at boot, that are not running."""
    state = {g.name: g.state for g in guests}
    found = []
    expected = {name: "marked to start at boot (autostart)" for name in autostart}
    for name, action in config.on_stop.items():
        if action is OnStop.SAVE and name not in expected:
            expected[name] = f'{config_source} saves it at host stop and restores it at boot (on_stop = "save")'
    for name, why in sorted(expected.items()):
        if only and name not in only:
            continue
        now = state.get(name)
        if now is not None and now.is_active:
            continue
        found.append(
            Finding(
                Severity.WARNING,
                name,
                "not-running",
                f"{why}, but {'shut off' if now is not None else 'no such guest is defined'}",
                f"`dom0 start {name}`" if now is not None else "define it again, or remove it from that list",
            )
        )
    return found


def saved_images(directory: Path, guests: Sequence[Guest], only: Sequence[str] = ()) -> list[Finding]:
    """Guests not running whose save image waits in the save directory."""
    try:
        metas = manifest.find(directory) if directory.is_dir() else []
    except (Dom0Error, OSError):
        return []
    active = {g.name for g in guests if g.state.is_active}
    found = []
    for meta in metas:
        name = meta.name.removesuffix(manifest.SUFFIX)
        if name in active or (only and name not in only):
            continue
        found.append(
            Finding(
                Severity.NOTE,
                name,
                "saved",
                f"not running; its saved memory waits in {directory}",
                f"`dom0 restore {meta}` brings it back where it stopped",
            )
        )
    return found


def memory(report: MemoryReport) -> list[Finding]:
    """Guests paging now or nearly out of usable memory; guests that report nothing, as notes."""
    severity = {Verdict.PAGING: Severity.CRITICAL, Verdict.TIGHT: Severity.WARNING, Verdict.NO_STATS: Severity.NOTE}
    return [
        Finding(severity[row.verdict], row.name, "memory", f"{row.verdict}: {row.why}", row.hint)
        for row in report.guests
        if row.verdict in severity
    ]


def oom_kills(hv: Hypervisor, guests: Sequence[Guest]) -> tuple[list[Finding], int]:
    """OOM kills in each active guest's logs; the findings and how many logs were read."""
    found: list[Finding] = []
    read = 0
    for g in guests:
        try:
            logs = hv.guest_logs(g.name)
        except Dom0Error as exc:
            found.append(Finding(Severity.NOTE, g.name, "oom", f"its logs cannot be read: {exc.message}", exc.hint))
            continue
        for log in logs:
            read += 1
            finding = oomlog.finding(oomlog.read_log(g.name, log))
            if finding is not None:
                found.append(finding)
    return found, read


# Formats dom0's image layer reads; a disk declared in another (vmdk, vdi, qed) is reported, not guessed at.
READABLE_FORMATS = ("", "raw", "qcow2")


@contextmanager
def _disk(disk: Disk) -> Iterator[ImageSource]:
    """The guest's disk opened read-only as the hypervisor sees it: raw unless the definition says qcow2, whose
    backing chain is followed only in the directories the chain really uses."""
    if disk.format not in READABLE_FORMATS:
        raise Dom0Error(f"disk {disk.target} is in {disk.format} format, which dom0 does not read")
    if disk.format == "qcow2":
        volume = storage.probe(Path(disk.source), "qcow2")
        source = open_image(disk.source, format="qcow2", backing_dirs=volume.chain_dirs)
    else:
        # libvirt reads a disk without a declared format as raw: a header the guest wrote decides nothing.
        source = open_image(disk.source, format="raw")
    with source:
        yield source


def _with_tree(disks: Sequence[Disk]) -> Generator[tuple[ResolvingTree | None, str], None, None]:
    """For each readable disk, its operating system's tree (None without one) or why it could not be read."""
    for disk in disks:
        if disk.device != "disk":
            continue
        if disk.source_kind not in (DiskSource.FILE, DiskSource.BLOCK) or not disk.source:
            yield None, f"disk {disk.target} is a {disk.source_kind} disk, not a file or device on this host"
            continue
        try:
            with _disk(disk) as source:
                roots = find_roots(source, scan(source))
                yield (roots[0][1] if roots else None), ""
        except Dom0Error as exc:
            yield None, f"disk {disk.target}: {exc.message}"
        except Exception as exc:  # a damaged or hostile disk makes the filesystem readers raise anything
            yield None, f"disk {disk.target}: cannot be read ({type(exc).__name__}: {str(exc)[:120]})"


def guest_memory_mib(g: Guest, row: GuestMemoryRow | None) -> int:
    """The memory the guest can have: its maximum, else its current size, as `dom0 mem` reports them."""
    if row is not None and (row.max_mib or row.current_mib):
        return row.max_mib or row.current_mib or 0
    return (g.max_memory_kib or g.memory_kib) // 1024


def worker_pools(
    hv: Hypervisor, guests: Sequence[Guest], report: MemoryReport | None
) -> tuple[list[Finding], int, int]:
    """Worker pools each active guest's disk allows beyond its memory; findings, disks and files read."""
    rows = {r.name: r for r in report.guests} if report else {}
    found: list[Finding] = []
    disks_read = files_read = 0
    for g in guests:
        try:
            disks = hv.details(g.name).disks
        except Dom0Error as exc:
            found.append(Finding(Severity.NOTE, g.name, "workers", f"its disks are unknown: {exc.message}", exc.hint))
            continue
        problems: list[str] = []
        pools: workers.PoolScan | None = None
        with closing(_with_tree(disks)) as trees:  # the image of the disk read is closed on leaving
            for tree, problem in trees:
                if tree is not None:
                    pools = workers.scan_tree(tree)
                    break
                if problem:
                    problems.append(problem)
        if pools is None:
            why = "; ".join(problems[:2]) or "no operating system found on its disks"
            hint = "run dom0 as root on the host that holds the disks" if problems else ""
            found.append(Finding(Severity.NOTE, g.name, "workers", f"worker pools not checked: {why}", hint))
            continue
        disks_read += 1
        files_read += pools.files_read
        found += workers.judge(g.name, guest_memory_mib(g, rows.get(g.name)), pools.pools)
        found += [Finding(Severity.NOTE, g.name, "workers", f"in its config: {note}") for note in pools.notes[:3]]
    return found, disks_read, files_read
