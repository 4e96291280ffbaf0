"""The host's side of `dom0 doctor`: memory pressure, dom0 swapping, room in the save directory, a hypervisor
daemon that does not answer, and a libvirt save left waiting on one of dom0's FIFOs.

Paths are parameters (HostPaths) so each check can be run against crafted files.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dom0 import humanize, run
from dom0.doctor.findings import HOST, Finding, Severity
from dom0.errors import CommandError, Dom0Error
from dom0.hypervisor import Hypervisor
from dom0.memory.hostside import PRESSURE, read_pressure
from dom0.memory.reading import PAGING_KIB_S, HostMemoryRow
from dom0.saves.fifo import FIFO, LOCK, WORK_PREFIX
from dom0.saves.hangup import PROC, fifo_inode, waiting_threads

# PSI: the share of the last 10 s in which some task (or every task: "full") stalled waiting for memory. A few
# percent is a busy host; above these the guests' QEMU processes and dom0 itself are losing real time.
PRESSURE_SOME_WARNING = 10.0
PRESSURE_FULL_CRITICAL = 5.0
# A hypervisor daemon that takes longer than this to say what host it runs on will not serve the guests either.
ANSWER_S = 5.0
# What zstd/lz4 usually make of a guest's memory image (much of it zero pages and page cache).
COMPRESSED_LOW, COMPRESSED_HIGH = 0.30, 0.60


@dataclass(frozen=True, slots=True)
class HostPaths:
    """Where this machine's kernel shows what the host checks read."""

    pressure: Path = PRESSURE
    proc: Path = PROC
    xen: Path = Path("/proc/xen")


def pressure(path: Path = PRESSURE) -> tuple[list[Finding], str]:
    """Findings from the kernel's memory pressure (PSI), and what was read."""
    some, full = read_pressure(path)
    if some is None and full is None:
        return [], f"memory pressure: not available ({path} cannot be read; kernels before 4.20 have no PSI)"
    found: list[Finding] = []
    shown = f"some avg10 {some or 0:.1f}%, full avg10 {full or 0:.1f}%"
    hint = "guests or dom0 need more memory than the host has free: `dom0 mem` shows who; `dom0 plan` what fits"
    if full is not None and full > PRESSURE_FULL_CRITICAL:
        found.append(Finding(Severity.CRITICAL, HOST, "pressure", f"every task stalled on memory: {shown}", hint))
    elif some is not None and some > PRESSURE_SOME_WARNING:
        found.append(Finding(Severity.WARNING, HOST, "pressure", f"tasks stall waiting for memory: {shown}", hint))
    return found, f"memory pressure ({path}): {shown}"


def swapping(row: HostMemoryRow) -> list[Finding]:
    """dom0 itself paging: its kernel's swap-in or swap-out rate over the sample."""
    rate_in, rate_out = row.swap_in_kib_s or 0, row.swap_out_kib_s or 0
    if rate_in <= PAGING_KIB_S and rate_out <= PAGING_KIB_S:
        return []
    return [
        Finding(
            Severity.WARNING,
            HOST,
            "swap",
            f"dom0 is swapping: in {rate_in:.0f} KiB/s, out {rate_out:.0f} KiB/s "
            f"({row.swap_used_mib} MiB of swap used)",
            "dom0 is short of memory: give it more (dom0_mem on Xen) or fewer services; guests wait on it for I/O",
        )
    ]


def save_room(
    directory: Path, need_kib: int, guests: int, statvfs: Callable[[Path], os.statvfs_result] = os.statvfs
) -> tuple[list[Finding], str]:
    """Whether the running guests' memory would fit in the save directory."""
    try:
        st = statvfs(directory)
    except FileNotFoundError:
        note = Finding(
            Severity.NOTE,
            HOST,
            "save-dir",
            f"save directory {directory} does not exist",
            "`dom0 save` creates it; make sure its file system has room for the guests' memory",
        )
        return [note], f"save directory {directory}: missing"
    except OSError as exc:
        note = Finding(Severity.NOTE, HOST, "save-dir", f"cannot look at {directory}: {exc.strerror}", "run as root")
        return [note], f"save directory {directory}: unreadable"
    free = st.f_bavail * st.f_frsize
    need = need_kib * 1024
    checked = f"save directory {directory}: {humanize.size(free)} free for {guests} running guests"
    if free >= need:
        return [], checked
    low, high = humanize.size(need * COMPRESSED_LOW), humanize.size(need * COMPRESSED_HIGH)
    return [
        Finding(
            Severity.WARNING,
            HOST,
            "save-dir",
            f"{directory} has {humanize.size(free)} free; the {guests} running guests hold {humanize.size(need)} "
            f"(raw; compressed images usually take 30-60% of it, {low}-{high})",
            "free space there or give `dom0 save -d` / host.toml's save.directory a larger file system before "
            "the next host stop",
        )
    ], checked


