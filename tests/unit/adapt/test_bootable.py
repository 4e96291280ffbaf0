"""Which installed kernels boot on each target, read from /boot/config-*, modules lists and the real initrds these
tests write over the dummy ones of tests/data/ostrees.py trees; and the package to install when none does."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import ostrees
import pytest
import zstandard
from test_initrd import newc

from dom0.adapt.bootable import BootCheck, install_hint, judge
from dom0.adapt.target import Target
from dom0.image.osinspect import inspect_tree
from dom0.image.tree import DirectoryTree

DEB = "6.1.0-10-amd64"
DEB_CONFIG = """\
#
# Automatically generated file; DO NOT EDIT.
# Linux/x86 6.1.55 Kernel Configuration
#
CONFIG_X86_64=y
CONFIG_HYPERVISOR_GUEST=y
CONFIG_XEN=y
CONFIG_XEN_PV=y
CONFIG_XEN_PVHVM=y
CONFIG_XEN_PVH=y
CONFIG_XEN_BLKDEV_FRONTEND=m
CONFIG_XEN_NETDEV_FRONTEND=m
CONFIG_VIRTIO_PCI=m
CONFIG_VIRTIO_BLK=m
CONFIG_SCSI_VIRTIO=m
CONFIG_VIRTIO_NET=m
CONFIG_LOCALVERSION=""
"""
DEB_MODULES = f"usr/lib/modules/{DEB}/kernel/drivers"
DEB_INITRD = [
    ("init", 0o100755, b"#!/bin/sh\n"),
    (f"{DEB_MODULES}/block/xen-blkfront.ko", 0o100644, b"\x7fELF"),
    (f"{DEB_MODULES}/block/virtio_blk.ko", 0o100644, b"\x7fELF"),
    (f"{DEB_MODULES}/scsi/virtio_scsi.ko", 0o100644, b"\x7fELF"),
    (f"{DEB_MODULES}/virtio/virtio_pci.ko", 0o100644, b"\x7fELF"),
]
DEB_MODULES_DEP = (
    "kernel/drivers/net/xen-netfront.ko:\n"
    "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko\n"
    "kernel/drivers/block/virtio_blk.ko:\n"
    "kernel/drivers/net/ethernet/broadcom/tg3.ko: kernel/drivers/net/phy/libphy.ko\n"
)


def _early_microcode_zstd(entries: list[tuple[str, int, bytes]]) -> bytes:
    early = newc([("kernel/x86/microcode/AuthenticAMD.bin", 0o100644, b"\x01" * 100)])
    return early + b"\0" * (-len(early) % 512) + zstandard.ZstdCompressor().compress(newc(entries))


def debian12(
    tmp_path: Path, *, config: str | None = DEB_CONFIG, initrd: list[tuple[str, int, bytes]] = DEB_INITRD
) -> Path:
    """Debian 12 with one kernel (6.1.0-10-amd64), its config, modules.dep and a zstd initrd with microcode."""
    tree = ostrees.debian12()
    del tree.files["/boot/vmlinuz-6.1.0-9-amd64"], tree.files["/boot/initrd.img-6.1.0-9-amd64"]
    tree.files[f"/boot/initrd.img-{DEB}"] = _early_microcode_zstd(initrd)
    tree.files[f"/usr/lib/modules/{DEB}/modules.dep"] = DEB_MODULES_DEP
    if config is not None:
        tree.files[f"/boot/config-{DEB}"] = config
    tree.links["/lib"] = "usr/lib"
    return tree.build(tmp_path / "debian12")


def check(root: Path, target: Target) -> BootCheck:
    tree = DirectoryTree(root)
    system = inspect_tree(tree)
    assert system is not None
    return judge(tree, system, target)


@pytest.mark.parametrize("target", list(Target))
def test_debian12_with_drivers_as_modules_in_its_initrd_boots_everywhere(tmp_path: Path, target: Target) -> None:
    got = check(debian12(tmp_path), target)
    assert got.best is not None
    assert got.best.version == DEB
    assert got.best.reasons == ()
    assert not got.best.xenified
    assert got.install_hint is None


CENTOS5_CONFIG = """\
# Linux kernel version: 2.6.18-128.el5xen
CONFIG_X86_64=y
CONFIG_X86_64_XEN=y
CONFIG_XEN=y
CONFIG_XEN_UNPRIVILEGED_GUEST=y
CONFIG_XEN_BLKDEV_FRONTEND=m
CONFIG_XEN_NETDEV_FRONTEND=m
# CONFIG_VIRTIO_BLK is not set
"""


def centos5(tmp_path: Path) -> Path:
    """CentOS 5.3 with only kernel-xen installed: xenblk in mkinitrd's gzip initrd, xennet installed."""
    tree = ostrees.centos53()
    for release in ("2.6.18-128.el5xen", "2.6.18-92.el5xen"):
        tree.files[f"/boot/config-{release}"] = CENTOS5_CONFIG.replace("128.el5xen", release[7:])
        tree.files[f"/boot/initrd-{release}.img"] = gzip.compress(
            newc([("init", 0o100755, b"#!/bin/nash\n"), ("lib/xenblk.ko", 0o100644, b"\x7fELF")])
        )
        tree.files[f"/lib/modules/{release}/modules.dep"] = (
            f"/lib/modules/{release}/kernel/drivers/xen/netfront/xennet.ko:\n"
            f"/lib/modules/{release}/kernel/drivers/xen/blkfront/xenblk.ko:\n"
        )
    return tree.build(tmp_path / "centos5")


