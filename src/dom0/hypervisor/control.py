"""Guest control that needs more than one hypervisor call: waiting for an orderly shutdown, pausing for a while."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from dom0.errors import GuestNotFound, OperationTimeout
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
    while True:
        try:
            state = hv.guest(ref).state
        except GuestNotFound:
            return clock() - start  # a transient guest disappears once it stops
        if not state.is_active:
            return clock() - start
        if clock() - start >= timeout:
            raise OperationTimeout(
                f"{shown} did not stop within {timeout:g} s; it still runs ({state.value})",
                f"wait longer with --timeout, look at `dom0 console {shown}`, "
                f"or as a last resort `dom0 destroy {shown}`",
            )
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
