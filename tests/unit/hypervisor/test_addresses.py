"""Where a guest's addresses come from: libvirt's sources on test:///default, and this host's neighbour table
(/proc/net/arp, per network namespace) by the guest's MACs, for libvirt guests libvirt knows no address of and for
xl guests, which xl never knows the address of."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from dom0.hypervisor import neighbours
from dom0.hypervisor.libvirt.backend import LibvirtHypervisor
from dom0.hypervisor.neighbours import neighbour_addresses, parse_arp_table
from dom0.hypervisor.protocol import UriChoice
from dom0.hypervisor.xl.backend import XlHypervisor
from dom0.model import Boot, BootKind, Guest, GuestAddress, GuestDetails, GuestState, Nic

HEADER = "IP address       HW type     Flags       HW address            Mask     Device\n"

# As the kernel writes it: a guest that answered (0x2), one still being asked (0x0, no MAC yet), a permanent entry
# added by hand (0x6, upper case as `arp -s` users type it), one that failed (0x0 with a MAC left over) and a
# second address of the first guest on another bridge.
ARP = HEADER + (
    "10.0.0.2         0x1         0x2         52:54:00:12:34:56     *        br0\n"
    "10.0.0.9         0x1         0x0         00:00:00:00:00:00     *        br0\n"
    "10.0.0.7         0x1         0x6         52:54:00:AB:CD:EF     *        br0\n"
    "10.0.0.8         0x1         0x0         52:54:00:99:99:99     *        br0\n"
    "192.168.7.2      0x1         0x2         52:54:00:12:34:56     *        br1\n"
)


def test_answered_entries_by_lower_case_mac() -> None:
    assert parse_arp_table(ARP) == {
        "52:54:00:12:34:56": ["10.0.0.2", "192.168.7.2"],
        "52:54:00:ab:cd:ef": ["10.0.0.7"],
    }


@pytest.mark.parametrize(
    "text",
    [
        "",
        HEADER,
        HEADER + "10.0.0.3 0x1 0x2 00:00:00:00:00:00 * br0\n",  # complete, yet no MAC: nothing to match a NIC by
        HEADER + "10.0.0.3 0x1 0x2\n",  # cut short
        HEADER + "10.0.0.3 0x1 zz 52:54:00:12:34:56 * br0\n",  # flags not hex
    ],
)
def test_nothing_usable_gives_no_addresses(text: str) -> None:
    assert parse_arp_table(text) == {}


def _arp_file(tmp_path: Path, text: str = ARP) -> Path:
    path = tmp_path / "arp"
    path.write_text(text)
    return path


def test_neighbour_addresses_match_macs_in_any_case(tmp_path: Path) -> None:
    found = neighbour_addresses(["52:54:00:AB:CD:EF", "52:54:00:12:34:56", "52:54:00:00:00:00"], _arp_file(tmp_path))
    assert [(a.address, a.mac, a.source) for a in found] == [
        ("10.0.0.7", "52:54:00:ab:cd:ef", "neighbour"),
        ("10.0.0.2", "52:54:00:12:34:56", "neighbour"),
        ("192.168.7.2", "52:54:00:12:34:56", "neighbour"),
    ]


def test_an_unanswered_mac_has_no_address(tmp_path: Path) -> None:
    assert neighbour_addresses(["52:54:00:99:99:99"], _arp_file(tmp_path)) == []


def test_an_unreadable_table_is_no_addresses(tmp_path: Path) -> None:
    assert neighbour_addresses(["52:54:00:12:34:56"], tmp_path / "missing") == []
    assert neighbour_addresses(["52:54:00:12:34:56"], tmp_path) == []  # a directory
    os.mkfifo(tmp_path / "fifo")
    assert neighbour_addresses(["52:54:00:12:34:56"], tmp_path / "fifo") == []  # not waited on


def test_the_default_table_is_the_one_of_the_namespace_dom0_runs_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(neighbours, "ARP_TABLE", _arp_file(tmp_path))
    assert [a.address for a in neighbour_addresses(["52:54:00:ab:cd:ef"])] == ["10.0.0.7"]


# -- libvirt ------------------------------------------------------------------------------------------------


@pytest.fixture
def hv() -> Iterator[LibvirtHypervisor]:
    h = LibvirtHypervisor.open(UriChoice("test:///default", "unit test"))
    try:
        yield h
    finally:
        h.close()


def test_libvirt_lease_of_the_test_guest(hv: LibvirtHypervisor) -> None:
    assert hv.addresses("test") == [GuestAddress("192.168.122.3", "aa:bb:cc:dd:ee:ff", "lease", 24, "")]


def test_a_stopped_guest_has_no_addresses(hv: LibvirtHypervisor) -> None:
    hv.destroy("test")
    assert hv.addresses("test") == []


class _Silent:
    """A libvirt domain whose address sources know nothing (no DHCP server of libvirt's, no agent, another
    namespace's ARP), or only `known` (interface name -> libvirt's answer)."""

    def __init__(self, dom: libvirt.virDomain, known: dict[str, object] | None = None) -> None:
        self._dom = dom
        self._known = known or {}

    def __getattr__(self, name: str) -> object:
        return getattr(self._dom, name)

    def interfaceAddresses(self, source: int) -> dict[str, object]:  # libvirt's name
        if source == libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT:
            raise libvirt.libvirtError("Guest agent is not configured")
        return self._known


TWO_NICS = """<domain type='test'><name>bridged</name><memory>65536</memory><os><type>hvm</type></os><devices>
<interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/></interface>
<interface type='bridge'><mac address='52:54:00:AB:CD:EF'/><source bridge='br0'/></interface>
</devices></domain>"""


def test_libvirt_guest_libvirt_knows_nothing_of_is_found_by_its_mac(
    hv: LibvirtHypervisor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hv.create(TWO_NICS)
    real = hv._domain
    monkeypatch.setattr(hv, "_domain", lambda ref: _Silent(real(ref)))
    monkeypatch.setattr(neighbours, "ARP_TABLE", _arp_file(tmp_path))
    assert hv.addresses("bridged") == [GuestAddress("10.0.0.7", "52:54:00:ab:cd:ef", "neighbour")]


def test_libvirt_lease_for_one_nic_and_the_neighbour_table_for_the_bridged_one(
    hv: LibvirtHypervisor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hv.create(TWO_NICS)
    real = hv._domain
    leased = {"hwaddr": "52:54:00:00:00:01", "addrs": [{"addr": "192.168.122.40", "prefix": 24}]}
    lease: dict[str, object] = {"vnet0": leased}
    monkeypatch.setattr(hv, "_domain", lambda ref: _Silent(real(ref), lease))
    monkeypatch.setattr(neighbours, "ARP_TABLE", _arp_file(tmp_path))
    assert [(a.address, a.source) for a in hv.addresses("bridged")] == [
        ("192.168.122.40", "lease"),
        ("10.0.0.7", "neighbour"),
    ]


def test_libvirt_guest_not_yet_heard_from_has_none(
    hv: LibvirtHypervisor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hv.create(TWO_NICS.replace("52:54:00:AB:CD:EF", "52:54:00:99:99:99"))
    real = hv._domain
    monkeypatch.setattr(hv, "_domain", lambda ref: _Silent(real(ref)))
    monkeypatch.setattr(neighbours, "ARP_TABLE", _arp_file(tmp_path))
    assert hv.addresses("bridged") == []


# -- xl -----------------------------------------------------------------------------------------------------


def _xl_details(state: GuestState, *macs: str) -> GuestDetails:
    guest = Guest(
        name="web",
        uuid="11111111-2222-3333-4444-555555555555",
        id=3 if state is not GuestState.SHUTOFF else None,
        state=state,
        memory_kib=131072,
        max_memory_kib=131072,
        vcpus=1,
        cpu_time_ns=0,
        persistent=False,
    )
    nics = tuple(Nic(mac=m, kind="bridge", source="xenbr0", target=f"vif3.{i}") for i, m in enumerate(macs))
    return GuestDetails(
        guest=guest,
        hypervisor_type="xen",
        os_type="linux",
        boot=Boot(BootKind.KERNEL),
        disks=(),
        nics=nics,
        autostart=False,
        on_poweroff="destroy",
        on_reboot="restart",
        on_crash="destroy",
        console_log="",
    )


def test_xl_guest_is_found_in_the_neighbour_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xl = XlHypervisor()
    details = _xl_details(GuestState.BLOCKED, "52:54:00:12:34:56", "00:16:3E:00:00:01")
    monkeypatch.setattr(xl, "details", lambda ref: details)
    monkeypatch.setattr(neighbours, "ARP_TABLE", _arp_file(tmp_path))
    assert [(a.address, a.mac, a.source) for a in xl.addresses("web")] == [
        ("10.0.0.2", "52:54:00:12:34:56", "neighbour"),
        ("192.168.7.2", "52:54:00:12:34:56", "neighbour"),
    ]


def test_xl_guest_without_a_neighbour_entry_has_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xl = XlHypervisor()
    monkeypatch.setattr(xl, "details", lambda ref: _xl_details(GuestState.RUNNING, "00:16:3e:00:00:01"))
    monkeypatch.setattr(neighbours, "ARP_TABLE", _arp_file(tmp_path))
    assert xl.addresses("web") == []
