"""Every guest's operating system at a glance: many targets inspected in one process, one report each.

Guests are looked up through the hypervisor first, in this process (a libvirt connection is not fork-safe); the
images are then read by a fork-based pool of workers that get and return plain frozen data and never touch
libvirt. A disk that cannot be read makes its target's report carry the one-line reason; the others still show.
A running guest's disks are read as they are: what its page cache has not written back yet is not there.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dom0.errors import Dom0Error
from dom0.image.targets import DiskRef, GuestFacts, TargetImage, guest_target, resolve_target

if TYPE_CHECKING:
    from dom0.adapt.plan import Readiness
    from dom0.cli.session import ImageOptions
    from dom0.hypervisor import Hypervisor
    from dom0.image.layout import Layout
    from dom0.image.osinspect import OperatingSystem
    from dom0.image.source import ImageSource

__all__ = [
    "DiskReport",
    "Report",
    "Row",
    "Unresolved",
    "booted_release",
    "inspect_target",
    "resolve_all",
    "survey",
]

INCONSISTENT = "its filesystem looked inconsistent while the guest runs (try again, or inspect a snapshot)"
RUNNING_NOTE = "read while running: changes not yet written back may be missing"

# A worker gets this long per round of targets before its rows say it did not answer (a disk on a dead SAN path
# can block a read for minutes); one inspection takes well under a second.
SECONDS_PER_ROUND = 20.0

# The x86 boot protocol: "HdrS" at 0x202, the protocol version at 0x206 (kernel_version exists from 2.00), and at
# 0x20E the offset, less 0x200, of the kernel's version string ("6.1.0-10-amd64 (debian-kernel@...) #1 SMP ...").
_BZIMAGE_HEAD = 0x10000
_RELEASE = re.compile(r"[0-9][A-Za-z0-9._+~-]*\Z")
_KERNEL_NAME_PREFIXES = ("vmlinuz-", "vmlinux-")
# An ELF kernel's banner: "Linux version 6.1.0-10-amd64 (debian-kernel@...) ..." (printk's "%s" formats don't match).
_BANNER = re.compile(rb"Linux version ([0-9][A-Za-z0-9._+~-]{0,63}) \(")
_BANNER_TAIL = 96  # a banner cut by a chunk's end is found again with this much of the chunk before
_ELF_CHUNK = 4 << 20
_ELF_SCAN = 128 << 20

# ext3/4: the superblock 1024 bytes in, magic at 0x38, incompatible features at 0x60; RECOVER = the journal holds
# what the mounted filesystem has not checkpointed yet, as it always does while the guest runs.
_EXT_MAGIC = 0xEF53
_INCOMPAT_RECOVER = 0x4


@dataclass(frozen=True, slots=True)
class Unresolved:
    """A target that names nothing readable (no such guest, a guest with no local disk): the one-line reason."""

    ref: str
    error: str
    guest: str | None = None
    state: str | None = None
    hint: str = ""


@dataclass(frozen=True)
class DiskReport:
    """One disk as `image inspect PATH` reads it: its layout and each operating system with its readiness per
    hypervisor; `error` the one-line reason it could not be read."""

    disk: DiskRef
    kind: str
    layout: Layout | None
    systems: tuple[tuple[OperatingSystem, dict[str, Readiness]], ...]
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """The table's facts for one target."""

    os: str | None
    distro: str | None
    version: str | None
    packages: str | None
    kernel: str | None  # the newest kernel installed
    boots: str | None  # the kernel a direct-kernel-boot guest boots (None: it boots from its disk, or unknown)
    console: str | None  # "yes" or "no: console tty1 only", for the guest's own hypervisor
    hostname: str | None
    hostname_matches: bool | None  # None for a path, or when the guest has no hostname inside

    def to_json(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "os": self.os,
            "distro": self.distro,
            "version": self.version,
            "packages": self.packages,
            "kernel": self.kernel,
            "boots": self.boots,
            "console": self.console,
            "hostname": self.hostname,
            "hostname_matches": self.hostname_matches,
        }


@dataclass(frozen=True)
class Report:
    """One target: the guest behind it (None for a path), the one-line reason it was not read, the row, the disks."""

    target: str
    guest: GuestFacts | None
    error: str | None
    row: Row | None
    disks: tuple[DiskReport, ...] = ()
    notes: tuple[str, ...] = ()
    name: str = ""  # the guest's name, or the path
    state: str | None = None
    hint: str = ""  # what to try when `error` is set


