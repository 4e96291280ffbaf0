"""A libvirt driver without bulk statistics (Xen's libxl in libvirt 9 has none): list and mem ask each guest."""

from __future__ import annotations

from typing import Any

import libvirt
import pytest

from dom0.hypervisor import UriChoice
from dom0.hypervisor.libvirt.backend import LibvirtHypervisor
from dom0.memory.reading import Verdict, read_memory


class _Unsupported(libvirt.libvirtError):  # type: ignore[misc]  # libvirt ships no types
    def __init__(self, call: str) -> None:
        Exception.__init__(self, f"this function is not supported by the connection driver: {call}")
        self.err = (libvirt.VIR_ERR_NO_SUPPORT, 0, str(self), 0, "", None, None, -1, -1)


class _WithoutBulkStats:
    """The test driver's connection, refusing bulk statistics as libxl does."""

    def __init__(self, conn: libvirt.virConnect) -> None:
        self._conn = conn

    def getAllDomainStats(self, *_args: Any) -> Any:
        raise _Unsupported("virConnectGetAllDomainStats")

    def domainListGetStats(self, *_args: Any) -> Any:
        raise _Unsupported("virDomainListGetStats")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.fixture
def hv() -> Any:
    opened = LibvirtHypervisor.open(UriChoice("test:///default", "unit test"))
    opened._conn = _WithoutBulkStats(opened._conn)
    yield opened
    opened.close()


def test_list_falls_back_to_asking_each_guest(hv: LibvirtHypervisor) -> None:
    (guest,) = hv.guests()
    assert (guest.name, guest.memory_kib, guest.max_memory_kib, guest.vcpus) == ("test", 2048 << 10, 8192 << 10, 2)
    assert [g.name for g in hv.guests(include_inactive=True)] == ["test"]


def test_mem_falls_back_too_for_all_guests_and_for_named_ones(hv: LibvirtHypervisor) -> None:
    for refs in ((), ("test",)):
        report = read_memory(hv, refs, sample_s=0)
        (row,) = report.guests
        assert (row.name, row.current_mib, row.max_mib) == ("test", 2048, 8192)
        assert row.verdict is Verdict.NO_STATS
