"""Fixtures of the Xen suite, which runs INSIDE the lab's dom0 (see tests/xen/lab.py), never on the host.

Every test module runs once per backend: `xl://` (guests made from xl.cfg files) and `xen:///system` (libvirt's
libxl driver, guests made from libvirt XML); pytest runs all of one backend's tests before the other's.

Fixtures:
  uri        (module, parametrized) the backend's URI
  guests     (module) {"pv": LabGuest, "pvh": LabGuest}: both made through `dom0 -c URI create` and booted;
             whatever is left of them is destroyed at the end
  pv_guest   (module) guests["pv"]
  pvh_guest  (module) guests["pvh"]
  libvirtd   (autouse, module and function) on xen:///system: libvirtd running, started again if emulation
             killed it
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .guests import BACKENDS, READY, LabGuest, cleanup, make_guest


@pytest.fixture(scope="module", params=list(BACKENDS), ids=list(BACKENDS.values()))
def uri(request: pytest.FixtureRequest) -> str:
    """The backend under test."""
    value: str = request.param
    return value


@pytest.fixture(scope="module")
def guests(uri: str) -> Iterator[dict[str, LabGuest]]:
    """A PV and a PVH guest, each with a disk and a NIC, both booted (they boot side by side: emulation is slow)."""
    made: dict[str, LabGuest] = {}
    try:
        for kind in ("pv", "pvh"):
            made[kind] = make_guest(uri, kind)
        for g in made.values():
            g.wait_for_console(READY)
        yield made
    finally:
        for g in made.values():
            cleanup(g)


@pytest.fixture(scope="module")
def pv_guest(guests: dict[str, LabGuest]) -> LabGuest:
    """The running PV guest."""
    return guests["pv"]


@pytest.fixture(scope="module")
def pvh_guest(guests: dict[str, LabGuest]) -> LabGuest:
    """The running PVH guest."""
    return guests["pvh"]


LIBVIRT_SOCKET = Path("/run/libvirt/libvirt-sock")


def _libvirtd_running() -> None:
    """Under emulation libvirtd itself has died of a segfault mid-suite (its dmesg line makes the lab count the
    boot's emulation trouble); every later test would then fail to connect. Start it again, as systemd would."""
    if "xen:///system" not in BACKENDS:
        return
    if subprocess.run(["pgrep", "-x", "libvirtd"], capture_output=True, check=False).returncode == 0:
        return
    print("libvirtd is not running (killed under emulation?); starting it again")
    LIBVIRT_SOCKET.unlink(missing_ok=True)  # the dead one's: the wait below is for the new one's
    subprocess.run(["libvirtd", "-d"], capture_output=True, check=False, timeout=60)
    deadline = time.monotonic() + 60
    while not LIBVIRT_SOCKET.exists() and time.monotonic() < deadline:
        time.sleep(0.5)


@pytest.fixture(scope="module", autouse=True)
def libvirtd_for_module() -> None:
    """Before a module's own fixtures make its guests."""
    _libvirtd_running()


@pytest.fixture(autouse=True)
def libvirtd() -> None:
    """Before each test."""
    _libvirtd_running()
