"""The survey: one report per target, the same rows from the pool as read in turn, a dying reader costing only its
own row, running guests' disks read as they are, and the kernel a direct-boot guest boots read from the host."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import guestnode
import pytest

from dom0.hypervisor import choose_uri, connect
from dom0.image import survey
from dom0.image.targets import TargetImage


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> guestnode.Node:
    return guestnode.standard_node(tmp_path_factory.mktemp("node"))


def _items(node: guestnode.Node) -> list[TargetImage | survey.Unresolved]:
    hv = connect(choose_uri(node.uri))
    try:
        return survey.resolve_all(["nosuch", str(node.alpine)], hv=lambda: hv, every=True)
    finally:
        hv.close()


def _rows(reports: list[survey.Report]) -> list[tuple[str, object, object]]:
    return [(r.name, r.row, r.error) for r in reports]


def test_the_pool_and_reading_in_turn_give_the_same_rows(node: guestnode.Node) -> None:
    items = _items(node)
    pooled, in_turn = survey.survey(items, jobs=2), survey.survey(items, jobs=1)
    assert _rows(pooled) == _rows(in_turn)
    names = [r.name for r in pooled]
    assert names == ["nosuch", str(node.alpine), "web", "alpine-guest", "centos5", "gone", "junk"]
    by_name = {r.name: r for r in pooled}
    web = by_name["web"].row
    assert web is not None
    assert (web.os, web.packages, web.kernel, web.boots) == (
        "Debian 12 (bookworm)",
        "apt",
        "6.1.0-10-amd64",
        "6.1.0-9-amd64",
    )
    assert by_name["nosuch"].error == "nosuch is neither an image file nor a guest"
    assert by_name["gone"].error == f"disk vda: {node.missing}: no such file"
    assert by_name["junk"].error == "no operating system found (vda: no partition table or filesystem dom0 reads)"


_READ = survey.inspect_target


def _dies_on_centos(target: TargetImage) -> survey.Report:
    """The reader, except that it dies (as a segfault in a reader would) on centos5's disk."""
    if target.guest is not None and target.guest.name == "centos5":
        os._exit(3)
    return _READ(target)


def test_a_reader_that_dies_costs_only_its_own_row(node: guestnode.Node, monkeypatch: pytest.MonkeyPatch) -> None:
    items = _items(node)
    monkeypatch.setattr(survey, "inspect_target", _dies_on_centos)
    reports = {r.name: r for r in survey.survey(items, jobs=2)}
    assert reports["centos5"].error == "the process reading its disks died"
    assert reports["web"].row is not None
    assert reports["alpine-guest"].row is not None


def test_a_running_guest_read_while_its_journal_holds_changes_says_so(node: guestnode.Node, tmp_path: Path) -> None:
    disk = tmp_path / "live.img"
    shutil.copy(node.debian, disk)
    with disk.open("r+b") as fh:  # RECOVER in the superblock's incompatible features: mounted, journal not replayed
        fh.seek(1024 + 0x60)
        flags = int.from_bytes(fh.read(4), "little")
        fh.seek(1024 + 0x60)
        fh.write((flags | 0x4).to_bytes(4, "little"))
    uri = guestnode.write_node(tmp_path / "node.xml", [guestnode.NodeGuest("live", str(disk), "running")])
    hv = connect(choose_uri(uri))
    items = survey.resolve_all(["live"], hv=lambda: hv)
    hv.close()
    (report,) = survey.survey(items)
    assert report.row is not None
    assert survey.RUNNING_NOTE in report.notes


def test_a_running_guest_whose_filesystem_does_not_open_is_not_guessed(node: guestnode.Node, tmp_path: Path) -> None:
    disk = tmp_path / "torn.img"
    shutil.copy(node.debian, disk)
    with disk.open("r+b") as fh:  # its group descriptors overwritten, as a read racing the guest's writes can see
        fh.seek(2048)
        fh.write(b"\xff" * 8192)
    guests = [guestnode.NodeGuest("torn", str(disk), "running"), guestnode.NodeGuest("off", str(disk))]
    uri = guestnode.write_node(tmp_path / "node.xml", guests)
    hv = connect(choose_uri(uri))
    items = survey.resolve_all(["torn", "off"], hv=lambda: hv)
    hv.close()
    torn, off = survey.survey(items)
    assert torn.error is not None
    assert torn.error.startswith(survey.INCONSISTENT)
    assert off.error is not None
    assert off.error.startswith("no operating system found")


def test_the_booted_kernel_from_its_name_its_header_or_why_not(node: guestnode.Node, tmp_path: Path) -> None:
    assert survey.booted_release(str(node.kernels / "vmlinuz-6.1.0-9-amd64")) == ("6.1.0-9-amd64", "")
    assert survey.booted_release(str(node.kernels / "vmlinuz")) == ("6.6.14-0-virt", "")
    (tmp_path / "vmlinuz").symlink_to(node.kernels / "vmlinuz-6.1.0-9-amd64")  # as dom0 image kernel links it
    assert survey.booted_release(str(tmp_path / "vmlinuz")) == ("6.1.0-9-amd64", "")
    junk = tmp_path / "kernel"
    junk.write_bytes(b"MZ" + b"\0" * 100)
    assert survey.booted_release(str(junk)) == (None, f"{junk} has no x86 kernel header to read its version from")
    # An uncompressed kernel (what Xen PVH boots): its banner, here cut in two by the reader's chunk boundary, and
    # printk's format string before it, which is not a release.
    vmlinux = tmp_path / "vmlinux"
    banner = b"Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) (gcc-12) #1 SMP"
    cut = survey._ELF_CHUNK - 20
    with vmlinux.open("wb") as f:
        f.write(b"\x7fELF" + b"\0" * 60 + b"Linux version %s (%s)\0")
        f.seek(cut)
        f.write(banner)
    assert survey.booted_release(str(vmlinux)) == ("6.1.0-57-amd64", "")
    stripped = tmp_path / "vmlinux-stripped"
    stripped.write_bytes(b"\x7fELF" + b"\0" * 4096)
    assert survey.booted_release(str(stripped)) == (None, f"{stripped} does not say its version")
    release, why = survey.booted_release(str(tmp_path / "absent"))
    assert release is None
    assert why.startswith(f"cannot read {tmp_path / 'absent'}")
