"""`dom0 mem set`: move a running guest's balloon within its maximum, and wait until it got there (or say how far
it got). The maximum itself changes only with a restart: it is the memory the guest booted with."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from dom0.errors import Dom0Error, GuestStateError
from dom0.hypervisor import Hypervisor
from dom0.model import GuestMemory

# The balloon counts as arrived within this much of the target: drivers move it in whole pages and chunks.
ARRIVED_KIB = 2048
POLL_S = 0.5


@dataclass(frozen=True, slots=True)
class BalloonMove:
    """Where a `mem set` started, aimed and ended."""

    name: str
    before_mib: int
    target_mib: int
    now_mib: int
    max_mib: int
    reached: bool
    seconds: float


def _reading(hv: Hypervisor, ref: str) -> GuestMemory:
    readings = hv.memory([ref])
    if not readings:
        raise GuestStateError(
            f"cannot change the memory of {ref!r}: it is not running",
            "a stopped guest's memory is part of its definition (virsh setmem --config, or its xl.cfg memory=)",
        )
    return readings[0]


def check_target(m: GuestMemory, target_kib: int, *, force: bool) -> None:
    """Refuse a size above the maximum, or below what the guest itself reports as used (unless `force`)."""
    name = m.guest.name
    maximum = m.report.maximum_kib or m.guest.max_memory_kib
    if maximum and target_kib > maximum:
        raise Dom0Error(
            f"{name} can have at most {maximum // 1024} MiB now (its maximum); {target_kib // 1024} MiB is more",
            "the maximum changes only with a restart: raise it in the definition (virsh setmaxmem --config, "
            "or maxmem= in xl.cfg), then shut the guest down and start it",
        )
    if target_kib < 16 * 1024:
        raise Dom0Error(f"{target_kib // 1024} MiB is too little for any guest", "give at least 64M")
    r = m.report
    seen = r.available_kib if r.available_kib is not None else r.current_kib
    if not force and r.usable_kib is not None and seen is not None:
        used = seen - r.usable_kib
        if target_kib < used:
            raise Dom0Error(
                f"{name} uses {used // 1024} MiB itself (its balloon driver says so); "
                f"{target_kib // 1024} MiB would push it into swap or its OOM killer",
                f"choose at least {used // 1024 + 64}M, or add --force to insist",
            )


def set_guest_memory(
    hv: Hypervisor,
    ref: str,
    target_kib: int,
    *,
    force: bool = False,
    timeout: float = 30.0,
    on_step: Callable[[int], None] = lambda _kib: None,
) -> BalloonMove:
    """Ask the balloon to move to `target_kib`; wait until within ARRIVED_KIB of it or `timeout` seconds pass."""
    start = _reading(hv, ref)
    check_target(start, target_kib, force=force)
    began = time.monotonic()
    hv.set_memory(start.guest.uuid, target_kib)
    now = start
    while True:
        now = _reading(hv, start.guest.uuid)
        current = now.report.current_kib if now.report.current_kib is not None else now.guest.memory_kib
        on_step(current)
        reached = abs(current - target_kib) <= ARRIVED_KIB
        if reached or time.monotonic() - began >= timeout:
            break
        time.sleep(POLL_S)
    maximum = start.report.maximum_kib or start.guest.max_memory_kib
    before = start.report.current_kib if start.report.current_kib is not None else start.guest.memory_kib
    return BalloonMove(
        name=start.guest.name,
        before_mib=before // 1024,
        target_mib=target_kib // 1024,
        now_mib=current // 1024,
        max_mib=maximum // 1024,
        reached=reached,
        seconds=round(time.monotonic() - began, 1),
    )
