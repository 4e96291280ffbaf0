"""The host's own memory, read from this machine's kernel: what is available, swap traffic, pressure (PSI), and
what each guest's QEMU process costs (RSS and PSS, as smem counts them)."""

from __future__ import annotations

import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

from dom0.errors import Dom0Error
from dom0.filedata import read_regular

PRESSURE = Path("/proc/pressure/memory")
_PRESSURE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class KernelMemory:
    """One reading of this machine's /proc/meminfo, swap counters and memory pressure."""

    total_kib: int
    available_kib: int
    swap_total_kib: int
    swap_used_kib: int
    swapped_in_kib: int  # cumulative since boot
    swapped_out_kib: int
    pressure_some_avg10: float | None  # % of the last 10 s some task stalled on memory; None without PSI
    pressure_full_avg10: float | None
    taken_at: float


def read_kernel_memory() -> KernelMemory:
    """This machine's memory as its kernel reports it (on a Xen host: dom0's own, not the hypervisor's)."""
    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    some, full = read_pressure()
    return KernelMemory(
        total_kib=vm.total // 1024,
        available_kib=vm.available // 1024,
        swap_total_kib=swap.total // 1024,
        swap_used_kib=swap.used // 1024,
        swapped_in_kib=swap.sin // 1024,
        swapped_out_kib=swap.sout // 1024,
        pressure_some_avg10=some,
        pressure_full_avg10=full,
        taken_at=time.monotonic(),
    )


def read_pressure(path: Path = PRESSURE) -> tuple[float | None, float | None]:
    """avg10 of the `some` and `full` lines of /proc/pressure/memory; None where the kernel has no PSI."""
    try:
        text = read_regular(path, _PRESSURE_LIMIT).decode("ascii", "replace")
    except (OSError, Dom0Error):
        return None, None
    values: dict[str, float] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        for field in rest.split():
            key, _, value = field.partition("=")
            if key == "avg10":
                with suppress(ValueError):
                    values[kind] = float(value)
    return values.get("some"), values.get("full")


@dataclass(frozen=True, slots=True)
class ProcessCost:
    """What one host process (a guest's QEMU) holds: resident and proportional set size, in KiB."""

    rss_kib: int
    pss_kib: int | None  # None where smaps cannot be read (another user's process without root)


def qemu_cost(pid: int, guest_name: str) -> ProcessCost | None:
    """RSS and PSS of the QEMU process `pid`, when it still is the QEMU of `guest_name` (a PID file can be stale
    and its number reused); None otherwise."""
    try:
        proc = psutil.Process(pid)
        if not any(arg.startswith(f"guest={guest_name},") or arg == f"guest={guest_name}" for arg in proc.cmdline()):
            return None
        try:
            full = proc.memory_full_info()
            return ProcessCost(full.rss // 1024, full.pss // 1024)
        except psutil.AccessDenied:
            return ProcessCost(proc.memory_info().rss // 1024, None)
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return None