# --- resolving, in the parent ------------------------------------------------------------------------------------


def resolve_all(
    refs: Sequence[str],
    *,
    hv: Callable[[], Hypervisor],
    image_options: ImageOptions | None = None,
    every: bool = False,
) -> list[TargetImage | Unresolved]:
    """Each TARGET (a path or a guest name/UUID), then with `every` each guest of the host, as disks to read; what
    names nothing readable is an Unresolved with the reason. Guests are read as they are, running or not."""
    options = image_options or {"format": None, "backing_dirs": ()}
    out: list[TargetImage | Unresolved] = []
    for ref in refs:
        if Path(ref).is_dir() and options["format"] is None:
            out.append(TargetImage(ref, f"{ref} (directory)", (DiskRef(ref, "directory"),)))
            continue
        try:
            out.append(resolve_target(ref, hv=hv, image_options=options, live=True))
        except Dom0Error as exc:
            out.append(Unresolved(ref, exc.message, hint=exc.hint))
    if every:
        hypervisor = hv()
        backing = tuple(map(str, options["backing_dirs"]))
        for guest in hypervisor.guests(include_inactive=True):
            try:
                out.append(guest_target(hypervisor, guest, guest.name, live=True, backing_dirs=backing))
            except Dom0Error as exc:
                out.append(Unresolved(guest.name, exc.message, guest.name, str(guest.state), exc.hint))
    return out


# --- the kernel a direct-kernel-boot guest boots -----------------------------------------------------------------


def booted_release(path: str) -> tuple[str | None, str]:
    """The release of the host's kernel file a guest boots directly, and why not when it cannot be told.

    The file's name says it when dom0 image kernel or a distribution named it ("vmlinuz-6.1.0-10-amd64"); else the
    x86 boot header's version string does, or an uncompressed (ELF) kernel's banner. The path comes from the
    guest's definition (the administrator's word), so its links are followed; the file itself is opened without
    following one more, and only its head (or, for an ELF kernel, up to its banner) is read.
    """
    real = os.path.realpath(path)
    name = os.path.basename(real)
    for prefix in _KERNEL_NAME_PREFIXES:
        release = name[len(prefix) :]
        if name.startswith(prefix) and _RELEASE.match(release):
            return release, ""
    try:
        fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror}"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, f"{path} is not a regular file"
        head = os.pread(fd, _BZIMAGE_HEAD, 0)
        if head[:4] == b"\x7fELF":
            return _elf_release(fd, path)
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror}"
    finally:
        os.close(fd)
    if head[0x202:0x206] != b"HdrS" or int.from_bytes(head[0x206:0x208], "little") < 0x200:
        return None, f"{path} has no x86 kernel header to read its version from"
    where = int.from_bytes(head[0x20E:0x210], "little") + 0x200
    text = head[where : where + 256].split(b"\0", 1)[0].decode("ascii", "replace").split()
    if where == 0x200 or not text or not _RELEASE.match(text[0]):
        return None, f"{path} does not say its version"
    return text[0], ""


def _elf_release(fd: int, path: str) -> tuple[str | None, str]:
    """An uncompressed kernel (vmlinux, what Xen PVH boots): the release in its "Linux version RELEASE (" banner,
    looked for chunk by chunk in the first _ELF_SCAN bytes (the banner sits in .rodata, a few MiB in)."""
    offset, tail = 0, b""
    while offset < _ELF_SCAN:
        chunk = os.pread(fd, _ELF_CHUNK, offset)
        if not chunk:
            break
        window = tail + chunk
        for found in _BANNER.finditer(window):
            release = found.group(1).decode("ascii")
            if _RELEASE.match(release):
                return release, ""
        tail = window[-_BANNER_TAIL:]
        offset += len(chunk)
    return None, f"{path} does not say its version"


# --- reading the images, in a worker -----------------------------------------------------------------------------


def _journal_pending(source: ImageSource, layout: Layout, fs: Any) -> bool:
    from dom0.image.layout import open_filesystem_source

    if fs.type not in ("ext3", "ext4"):
        return False
    sb = open_filesystem_source(source, layout, fs).read_at(1024, 0x64)
    return (
        len(sb) == 0x64
        and int.from_bytes(sb[0x38:0x3A], "little") == _EXT_MAGIC
        and bool(int.from_bytes(sb[0x60:0x64], "little") & _INCOMPAT_RECOVER)
    )


