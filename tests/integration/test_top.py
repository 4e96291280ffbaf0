"""`dom0 top --batch --json` against real guests: a guest that pages is flagged, an idle one is not, disk I/O shows."""

from __future__ import annotations

import json
from typing import Any

from .conftest import Dom0, MakeGuest, TestGuest


def _samples(dom0: Dom0, *guests: TestGuest, n: int, delay: float = 1.0) -> list[dict[str, Any]]:
    proc = dom0("top", "--batch", "--json", "-n", str(n), "-d", str(delay), *(g.name for g in guests))
    samples = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(samples) == n, proc.stdout
    return samples


def _entry(sample: dict[str, Any], guest: TestGuest) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [g for g in sample["guests"] if g["uuid"] == guest.uuid]
    assert len(entries) == 1, sample
    return entries[0]


def test_a_guest_paging_to_its_swap_disk_is_flagged_and_an_idle_one_is_not(make_guest: MakeGuest, dom0: Dom0) -> None:
    pager = make_guest(swap=True, mode="swap")
    idle = make_guest()
    pager.wait_console("dom0test swap on", timeout=60)

    samples = _samples(dom0, pager, idle, n=5)

    flagged = [_entry(s, pager) for s in samples if _entry(s, pager)["paging_heavily"]]
    assert flagged, "the paging guest was never flagged; its disks were:\n" + "\n".join(
        json.dumps(_entry(s, pager)["disks"]) for s in samples
    )
    note = flagged[-1]["notes"][0]
    assert note.startswith(f"paging heavily (swap {pager.swap_target}: "), note
    for s in samples:
        disks = {d["target"]: d for d in _entry(s, pager)["disks"]}
        assert disks[pager.swap_target]["swap"] is True
        assert disks["vda"]["swap"] is False
        quiet = _entry(s, idle)
        assert quiet["paging_heavily"] is False
        assert [d["swap"] for d in quiet["disks"]] == [False]
        assert quiet["notes"] == []


def test_a_guest_doing_disk_io_shows_read_and_write_rates_on_vda(make_guest: MakeGuest, dom0: Dom0) -> None:
    busy = make_guest(disks=2, mode="diskio")

    # the guest writes then reads 4 MiB of vda every second or so: over 3 s both must show
    samples = _samples(dom0, busy, n=1, delay=3.0)

    disks = {d["target"]: d for d in _entry(samples[0], busy)["disks"]}
    assert disks["vda"]["wr_bytes_per_s"] > 256 * 1024, disks
    assert disks["vda"]["rd_bytes_per_s"] > 256 * 1024, disks
    assert disks["vda"]["wr_reqs_per_s"] > 0
    assert disks["vda"]["rd_reqs_per_s"] > 0
    assert disks["vdb"]["rd_bytes_per_s"] + disks["vdb"]["wr_bytes_per_s"] < disks["vda"]["wr_bytes_per_s"]
    assert _entry(samples[0], busy)["paging_heavily"] is False
