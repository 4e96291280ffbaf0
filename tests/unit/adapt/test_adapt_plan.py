"""Planning and applying `adapt` on real ext4 images: where edits land (a separate /boot filesystem), what is
refused before anything is written (no bootable kernel, a root dom0 cannot edit), and the second run's plan.

The kernel checker and the file planner are stood in for here (their own tests check their verdicts), so these
tests pin down plan.py's part: finding the root, the order of checks, splitting edits by filesystem, reading back.
"""

from __future__ import annotations

import hashlib
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ostrees
import pytest
from imagebuild import SECTOR, MiB, mkfs, place, sfdisk, sparse

from dom0.adapt.plan import apply_adapt, plan_adapt
from dom0.adapt.target import Devices, Target
from dom0.errors import Dom0Error
from dom0.guest.identity import Edit
from dom0.hypervisor import Hypervisor
from dom0.image.source import open_image
from dom0.image.tree import FilesystemTree

MENU = "/boot/grub/grub.conf"
TG3 = "alias eth0 tg3\nalias scsi_hostadapter ata_piix\n"


@dataclass(frozen=True)
class Verdict:
    version: str
    bootable: bool
    xenified: bool
    reasons: tuple[str, ...] = ()
    pv_drivers: bool = True


@dataclass(frozen=True)
class Check:
    verdicts: tuple[Verdict, ...]
    best: Verdict | None
    install_hint: str


@dataclass(frozen=True)
class Change:
    path: str
    before: str | None
    after: str | None
    why: str
    edit: Edit


def _no_hypervisor() -> Hypervisor:
    raise AssertionError("an image path needs no hypervisor")


def _plan_files(tree: Any, system: Any, target: Target, devices: Devices, filesystems: Any) -> Any:
    """Stand-in planner: the NIC alias in modprobe.conf, and console= in grub.conf (on /boot)."""
    changes = []
    for path, old, new in (
        ("/etc/modprobe.conf", "tg3", devices.nic_driver),
        (MENU, "console=tty0", f"console={devices.console}"),
    ):
        text = tree.read_text(path)
        if old in text:
            edit = Edit(path, "write", text.replace(old, new).encode(), 0o644, f"{old} -> {new}")
            changes.append(Change(path, text, text.replace(old, new), f"{old} -> {new}", edit))
    return tuple(changes), ("stand-in planner",)


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> Callable[[Check], None]:
    def install(check: Check) -> None:
        bootable = types.ModuleType("dom0.adapt.bootable")
        bootable.judge = lambda tree, system, target: check  # type: ignore[attr-defined]
        files = types.ModuleType("dom0.adapt.files")
        files.plan_files = _plan_files  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "dom0.adapt.bootable", bootable)
        monkeypatch.setitem(sys.modules, "dom0.adapt.files", files)

    return install


GOOD = Verdict("2.6.20-1.2320.fc5xen", True, True)
OK = Check((GOOD,), GOOD, "")


def _fc5_disk(tmp_path: Path) -> Path:
    """An MBR disk as FC5's installer made it: /boot (LABEL=/boot) in partition 1, / (LABEL=/) in partition 2."""
    tree = ostrees.fedora_core5().build(tmp_path / "tree")
    (tree / "boot/grub").mkdir(parents=True)
    (tree / "boot/grub/grub.conf").write_text(
        "default=0\ntimeout=5\ntitle Fedora Core (2.6.20-1.2320.fc5)\n\troot (hd0,0)\n"
        "\tkernel /vmlinuz-2.6.20-1.2320.fc5 ro root=LABEL=/ console=tty0\n\tinitrd /initrd-2.6.20-1.2320.fc5.img\n"
    )
    boot = ostrees.split_boot(tree, tmp_path / "boot")
    disk = sparse(tmp_path / "fc5.img", 80 * MiB)
    sfdisk(disk, "label: dos\nstart=2048, size=32768, type=83, bootable\nstart=34816, type=83\n")
    p1 = mkfs("ext3", tmp_path / "p1", 32768 * SECTOR, "0d0e0000-0000-4000-8000-0000000000b1", "/boot", tree=boot)
    p2 = mkfs("ext3", tmp_path / "p2", 40 * MiB, "0d0e0000-0000-4000-8000-0000000000b2", "/", tree=tree)
    place(disk, 2048 * SECTOR, p1)
    place(disk, 34816 * SECTOR, p2)
    return disk


