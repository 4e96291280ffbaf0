"""Guest control that needs more than one hypervisor call: waiting for an orderly shutdown, pausing for a while."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence

from dom0.errors import Dom0Error, GuestNotFound, OperationTimeout
from dom0.hypervisor import Hypervisor
from dom0.model import GuestState


def wait_until_stopped(
    hv: Hypervisor,
    ref: str,
    timeout: float,
    *,
    poll: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    name: str = "",
) -> float:
    """Wait for the guest to stop; return the seconds it took, or raise OperationTimeout saying it still runs.

    `name` is how messages call the guest (default: `ref`).
    """
    shown = name or ref
    start = clock()
    _, running = wait_for_stop(hv, [ref], timeout, poll=poll, clock=clock)
    if running:
        raise OperationTimeout(
            f"{shown} did not stop within {timeout:g} s; it still runs ({running[ref].value})",
            f"wait longer with --timeout, look at `dom0 console {shown}`, or as a last resort `dom0 destroy {shown}`",
        )
    return clock() - start


def wait_for_stop(
    hv: Hypervisor,
    refs: Sequence[str],
    timeout: float,
    *,
    poll: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[str], dict[str, GuestState]]:
    """Wait until all these guests have stopped, or `timeout` seconds have passed: waited for together, so that N
    slow guests cost one timeout, not N.

    Returns the guests seen stopped, in the order they stopped, and those still running at the timeout with their
    last state. Nothing is destroyed: what to do about a guest that still runs is the caller's (the user's) call.
    """
    start = clock()
    stopped: list[str] = []
    waiting = list(refs)
    seen: dict[str, GuestState] = {}
    while True:
        running: dict[str, GuestState] = {}
        for ref in waiting:
            try:
                state = seen[ref] = hv.guest(ref).state
            except GuestNotFound:
                stopped.append(ref)  # a transient guest disappears once it stops
                continue
            except Dom0Error:
                # libvirt's Xen driver cannot read a domain while Xen tears it down ("libxl_domain_info failed"):
                # not stopped yet as far as anyone can tell, so looked at again
                running[ref] = seen.get(ref, GuestState.NOSTATE)
                continue
            if state.is_active:
                running[ref] = state
            else:
                stopped.append(ref)
        if not running or clock() - start >= timeout:
            return stopped, running
        waiting = list(running)
        time.sleep(poll)


@contextlib.contextmanager
def paused_while(hv: Hypervisor, uuid: str, pause: bool) -> Iterator[None]:
    """With `pause`, keep the guest paused for the block and resume it afterwards, whatever happens."""
    if not pause:
        yield
        return
    hv.pause(uuid)
    try:
        yield
    finally:
        if hv.guest(uuid).state is GuestState.PAUSED:
            hv.resume(uuid)