def test_centos5_with_only_kernel_xen_boots_as_xen_pv_only(tmp_path: Path) -> None:
    root = centos5(tmp_path)
    pv = check(root, Target.XEN_PV)
    assert pv.best is not None
    assert (pv.best.version, pv.best.xenified, pv.best.reasons) == ("2.6.18-128.el5xen", True, ())
    for target in (Target.KVM, Target.XEN_PVH, Target.XEN_HVM):
        got = check(root, target)
        assert got.best is None
        assert [v.xenified for v in got.verdicts] == [True, True]
        assert got.verdicts[0].reasons == (
            "2.6.18-128.el5xen is a xenified Xen kernel (2.6.18 era): it boots only as a Xen PV guest",
        )
        assert got.install_hint == "install kernel in the guest (it has 2.6.18-128.el5xen, 2.6.18-92.el5xen only)"


def test_kernel_without_pvh_support_cannot_boot_as_pvh(tmp_path: Path) -> None:
    root = debian12(tmp_path, config=DEB_CONFIG.replace("CONFIG_XEN_PVH=y", "# CONFIG_XEN_PVH is not set"))
    got = check(root, Target.XEN_PVH)
    assert got.best is None
    assert got.verdicts[0].reasons == (f"CONFIG_XEN_PVH is not =y in /boot/config-{DEB}: no PVH support",)
    assert got.install_hint == f"install linux-image-amd64 in the guest (it has {DEB} only)"
    assert check(root, Target.XEN_PV).best is not None


def test_kvm_guest_whose_initrd_lacks_virtio_blk_cannot_reach_its_disk(tmp_path: Path) -> None:
    without = [e for e in DEB_INITRD if "virtio_blk" not in e[0] and "virtio_scsi" not in e[0]]
    root = debian12(tmp_path, initrd=without)
    got = check(root, Target.KVM)
    assert got.best is None
    assert got.verdicts[0].reasons == (
        f"virtio_blk is neither built in nor in /boot/initrd.img-{DEB} (nor is virtio_scsi)",
    )
    # virtio_scsi alone reaches the disk too
    root = debian12(tmp_path / "scsi", initrd=[e for e in DEB_INITRD if "virtio_blk" not in e[0]])
    assert check(root, Target.KVM).best is not None


def test_xen_pv_needs_config_xen_pv_from_4_14_and_the_net_frontend_installed(tmp_path: Path) -> None:
    config = DEB_CONFIG.replace("CONFIG_XEN_PV=y", "# CONFIG_XEN_PV is not set").replace(
        "CONFIG_XEN_NETDEV_FRONTEND=m", "# CONFIG_XEN_NETDEV_FRONTEND is not set"
    )
    got = check(debian12(tmp_path, config=config), Target.XEN_PV)
    assert got.best is None
    assert got.verdicts[0].reasons == (
        f"CONFIG_XEN_PV is not =y in /boot/config-{DEB}: no Xen PV support",
        f"xen-netfront is neither built in nor installed in /lib/modules/{DEB}",
    )
    hvm = check(debian12(tmp_path / "hvm", config=config), Target.XEN_HVM)
    assert hvm.best is not None
    assert hvm.best.reasons == (
        f"runs on the emulated disk and NIC only: xen-netfront is neither built in nor installed in /lib/modules/{DEB}",
    )