def _read(disk: Path, offset: int, path: str) -> str:
    with open_image(disk, format="raw") as source:
        window = source.window(offset, source.size - offset)
        return FilesystemTree(window.as_file(), "ext3", "test").read_text(path)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_edits_below_boot_land_in_the_boot_filesystem_and_a_second_plan_is_empty(
    tmp_path: Path, stand_ins: Callable[[Check], None]
) -> None:
    stand_ins(OK)
    disk = _fc5_disk(tmp_path)
    digest = _digest(disk)
    plan = plan_adapt(str(disk), "xen-pv", hv=_no_hypervisor)
    assert _digest(disk) == digest  # planning reads only
    assert [c.path for c in plan.changes] == ["/etc/modprobe.conf", MENU]
    assert plan.root.location == "partition 2"
    assert [m[:2] for m in plan.root.mounts] == [("/boot", "partition 1")]
    assert plan.diffs[0] == ("-alias eth0 tg3", "+alias eth0 xennet")  # a xenified kernel: xennet, xvc0
    assert "stand-in planner" in plan.notes

    result = apply_adapt(plan)
    assert result.applied
    assert result.changed == 2
    assert _read(disk, 34816 * SECTOR, "/etc/modprobe.conf") == TG3.replace("tg3", "xennet")
    assert "console=xvc0" in _read(disk, 2048 * SECTOR, "/grub/grub.conf")  # in /boot's own filesystem
    with pytest.raises(Dom0Error):
        _read(disk, 34816 * SECTOR, "/boot/grub/grub.conf")  # not in the root's empty /boot directory

    again = plan_adapt(str(disk), "xen-pv", hv=_no_hypervisor)
    assert again.changes == ()
    assert not apply_adapt(again).applied


def test_no_bootable_kernel_is_refused_with_the_package_before_any_edit(
    tmp_path: Path, stand_ins: Callable[[Check], None]
) -> None:
    bad = Verdict("2.6.20-1.2320.fc5", False, False, ("no CONFIG_XEN",))
    stand_ins(Check((bad,), None, "install kernel-xen in the guest (it has 2.6.20-1.2320.fc5 only)"))
    disk = _fc5_disk(tmp_path)
    digest = _digest(disk)
    with pytest.raises(Dom0Error) as caught:
        plan_adapt(str(disk), Target.XEN_PV, hv=_no_hypervisor)
    assert "no kernel installed in Fedora Core release 5 (Bordeaux) can boot on xen-pv" in caught.value.message
    assert "2.6.20-1.2320.fc5: no CONFIG_XEN" in caught.value.message
    assert caught.value.hint == "install kernel-xen in the guest (it has 2.6.20-1.2320.fc5 only), then adapt it again"
    assert _digest(disk) == digest


def test_a_root_dom0_cannot_edit_is_refused_never_mounted(tmp_path: Path, stand_ins: Callable[[Check], None]) -> None:
    stand_ins(OK)
    tree = ostrees.fedora_core5().build(tmp_path / "tree")
    image = ostrees.make_fs_image(tree, tmp_path / "root.img", "xfs")
    with pytest.raises(Dom0Error) as caught:
        plan_adapt(str(image), "kvm", hv=_no_hypervisor)
    assert "(xfs, whole disk of" in caught.value.message
    assert "dom0 edits ext2/3/4" in caught.value.message
    assert "never mounts" in caught.value.hint


def test_inspect_readiness_reads_each_initrd_once_for_all_four_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dom0.adapt import bootable
    from dom0.adapt.initrd import initrd_files as real
    from dom0.adapt.plan import readiness
    from dom0.image.layout import scan
    from dom0.image.osinspect import find_roots

    reads: list[str] = []

    def counted(tree: Any, path: str, *wanted: Any) -> Any:
        reads.append(path)
        return real(tree, path, *wanted)

    monkeypatch.setattr(bootable, "initrd_files", counted)
    image = ostrees.mkfs_ext4(ostrees.fedora_core5().build(tmp_path / "tree"), tmp_path / "fc5.img")
    with open_image(image) as source:
        layout = scan(source)
        [(_, tree, system)] = find_roots(source, layout)
        ready = readiness(tree, system, tuple(layout.filesystems))
    assert list(ready) == ["xen-pv", "xen-pvh", "xen-hvm", "kvm"]
    assert reads  # the initrds were looked into...
    assert sorted(reads) == sorted(set(reads))  # ...once each, not once per target
    assert len(reads) <= len(system.kernels)