def _read_disk(disk: DiskRef, backing_dirs: tuple[str, ...], live: bool) -> tuple[DiskReport, list[str]]:
    from dom0.adapt.plan import readiness
    from dom0.image.layout import scan
    from dom0.image.osinspect import find_roots, inspect_tree
    from dom0.image.source import open_image

    if disk.format == "directory":
        from dom0.image.tree import DirectoryTree

        tree = DirectoryTree(disk.path)
        found = inspect_tree(tree)
        found_systems = ((found, readiness(tree, found, ())),) if found is not None else ()
        return DiskReport(disk, "directory", None, found_systems), []
    try:
        source = open_image(disk.path, format=disk.format, backing_dirs=backing_dirs)
    except Dom0Error as exc:
        return DiskReport(disk, "", None, (), exc.message), []
    notes: list[str] = []
    with source:
        try:
            layout = scan(source)
            roots = find_roots(source, layout)
            systems = tuple((s, readiness(t, s, tuple(layout.filesystems))) for _, t, s in roots)
            if live and any(_journal_pending(source, layout, fs) for fs, _, _ in roots):
                notes.append(RUNNING_NOTE)
        # A crafted or half-written disk must not take the other rows down with an exception of the readers.
        except Exception as exc:
            reason = exc.message if isinstance(exc, Dom0Error) else f"{type(exc).__name__}: {exc}"
            return DiskReport(disk, source.kind, None, (), INCONSISTENT if live else reason), notes
    return DiskReport(disk, source.kind, layout, systems), notes


def _short_name(system: OperatingSystem) -> str:
    """ "Debian 12 (bookworm)": the name the package hint leads with, and the codename the release name ends with."""
    name = system.product_name
    hint = system.package_hint
    if hint.startswith("this is ") and ": " in hint:
        name = hint[len("this is ") :].split(": ", 1)[0]
    codename = re.search(r"\(([^()]+)\)\s*$", system.product_name)
    if codename and codename.group(1) not in name:
        name = f"{name} ({codename.group(1)})"
    return name


def _console(ready: dict[str, Readiness], hypervisor: str) -> str:
    verdict = ready.get(hypervisor)
    if verdict is None:
        return "-"
    needs = [n for n in verdict.needs if n.startswith(("console ", "no login on "))]
    return "no: " + ", ".join(needs) if needs else "yes"


def _row(
    system: OperatingSystem, ready: dict[str, Readiness], disk: str, guest: GuestFacts | None
) -> tuple[Row, list[str]]:
    notes: list[str] = []
    newest = system.kernels[0].version if system.kernels else None
    boots = None
    if guest is not None and guest.kernel:
        boots, why = booted_release(guest.kernel)
        if boots is None:
            notes.append(f"the kernel it boots is not known: {why}")
        elif newest is not None and boots != newest:
            copy = f"`dom0 image kernel {disk} -o {os.path.dirname(guest.kernel)} --sync` copies it out to boot"
            if boots not in {k.version for k in system.kernels}:
                # A kernel the guest does not have installed: its modules (and their updates) are not there either.
                notes.append(f"boots {boots}, which is not installed inside; the newest there is {newest}: {copy}")
            else:
                notes.append(f"boots {boots}, but {newest} is installed inside: {copy}")
    matches = None
    if guest is not None and system.hostname:
        matches = system.hostname.split(".")[0].lower() == guest.name.lower()
        if not matches:
            notes.append(f"hostname inside is {system.hostname}, not its guest name")
    tools = system.package_tools
    row = Row(
        os=_short_name(system),
        distro=system.distro,
        version=system.version,
        # the front end an administrator types (apt over dpkg, yum over rpm); the format when none is known
        packages=tools[-1] if tools else system.package_format,
        kernel=newest,
        boots=boots,
        console=_console(ready, guest.hypervisor) if guest is not None else None,
        hostname=system.hostname,
        hostname_matches=matches,
    )
    return row, notes


def _nothing_found(disks: list[DiskReport]) -> str:
    seen = []
    for d in disks:
        fss = [f"{fs.type} on {fs.location}" for fs in d.layout.filesystems] if d.layout else []
        where = d.disk.name or d.disk.path
        seen.append(f"{where}: " + (", ".join(fss) if fss else "no partition table or filesystem dom0 reads"))
    return "no operating system found (" + "; ".join(seen) + ")"