def _daemon(uri: str) -> str:
    return "xl" if uri.startswith("xl:") else "libvirtd"


def answers(hv: Hypervisor, seconds: float = ANSWER_S) -> tuple[list[Finding], bool, str]:
    """Whether the hypervisor says what host it runs on within `seconds` (asked from a thread of its own, left
    behind if it hangs); findings, whether it answered, and what was checked."""
    result: list[BaseException | None] = []

    def ask() -> None:
        try:
            hv.host()
            result.append(None)
        except Exception as exc:  # handed to the caller's thread, which decides
            result.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=ask, name="dom0-doctor-host", daemon=True)
    worker.start()
    worker.join(seconds)
    took = time.monotonic() - started
    name = _daemon(hv.uri)
    if not result:
        hint = (
            "look at `systemctl status libvirtd` (or virtqemud) and its log; a save waiting on a FIFO holds it too"
            if name == "libvirtd"
            else "look at xenstored and xl's own log (/var/log/xen)"
        )
        return (
            [Finding(Severity.CRITICAL, HOST, "hypervisor", f"{name} did not answer within {seconds:g} s", hint)],
            False,
            f"{name}: no answer within {seconds:g} s",
        )
    error = result[0]
    if error is not None:
        message = error.message if isinstance(error, Dom0Error) else str(error)
        return (
            [
                Finding(
                    Severity.CRITICAL, HOST, "hypervisor", f"{name} answered with an error: {message}", "see its log"
                )
            ],
            False,
            f"{name}: error",
        )
    return [], True, f"{name} answered in {took:.2f} s"


def xenstore(seconds: float = ANSWER_S) -> tuple[list[Finding], str]:
    """Whether xenstored answers a read of its root within `seconds` (every xl and libxl call goes through it)."""
    try:
        proc = run.run(["xenstore-read", "/"], check=False, timeout=seconds)
    except CommandError as exc:
        if "not found" in exc.message:
            return [], "xenstored: not checked (xenstore-read is not installed)"
        return [
            Finding(
                Severity.CRITICAL,
                HOST,
                "hypervisor",
                f"xenstored did not answer within {seconds:g} s",
                "look at `systemctl status xenstored` and /var/log/xen/xenstored*.log",
            )
        ], "xenstored: no answer"
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        return [
            Finding(
                Severity.CRITICAL,
                HOST,
                "hypervisor",
                f"xenstore-read / failed: {err[-1][:200] if err else f'exit code {proc.returncode}'}",
                "is xenstored running? `systemctl status xenstored`",
            )
        ], "xenstored: error"
    return [], "xenstored answered"


def _owner_alive(work: int) -> bool | None:
    """Whether the dom0 run that made a work directory still holds its lock; None when that cannot be told."""
    try:
        lock = os.open(LOCK, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=work)
    except OSError:
        return None
    try:
        fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False  # released again when the descriptor closes
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(lock)


def waiting_saves(directory: Path, proc: Path = PROC) -> tuple[list[Finding], str]:
    """libvirt saves blocked on the FIFO of a dom0 run that is gone; the save directory is only looked at."""
    prefix = f"{WORK_PREFIX}save-"
    try:
        names = sorted(n for n in os.listdir(directory) if n.startswith(prefix))
    except OSError:
        return [], "saves waiting on a FIFO: no save directory to look in"
    found: list[Finding] = []
    for entry in names[:64]:
        try:
            work = os.open(directory / entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # a link or file under that name is not dom0's: the sweep of the next run reports it
        try:
            inode = fifo_inode(Path(FIFO), work)
            if inode is None or _owner_alive(work):
                continue  # no FIFO, or a dom0 save is running now
            guest = entry[len(prefix) :].rsplit("-", 1)[0]
            threads = waiting_threads(inode, proc)
            release = f"`dom0 restore --all {directory}` (or the next save or host run there) releases it"
            if threads:
                pid, tid = threads[0]
                found.append(
                    Finding(
                        Severity.CRITICAL,
                        guest,
                        "save-fifo",
                        f"libvirt's save of {guest} waits on {directory / entry / FIFO}, left by a dom0 run that is "
                        f"gone (daemon pid {pid}, thread {tid}): the guest is paused and libvirt calls wait",
                        release,
                    )
                )
            else:
                found.append(
                    Finding(
                        Severity.WARNING,
                        guest,
                        "save-fifo",
                        f"{directory / entry} was left by an interrupted dom0 save of {guest} (no daemon seen "
                        "waiting on it; as non-root dom0 cannot see libvirtd's threads)",
                        release,
                    )
                )
        finally:
            os.close(work)
    return found, f"saves waiting on a FIFO in {directory}: {len(names)} work directories"
