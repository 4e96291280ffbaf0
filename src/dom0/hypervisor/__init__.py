"""Reaching a hypervisor: which URI to use, opening the backend it names, one connection per worker thread.

The Hypervisor protocol every backend implements lives in protocol.py and is importable from here too.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

from dom0.hypervisor.definition import is_xl_uri
from dom0.hypervisor.protocol import (
    MAX_GUEST_ID,
    Console,
    Hypervisor,
    LogText,
    UriChoice,
    guest_id,
    read_log_tail,
)

__all__ = [
    "LIBVIRT_SOCKET",
    "MAX_GUEST_ID",
    "XL_URI",
    "Console",
    "Hypervisor",
    "LogText",
    "PerThread",
    "UriChoice",
    "backend_errors",
    "choose_uri",
    "connect",
    "guest_id",
    "is_xl_uri",
    "read_log_tail",
]


def backend_errors() -> tuple[type[Exception], ...]:
    """The error class of the hypervisor library this process loaded (libvirt's), else none. The CLI's last resort
    for a call no backend method translated; looked up without importing libvirt, which only libvirt/backend.py does."""
    module = sys.modules.get("libvirt")
    error = getattr(module, "libvirtError", None)
    return (error,) if isinstance(error, type) and issubclass(error, Exception) else ()


XL_URI = "xl://"
LIBVIRT_SOCKET = "/run/libvirt/libvirt-sock"


def choose_uri(
    explicit: str | None,
    environ: dict[str, str] | None = None,
    exists: Callable[[str], bool] = os.path.exists,
) -> UriChoice:
    """Pick the URI like virsh: -c, then $DOM0_CONNECT, $LIBVIRT_DEFAULT_URI, then Xen or QEMU by the host.

    On a Xen host without libvirtd (no socket at LIBVIRT_SOCKET) the default is xl://, the native toolstack.
    `exists` answers whether a path exists (tests replace it).
    """
    env = os.environ if environ is None else environ
    if explicit:
        return UriChoice(explicit, "from -c/--connect")
    for var in ("DOM0_CONNECT", "LIBVIRT_DEFAULT_URI"):
        if env.get(var):
            return UriChoice(env[var], f"from ${var}")
    if exists("/proc/xen/capabilities"):
        if not exists(LIBVIRT_SOCKET):
            return UriChoice(XL_URI, "this Xen host has no libvirtd")
        return UriChoice("xen:///system", "this host runs Xen")
    return UriChoice("qemu:///system", "the default for a KVM/QEMU host")


def connect(choice: UriChoice) -> Hypervisor:
    """Open the hypervisor the URI names; HypervisorUnavailable when nothing answers."""
    if is_xl_uri(choice.uri):
        from dom0.hypervisor.xl.backend import XlHypervisor

        return XlHypervisor.open(choice)
    from dom0.hypervisor.libvirt.backend import LibvirtHypervisor

    return LibvirtHypervisor.open(choice)


class PerThread:
    """One connection per worker thread, to the same URI as `hv`.

    libvirt runs the calls made on one connection one after another, so parallel saves through a shared
    connection would queue behind each other; xl:// costs nothing to open twice.
    """

    def __init__(self, hv: Hypervisor) -> None:
        self._first = hv
        self._first_taken = False
        self._local = threading.local()
        self._opened: list[Hypervisor] = []
        self._lock = threading.Lock()

    def get(self) -> Hypervisor:
        """This thread's connection: the given one for the first thread that asks, a new one for the others."""
        hv: Hypervisor | None = getattr(self._local, "hv", None)
        if hv is None:
            with self._lock:
                if not self._first_taken:
                    self._first_taken, hv = True, self._first
            if hv is None:
                hv = connect(UriChoice(self._first.uri, "a worker's own connection"))
                with self._lock:
                    self._opened.append(hv)
            self._local.hv = hv
        return hv

    def close(self) -> None:
        """Close the connections opened here (not the one given)."""
        with self._lock:
            opened, self._opened = self._opened, []
        for hv in opened:
            hv.close()
