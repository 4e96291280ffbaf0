"""The storage lab: dom0.storage's LVM code against real lvm2 and device-mapper.

Runs where device-mapper works (the host kernel here has none: a QEMU guest with Debian's kernel runs this
directory, with the project shared into it). Needs root, lvm2, and a spare block device named by
DOM0_STORAGELAB_DISK, whose contents are destroyed: a volume group `dom0lab` is created on it for the session and
removed after. Without DOM0_STORAGELAB_DISK every test here is skipped.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dom0 import run

VG = "dom0lab"
DISK_ENV = "DOM0_STORAGELAB_DISK"


def _blkid(device: str) -> dict[str, str]:
    out = run.run(["blkid", "-p", "-o", "export", device], check=False).stdout.decode()
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _cleanup_vg() -> None:
    if run.run(["vgs", VG], check=False).returncode == 0:
        run.run(["vgremove", "--force", "--force", VG])


@pytest.fixture(scope="session")
def lab_disk() -> Iterator[str]:
    """The spare disk, made an LVM PV holding the (empty) volume group dom0lab for the whole session."""
    device = os.environ.get(DISK_ENV, "")
    if not device:
        pytest.skip(f"{DISK_ENV} is not set (the LVM lab runs in a guest with device-mapper)")
    if os.geteuid() != 0:
        pytest.skip("the LVM lab needs root")
    if not (run.available("lvcreate") and Path("/dev/mapper/control").exists()):
        pytest.skip("lvm2 or device-mapper missing")
    if not stat.S_ISBLK(os.stat(device).st_mode):
        pytest.fail(f"{DISK_ENV}={device} is not a block device")
    found = _blkid(device)
    # Only an empty disk, or one still holding this lab's own VG from an interrupted run, is ever wiped.
    if found and found.get("TYPE") != "LVM2_member":
        pytest.fail(f"{device} holds {found.get('TYPE')}: give an empty spare disk in {DISK_ENV}")
    if found:
        vg = run.output(["pvs", "--noheadings", "-o", "vg_name", device]).strip()
        if vg not in ("", VG):
            pytest.fail(f"{device} belongs to volume group {vg}: give an empty spare disk in {DISK_ENV}")
        _cleanup_vg()
    run.run(["pvcreate", "--yes", "--force", device])
    run.run(["vgcreate", "--yes", VG, device])
    try:
        yield device
    finally:
        _cleanup_vg()
        run.run(["pvremove", "--yes", device], check=False)


@pytest.fixture
def vg(lab_disk: str) -> Iterator[str]:
    """The lab VG, emptied of every LV after each test."""
    yield VG
    # Everything in the lab's own VG (lvm2 orders snapshots before origins, thin LVs before pools).
    run.run(["lvremove", "--yes", VG], check=False)