def _has_readable_filesystem(disks: list[DiskReport]) -> bool:
    from dom0.image.tree import FILESYSTEM_TYPES

    return any(fs.type in FILESYSTEM_TYPES for d in disks if d.layout for fs in d.layout.filesystems)


def inspect_target(target: TargetImage) -> Report:
    """Read every disk of one target and sum it up in a row; never raises for what the disks hold."""
    guest = target.guest
    live = guest is not None and guest.state not in ("shutoff", "nostate")
    disks: list[DiskReport] = []
    notes: list[str] = list(target.notes)
    for disk in target.disks:
        report, disk_notes = _read_disk(disk, target.backing_dirs, live)
        disks.append(report)
        notes.extend(disk_notes)
    name = guest.name if guest is not None else target.ref
    state = str(guest.state) if guest is not None else None
    first = next(((s, r, d.disk.path) for d in disks for s, r in d.systems), None)
    failed = [d for d in disks if d.error]
    if first is None:
        error = (
            "; ".join(f"disk {d.disk.name}: {d.error}" if d.disk.name else str(d.error) for d in failed)
            if failed
            else _nothing_found(disks)
        )
        if live and not failed and _has_readable_filesystem(disks):
            # A filesystem dom0 reads that did not open while the guest writes to it: caught mid-update, most
            # likely, rather than holding no system; saying which would be a guess.
            error = f"{INCONSISTENT}: {error}"
        return Report(target.ref, guest, error, None, tuple(disks), tuple(notes), name, state)
    notes.extend(f"disk {d.disk.name or d.disk.path} not read: {d.error}" for d in failed)
    row, row_notes = _row(*first, guest)
    return Report(target.ref, guest, None, row, tuple(disks), (*notes, *row_notes), name, state)


def _error_report(target: TargetImage, reason: str) -> Report:
    guest = target.guest
    name = guest.name if guest is not None else target.ref
    return Report(target.ref, guest, reason, None, (), target.notes, name, str(guest.state) if guest else None)


def _kill(pool: Any) -> None:
    """Stop a pool's workers now: a worker blocked in a read would keep shutdown(wait=True) waiting forever."""
    for process in list(getattr(pool, "_processes", {}).values()):
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def _pooled(targets: list[TargetImage], workers: int, seconds: float) -> list[Report | None]:
    """Reports in order; None where the worker died (its pool breaks), to be read again one by one."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    out: list[Report | None] = [None] * len(targets)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    try:
        futures = {pool.submit(inspect_target, t): i for i, t in enumerate(targets)}
        done, late = wait(futures, timeout=seconds)
        for future in done:
            i = futures[future]
            try:
                out[i] = future.result()
            except BrokenProcessPool:
                out[i] = None
        for future in late:
            i = futures[future]
            out[i] = _error_report(targets[i], f"not read within {seconds:.0f} s: a disk did not answer")
    finally:
        _kill(pool)
    return out


def _idle_cpus(cpus: int) -> int:
    """The CPUs nothing else is using (by the load average): a reader per busy core would only take turns with
    the host's own work, and the forked pool costs more than it gives (one disk is ~25 ms of CPU)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return cpus
    return max(1, min(cpus, round(cpus - load)))


def survey(items: Sequence[TargetImage | Unresolved], *, jobs: int | None = None) -> list[Report]:
    """One report per item, in order: the images read in parallel (a fork-based pool) when there are several and
    more than one idle CPU (or `jobs` says so), else here in turn."""
    targets = [t for t in items if isinstance(t, TargetImage)]
    cpus = len(os.sched_getaffinity(0))
    workers = min(jobs or _idle_cpus(cpus), cpus, len(targets))
    read: list[Report | None]
    if workers > 1:
        read = _pooled(targets, workers, SECONDS_PER_ROUND * (1 + math.ceil(len(targets) / workers)))
        for i, report in enumerate(read):
            if report is None:  # its pool broke: read again alone, so one dying reader costs only its own row
                again = _pooled([targets[i]], 1, SECONDS_PER_ROUND * 2)[0]
                read[i] = again or _error_report(targets[i], "the process reading its disks died")
    else:
        read = [inspect_target(t) for t in targets]
    reports = iter(r for r in read if r is not None)
    return [
        Report(item.ref, None, item.error, None, (), (), item.guest or item.ref, item.state, item.hint)
        if isinstance(item, Unresolved)
        else next(reports)
        for item in items
    ]
