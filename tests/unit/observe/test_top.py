"""`dom0 top`'s arithmetic: rates from two readings, paging detection, and the batch output of the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import cast

import pytest

from dom0.errors import GuestNotFound
from dom0.hypervisor import Hypervisor
from dom0.model import (
    Boot,
    BootKind,
    Disk,
    DiskCounters,
    DiskSource,
    Guest,
    GuestCounters,
    GuestDetails,
    GuestState,
    HostInfo,
    Nic,
    NicCounters,
)
from dom0.observe.top import (
    MIN_SWAP_REQS_PER_S,
    DiskRate,
    Layout,
    Sampler,
    as_json,
    compare,
    guest_rates,
    paging,
)

GIB_KIB = 1024 * 1024


def _guest(name: str = "web1", *, id: int = 7, cpu_ns: int = 0, vcpus: int = 2) -> Guest:
    return Guest(
        name=name,
        uuid=f"00000000-0000-0000-0000-{abs(hash(name)) % 10**12:012d}",
        id=id,
        state=GuestState.BLOCKED,
        memory_kib=GIB_KIB,
        max_memory_kib=2 * GIB_KIB,
        vcpus=vcpus,
        cpu_time_ns=cpu_ns,
    )


def _reading(
    g: Guest, at: float, disks: Sequence[DiskCounters] = (), nics: Sequence[NicCounters] = ()
) -> GuestCounters:
    return GuestCounters(g, at, tuple(disks), tuple(nics))


def test_cpu_percent_is_of_one_cpu_and_can_exceed_100() -> None:
    g = _guest(cpu_ns=10_000_000_000)
    r = guest_rates(_reading(g, 100.0), _reading(replace(g, cpu_time_ns=13_000_000_000), 102.0))
    assert r is not None
    assert r.cpu_percent == pytest.approx(150.0)  # 3 s of CPU in 2 s: one and a half CPUs busy
    assert r.interval_s == pytest.approx(2.0)


def test_memory_percent_is_of_host_memory() -> None:
    g = _guest()
    r = guest_rates(_reading(g, 0.0), _reading(g, 1.0), host_memory_kib=4 * GIB_KIB)
    assert r is not None
    assert r.memory_percent == pytest.approx(25.0)
    r = guest_rates(_reading(g, 0.0), _reading(g, 1.0))
    assert r is not None
    assert r.memory_percent is None


def test_disk_and_nic_rates_per_device() -> None:
    g = _guest()
    before = _reading(
        g, 10.0, [DiskCounters("vda", 1000, 2000, 10, 20)], [NicCounters("vnet0", "52:54:00:00:00:01", 0, 0, 0, 0)]
    )
    after = _reading(
        g,
        14.0,
        [DiskCounters("vda", 5000, 2000, 50, 24), DiskCounters("vdb", 400, 400, 4, 4)],
        [NicCounters("vnet0", "", 8000, 4000, 80, 40)],
    )
    r = guest_rates(before, after, macs={"vnet0": "52:54:00:00:00:01"})
    assert r is not None
    vda, vdb = r.disks
    assert (vda.rd_bytes_per_s, vda.wr_bytes_per_s, vda.rd_reqs_per_s, vda.wr_reqs_per_s) == (1000, 0, 10, 1)
    assert (vdb.rd_bytes_per_s, vdb.rd_reqs_per_s) == (0, 0)  # plugged in between: no rate yet, not a spike
    (nic,) = r.nics
    assert (nic.rx_bytes_per_s, nic.tx_bytes_per_s, nic.rx_packets_per_s) == (2000, 1000, 20)
    assert nic.mac == "52:54:00:00:00:01"  # bulk statistics carry no MAC; the definition's fills it in
    assert r.disk_bytes_per_s == (1000, 0)
    assert r.nic_bytes_per_s == (1000, 2000)


def test_a_counter_that_went_backwards_gives_zero_not_a_negative_rate() -> None:
    g = _guest()
    r = guest_rates(_reading(g, 0.0, [DiskCounters("vda", 9000, 0, 90, 0)]), _reading(g, 1.0, [DiskCounters("vda")]))
    assert r is not None
    assert r.disks[0].rd_bytes_per_s == 0


def _swap_guest(
    vda_reqs: float, vdb_reqs: float, *, vdb_swap: bool | None = True, req_size: int = 4096
) -> list[DiskRate]:
    return [
        DiskRate("vda", False, vda_reqs * req_size, 0, vda_reqs, 0),
        DiskRate("vdb", vdb_swap, vdb_reqs * req_size, vdb_reqs * req_size, vdb_reqs, vdb_reqs),
    ]


def test_paging_heavily_when_swap_carries_most_io() -> None:
    evidence = paging(_swap_guest(vda_reqs=20, vdb_reqs=90))
    assert evidence is not None
    assert evidence.swap_targets == ("vdb",)
    assert evidence.note() == "paging heavily (swap vdb: 90% of disk I/O)"


def test_not_paging_when_swap_is_the_minority_or_half() -> None:
    assert paging(_swap_guest(vda_reqs=500, vdb_reqs=100)) is None
    assert paging(_swap_guest(vda_reqs=200, vdb_reqs=100)) is None  # exactly half is not "most"


def test_not_paging_below_the_floor_even_if_swap_is_all_the_io() -> None:
    # a few pages pushed out by kswapd on an otherwise quiet guest: 100% of a trickle
    trickle = (MIN_SWAP_REQS_PER_S - 2) / 2
    assert paging(_swap_guest(vda_reqs=0, vdb_reqs=trickle, req_size=512)) is None
    assert paging(_swap_guest(vda_reqs=0, vdb_reqs=MIN_SWAP_REQS_PER_S / 2, req_size=512)) is not None


def test_big_swap_transfers_count_by_bytes() -> None:
    # few requests (under the floor) but large ones: 8 MiB/s of swap beats 40 tiny requests on vda
    disks = [DiskRate("vda", False, 40 * 512, 0, 40, 0), DiskRate("vdb", True, 8 << 20, 0, 8, 0)]
    evidence = paging(disks)
    assert evidence is not None
    assert evidence.share > 0.99


def test_unknown_or_no_swap_is_never_paging() -> None:
    assert paging(_swap_guest(vda_reqs=0, vdb_reqs=500, vdb_swap=None)) is None
    assert paging(_swap_guest(vda_reqs=0, vdb_reqs=500, vdb_swap=False)) is None


def test_paging_note_and_flag_on_the_guest() -> None:
    g = _guest()
    before = _reading(g, 0.0, [DiskCounters("vda"), DiskCounters("vdb")])
    after = _reading(g, 2.0, [DiskCounters("vda", 8192, 0, 2, 0), DiskCounters("vdb", 0, 4 << 20, 0, 1024)])
    r = guest_rates(before, after, swap={"vda": False, "vdb": True})
    assert r is not None
    assert r.paging_heavily
    assert r.notes == ("paging heavily (swap vdb: 100% of disk I/O)",)


def test_only_guests_in_both_readings_get_rates() -> None:
    stays, leaves, arrives = _guest("stays", id=1), _guest("leaves", id=2), _guest("arrives", id=3)
    restarted = _guest("restarted", id=4)
    sample = compare(
        [_reading(stays, 0.0), _reading(leaves, 0.0), _reading(restarted, 0.0)],
        [_reading(stays, 1.0), _reading(arrives, 1.0), _reading(replace(restarted, id=9), 1.0)],
    )
    assert [r.guest.name for r in sample.guests] == ["stays"]
    assert sample.interval_s == pytest.approx(1.0)


def test_a_paused_guest_gets_a_note() -> None:
    g = replace(_guest(), state=GuestState.PAUSED)
    r = guest_rates(_reading(g, 0.0), _reading(g, 1.0))
    assert r is not None
    assert r.notes == (GuestState.PAUSED.words,)


def test_json_sample_has_the_documented_keys() -> None:
    g = _guest()
    sample = compare(
        [_reading(g, 0.0, [DiskCounters("xvda")], [NicCounters("vif7.0", "00:16:3e:00:00:01")])],
        [_reading(g, 1.0, [DiskCounters("xvda", 4096, 0, 1, 0)], [NicCounters("vif7.0", "00:16:3e:00:00:01", 10)])],
        layout=lambda _c: Layout({"xvda": False}, {}),
        now=datetime.fromisoformat("2024-05-01T12:00:00+00:00"),
    )
    doc = json.loads(json.dumps(as_json(sample)))
    assert doc["time"] == "2024-05-01T12:00:00+00:00"
    (guest,) = doc["guests"]
    assert {"name", "id", "uuid", "state", "state_flags", "cpu_s", "cpu_percent", "memory_mib", "vcpus"} <= set(guest)
    assert guest["state_flags"] == "-b----"
    assert guest["disks"] == [
        {
            "target": "xvda",
            "vbd": 51712,
            "swap": False,
            "rd_bytes_per_s": 4096.0,
            "wr_bytes_per_s": 0.0,
            "rd_reqs_per_s": 1.0,
            "wr_reqs_per_s": 0.0,
        }
    ]
    assert guest["nics"][0]["rx_bytes_per_s"] == 10.0
    assert guest["nics"][0]["mac"] == "00:16:3e:00:00:01"
    assert guest["paging_heavily"] is False
    assert guest["notes"] == []


class _FakeHypervisor:
    """Just enough of a hypervisor for the Sampler: scripted readings and one guest definition."""

    uri = "qemu:///system"

    def __init__(self, readings: list[list[GuestCounters]], disks: tuple[Disk, ...]) -> None:
        self.readings = readings
        self.disks = disks
        self.details_calls = 0
        self.gone: set[str] = set()

    def host(self) -> HostInfo:
        return HostInfo(self.uri, "h", "QEMU", "8.0.0", 2, 8 * GIB_KIB, GIB_KIB)

    def counters(self, refs: Sequence[str] = ()) -> list[GuestCounters]:
        return self.readings.pop(0)

    def details(self, ref: str) -> GuestDetails:
        self.details_calls += 1
        if ref in self.gone:
            raise GuestNotFound(f"no guest named {ref!r}")
        g = _guest()
        nics = (Nic("52:54:00:aa:bb:cc", "bridge", "br0", "virtio", "vnet3"),)
        return GuestDetails(g, "kvm", "hvm", Boot(BootKind.FIRMWARE), self.disks, nics)


def test_sampler_finds_the_swap_disk_on_the_host_and_flags_paging(tmp_path: Path) -> None:
    swap_img = tmp_path / "swap.img"
    data = bytearray(65536)
    data[4086:4096] = b"SWAPSPACE2"
    swap_img.write_bytes(bytes(data))
    root_img = tmp_path / "root.img"
    root_img.write_bytes(bytes(65536))
    g = _guest()

    def reading(t: float, swap_reqs: int) -> list[GuestCounters]:
        disks = [DiskCounters("vda", 0, 0, 2 * int(t), 0), DiskCounters("vdb", swap_reqs * 4096, 0, swap_reqs, 0)]
        return [_reading(g, t, disks, [NicCounters("vnet3")])]

    hv = _FakeHypervisor(
        [reading(0, 0), reading(1, 1000), reading(2, 2000)],
        (
            Disk("vda", DiskSource.FILE, str(root_img), format="raw"),
            Disk("vdb", DiskSource.FILE, str(swap_img), format="raw"),
        ),
    )
    sampler = Sampler(cast(Hypervisor, hv))
    assert sampler.sample() is None  # the first reading is only the baseline
    for _ in range(2):
        sample = sampler.sample()
        assert sample is not None
        (r,) = sample.guests
        assert [(d.target, d.swap) for d in r.disks] == [("vda", False), ("vdb", True)]
        assert r.paging_heavily
        assert r.nics[0].mac == "52:54:00:aa:bb:cc"
        assert r.memory_percent == pytest.approx(12.5)
    assert hv.details_calls == 1  # the definition is read once, not every interval


def test_sampler_survives_a_guest_vanishing_before_its_definition_is_read() -> None:
    g = _guest()
    hv = _FakeHypervisor(
        [[_reading(g, 0, [DiskCounters("vda")])], [_reading(g, 1, [DiskCounters("vda", 1, 1, 1, 1)])]], ()
    )
    hv.gone.add(g.uuid)
    sampler = Sampler(cast(Hypervisor, hv))
    sampler.sample()
    sample = sampler.sample()
    assert sample is not None
    assert sample.guests[0].disks[0].swap is None


def _dom0(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DOM0_CONNECT", "LIBVIRT_DEFAULT_URI")}
    return subprocess.run(
        [sys.executable, "-m", "dom0", "-c", "test:///default", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_cli_batch_json_lines_on_the_test_driver() -> None:
    proc = _dom0("top", "--batch", "-n", "2", "-d", "0.2", "--json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        doc = json.loads(line)
        assert doc["interval_s"] == pytest.approx(0.2, abs=0.15)
        datetime.fromisoformat(doc["time"])
        (guest,) = doc["guests"]
        assert guest["name"] == "test"
        assert guest["id"] == 1
        assert guest["vcpus"] == 2
        assert guest["memory_mib"] == 2048
        assert [d["target"] for d in guest["disks"]] == ["vda"]
        assert guest["disks"][0]["swap"] is None  # /guest/diskimage1 does not exist on this host
        assert guest["disks"][0]["rd_bytes_per_s"] > 0  # the test driver's counters grow with time
        assert guest["nics"][0]["mac"] == "aa:bb:cc:dd:ee:ff"
        assert guest["paging_heavily"] is False


def test_cli_text_batch_when_stdout_is_not_a_terminal() -> None:
    proc = _dom0("top", "-n", "1", "-d", "0.1", "test")
    assert proc.returncode == 0, proc.stderr
    heading, header, row, *rest = proc.stdout.splitlines()
    assert heading.startswith("--- ")
    assert "1 guests" in heading
    assert header.split()[:4] == ["NAME", "STATE", "CPU(sec)", "CPU(%)"]
    assert row.split()[:2] == ["test", "r-----"]
    assert any(line.split()[:2] == ["disk", "vda"] for line in rest)


@pytest.mark.parametrize(("args", "message"), [(["-n", "0"], "-n must be"), (["-d", "0"], "-d must be")])
def test_cli_rejects_bad_numbers_in_one_line(args: list[str], message: str) -> None:
    proc = _dom0("top", "--batch", *args)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"dom0: error: {message}")
    assert "Traceback" not in proc.stderr


def test_cli_unknown_guest_is_an_error_not_a_traceback() -> None:
    proc = _dom0("top", "--batch", "-d", "0.1", "no-such-guest")
    assert proc.returncode == 1
    assert "no guest named 'no-such-guest'" in proc.stderr
    assert "Traceback" not in proc.stderr
