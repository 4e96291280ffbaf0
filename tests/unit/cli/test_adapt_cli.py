"""`dom0 image adapt` through the console script, on ext4 images of old distributions' real file layouts: the plan
first, nothing written by --dry-run, the edits made and read back, nothing left to do the second time; refusals
(a running guest, no kernel for the target) are one line and a hint, with the image untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import ostrees
from unitkit import dom0

from dom0.image.tree import FilesystemTree

# What Fedora's kernel-xen (a xenified 2.6.18-era tree) says about itself in /boot/config-*.
FC5_XEN = "2.6.20-1.2320.fc5xen"
XENIFIED_CONFIG = """\
#
# Automatically generated make config: don't edit
# Linux kernel version: 2.6.20-1.2320.fc5xen
#
CONFIG_X86_32=y
CONFIG_X86_XEN=y
CONFIG_XEN=y
CONFIG_XEN_PRIVILEGED_GUEST=y
CONFIG_XEN_UNPRIVILEGED_GUEST=y
CONFIG_XEN_BLKDEV_FRONTEND=y
CONFIG_XEN_NETDEV_FRONTEND=y
CONFIG_XEN_FRAMEBUFFER=y
CONFIG_XEN_KEYBOARD=y
CONFIG_BLK_DEV_IDE=y
CONFIG_TIGON3=m
"""
# The plain FC5 kernel: bare metal only.
PLAIN_CONFIG = """\
CONFIG_X86_32=y
CONFIG_BLK_DEV_IDE=y
CONFIG_BLK_DEV_SD=m
CONFIG_TIGON3=m
CONFIG_E1000=m
"""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fc5(tmp_path: Path) -> Path:
    tree = ostrees.fedora_core5()
    tree.files.update(
        {
            f"/boot/vmlinuz-{FC5_XEN}": ostrees.KERNEL_BYTES + FC5_XEN.encode(),
            f"/boot/config-{FC5_XEN}": XENIFIED_CONFIG,
            "/boot/config-2.6.20-1.2320.fc5": PLAIN_CONFIG,
            "/boot/config-2.6.15-1.2054_FC5": PLAIN_CONFIG,
        }
    )
    root = tree.build(tmp_path / "tree")
    return ostrees.mkfs_ext4(root, tmp_path / "fc5.img")


def _read(image: Path, path: str) -> str:
    with image.open("rb") as fh:
        return FilesystemTree(fh, "ext4", "fc5.img").read_text(path)


def test_fc5_for_xen_pv_dry_run_then_applied_then_nothing_to_change(tmp_path: Path) -> None:
    image = _fc5(tmp_path)
    digest = _digest(image)

    dry = dom0("image", "adapt", str(image), "--for", "xen-pv", "--dry-run")
    assert dry.rc == 0, dry.err
    lines = dry.out.splitlines()
    assert lines[0] == f"adapt {image} (raw image) for xen-pv: Fedora Core release 5 (Bordeaux) on whole disk"
    assert f"kernel {FC5_XEN}: boots on xen-pv (a xenified 2.6.18-era Xen kernel: xvc0, xennet)" in lines
    assert any(line.startswith("kernel 2.6.20-1.2320.fc5: cannot boot on xen-pv") for line in lines)
    assert any(
        line.startswith("/etc/modprobe.conf: 2 lines -> 4 lines (network driver: eth0 tg3 -> xennet") for line in lines
    )
    assert "  -alias eth0 tg3" in lines
    assert "  +alias eth0 xennet" in lines
    assert any(line.startswith("/etc/inittab: ") for line in lines)
    assert lines[-1] == "dry run: nothing written"
    assert _digest(image) == digest

    done = dom0("image", "adapt", str(image), "--for", "xen-pv", "--json")
    assert done.rc == 0, done.err
    doc = json.loads(done.out)
    assert doc["applied"] is True
    assert doc["for"] == "xen-pv"
    assert doc["root"]["location"] == "whole disk"
    assert doc["kernels"][0] == {"version": FC5_XEN, "bootable": True, "xenified": True, "reasons": []}
    changed = {c["path"]: c for c in doc["changes"]}
    assert changed["/etc/modprobe.conf"]["before"] == "alias eth0 tg3\nalias scsi_hostadapter ata_piix\n"
    assert changed["/etc/modprobe.conf"]["action"] == "write"
    for path, change in changed.items():
        if change["action"] == "write":
            assert _read(image, path) == change["after"], path
    assert "xvc0" in _read(image, "/etc/inittab")
    assert "xvc0" in _read(image, "/etc/securetty").split()

    again = dom0("image", "adapt", str(image), "--for", "xen-pv")
    assert again.rc == 0, again.err
    assert again.out.splitlines()[-1] == "already adapted for xen-pv: nothing to change"
    after = _digest(image)
    assert dom0("image", "adapt", str(image), "--for", "xen-pv").rc == 0
    assert _digest(image) == after


def test_a_guest_whose_only_kernel_cannot_boot_there_is_refused_with_the_package(tmp_path: Path) -> None:
    tree = ostrees.centos53()
    for version in ("2.6.18-92.el5xen", "2.6.18-128.el5xen"):
        tree.files[f"/boot/config-{version}"] = XENIFIED_CONFIG.replace(FC5_XEN, version)
    image = ostrees.mkfs_ext4(tree.build(tmp_path / "tree"), tmp_path / "c5.img")
    digest = _digest(image)
    done = dom0("image", "adapt", str(image), "--for", "kvm")
    assert done.rc == 1
    assert done.out == ""
    first, hint = done.err.splitlines()
    assert first.startswith("dom0: error: no kernel installed in CentOS release 5.3 (Final) can boot on kvm: ")
    assert (
        hint
        == "  hint: install kernel in the guest (it has 2.6.18-128.el5xen, 2.6.18-92.el5xen only), then adapt it again"
    )
    assert _digest(image) == digest


def test_a_running_guest_is_refused(tmp_path: Path) -> None:
    done = dom0("-c", "test:///default", "image", "adapt", "test", "--for", "kvm")
    assert done.rc == 1
    assert done.err.splitlines() == [
        "dom0: error: test is running: shut it down first (adapting a live guest's disks would corrupt them)",
        "  hint: dom0 shutdown --wait test",
    ]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    done = dom0("image", "adapt", str(tmp_path), "--for", "vmware")
    assert done.rc == 2
    assert "invalid choice" in done.err


def test_inspect_says_per_target_what_adapt_would_change_and_writes_nothing(tmp_path: Path) -> None:
    image = _fc5(tmp_path)
    digest = _digest(image)
    shown = dom0("image", "inspect", str(image))
    assert shown.rc == 0, shown.err
    ready = [line.strip() for line in shown.out.splitlines() if line.strip().startswith("ready for ")]
    assert ready == [
        "ready for xen-pv: no: console tty1, tty2 only, tg3 driver",
        "ready for xen-pvh: no: a kernel for xen-pvh (install kernel), console tty1, tty2 only, tg3 driver",
        "ready for xen-hvm: no: console tty1, tty2 only, tg3 driver",  # the plain kernel boots on emulated hardware
        "ready for kvm: no: a kernel for kvm (install kernel), console tty1, tty2 only, tg3 driver",
    ]
    doc = json.loads(dom0("image", "inspect", str(image), "--json").out)
    adapt = doc["operating_systems"][0]["adapt"]
    assert list(adapt) == ["xen-pv", "xen-pvh", "xen-hvm", "kvm"]
    assert adapt["xen-pv"] == {"ready": False, "needs": ["console tty1, tty2 only", "tg3 driver"]}
    assert _digest(image) == digest

    assert dom0("image", "adapt", str(image), "--for", "xen-pv").rc == 0
    after = dom0("image", "inspect", str(image), "--json")
    assert json.loads(after.out)["operating_systems"][0]["adapt"]["xen-pv"] == {"ready": True, "needs": []}


def test_an_hvm_guest_without_xen_pv_drivers_gets_the_emulated_nic_and_keeps_its_disk_names(tmp_path: Path) -> None:
    image = _fc5(tmp_path)
    # the newest kernel is the xenified one, which runs only as PV: make the plain kernels the only ones
    r = dom0("image", "adapt", str(image), "--for", "xen-hvm", "--dry-run", "--json")
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    (plain,) = [k for k in doc["kernels"] if k["version"] == "2.6.20-1.2320.fc5"]
    assert plain["bootable"]
    assert any("runs on the emulated disk and NIC only" in why for why in plain["reasons"])
    (modprobe,) = [c for c in doc["changes"] if c["path"] == "/etc/modprobe.conf"]
    # xl's default emulated NIC is an RTL8139: xen-netfront would leave this 2.6.20 kernel without network
    assert "alias eth0 8139too" in modprobe["after"]
    assert not any("xvd" in (c["after"] or "") for c in doc["changes"])