def test_without_a_config_the_judgement_says_it_is_weaker(tmp_path: Path) -> None:
    got = check(debian12(tmp_path, config=None), Target.KVM)
    assert got.best is not None
    assert got.best.reasons == (f"no /boot/config-{DEB}: judged from the version, flavour and initrd only",)
    # a modular initrd read whole that lacks virtio_blk: missing, even without a config
    without = [e for e in DEB_INITRD if "virtio" not in e[0]]
    got = check(debian12(tmp_path / "b", config=None, initrd=without), Target.KVM)
    assert got.best is None
    assert got.verdicts[0].reasons[0] == f"virtio_pci is neither built in nor in /boot/initrd.img-{DEB}"


def test_fedora_core5_kernels_predate_virtio_and_xen_pv(tmp_path: Path) -> None:
    root = ostrees.fedora_core5().build(tmp_path / "fc5")
    kvm = check(root, Target.KVM)
    assert kvm.best is None
    assert "virtio_pci did not exist yet in Linux 2.6.20" in kvm.verdicts[0].reasons
    pv = check(root, Target.XEN_PV)
    assert pv.best is None
    assert (
        pv.verdicts[0].reasons[0]
        == "2.6.20-1.2320.fc5 is neither a -xen flavour nor 2.6.32 or later: not built for Xen PV"
    )
    assert pv.install_hint == "install kernel-xen in the guest (it has 2.6.20-1.2320.fc5, 2.6.15-1.2054_FC5 only)"
    assert check(root, Target.XEN_HVM).best is not None  # emulated disks and NIC


def test_hostile_config_and_initrd_are_notes_not_errors(tmp_path: Path) -> None:
    root = debian12(tmp_path)
    (root / "boot" / f"config-{DEB}").unlink()
    (root / "boot" / f"config-{DEB}").symlink_to(tmp_path / "host-config")  # a host path: not followed
    (tmp_path / "host-config").write_text(DEB_CONFIG.replace("CONFIG_XEN=y", "# CONFIG_XEN is not set"))
    (root / "boot" / f"initrd.img-{DEB}").write_bytes(_early_microcode_zstd(DEB_INITRD)[:700])
    (root / "usr" / "lib" / "modules" / DEB / "modules.builtin").symlink_to("modules.builtin")  # a loop
    got = check(root, Target.XEN_PV)
    # judged without the host's config (which says no Xen), and the cut initrd said
    assert got.best is not None
    assert got.best.reasons[0] == f"no /boot/config-{DEB}: judged from the version, flavour and initrd only"
    assert got.best.reasons[1].startswith(f"/lib/modules/{DEB}/modules.builtin not read: symlink loop")
    assert got.best.reasons[2].startswith(f"/boot/initrd.img-{DEB}: initrd truncated after 1 entries")


@pytest.mark.parametrize(
    ("tree", "target", "package"),
    [
        (ostrees.debian4, Target.XEN_PV, "linux-image-2.6-xen-686"),
        (ostrees.debian12, Target.KVM, "linux-image-amd64"),
        (ostrees.ubuntu22, Target.XEN_PV, "linux-image-generic"),
        (ostrees.rhel54, Target.XEN_PV, "kernel-xen"),
        (ostrees.rhel54, Target.KVM, "kernel"),
        (ostrees.rocky9, Target.XEN_PV, "kernel"),
        (ostrees.sles10, Target.XEN_PV, "kernel-xen"),
        (ostrees.opensuse_leap42, Target.XEN_PV, "kernel-default"),
        (ostrees.fedora_core5, Target.XEN_PV, "kernel-xen"),
        (ostrees.alpine, Target.KVM, "linux-virt"),
        (ostrees.arch, Target.KVM, "linux"),
    ],
)
def test_install_hint_names_the_distribution_s_package(
    tmp_path: Path, tree: Callable[[], ostrees.OSTree], target: Target, package: str
) -> None:
    system = inspect_tree(DirectoryTree(tree().build(tmp_path / "t")))
    assert system is not None
    hint = install_hint(system, target, system.kernels)
    assert hint == f"install {package} in the guest (it has {', '.join(k.version for k in system.kernels)} only)"
