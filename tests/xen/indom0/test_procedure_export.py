"""Moving a Xen guest to another host on removable media: `dom0 export` writes a shut-off PV guest whose root and
swap are LVs to a directory, `dom0 import` defines it under a new name with its disks in a volume group, and the
import boots on Xen as the guest it was, with its own MAC, while the original is left as it was; once per backend
(an xl.cfg in /etc/xen on xl://, a libvirt definition on xen:///system). The destination VG held another guest
before, as a real host's does: its old bytes must not show through the imported disk.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import lvmlab
from .guests import BACKENDS, GUEST_KERNEL, WORK, dom0, xl, xl_state
from .lvmlab import LvGuest, VolumeGroup

SOURCE_MACS = {"xl": "00:16:3e:d0:02:01", "lv": "00:16:3e:d0:02:02"}
ROOT_BYTES = lvmlab.ROOT_MIB * lvmlab.MiB


@pytest.fixture(scope="module")
def vg(uri: str) -> Iterator[VolumeGroup]:
    with lvmlab.volume_group(f"dom0test-{BACKENDS[uri]}-export") as made:
        yield made


@pytest.fixture(scope="module")
def source(uri: str, vg: VolumeGroup) -> Iterator[LvGuest]:
    """The guest to move, shut off: defined, its LVs written, not running."""
    tag = BACKENDS[uri]
    with lvmlab.defined_guest(uri, vg, f"dom0test-{tag}-lvmail", SOURCE_MACS[tag]) as g:
        yield g


@dataclass
class Moved:
    """The export, and the guest imported from it."""

    export: dict[str, Any]  # dom0 export --json
    directory: Path
    imported: dict[str, Any]  # dom0 import --json
    guest: LvGuest
    source_sha: str
    source_definition: str
    old_extents: tuple[int, int]  # where another guest's data lay in the VG before the import


@pytest.fixture(scope="module")
def moved(uri: str, vg: VolumeGroup, source: LvGuest) -> Iterator[Moved]:
    tag = BACKENDS[uri]
    name = f"dom0test-{tag}-lvmail2"
    media = WORK / f"media-{tag}"
    lvmlab.forget(uri, name)
    shutil.rmtree(media, ignore_errors=True)
    media.mkdir(parents=True)
    source_sha = lvmlab.sha256(source.disk, ROOT_BYTES)
    source_definition = lvmlab.stored_definition(uri, source.name)
    try:
        export = json.loads(dom0(uri, "export", source.name, str(media), "--json", timeout=300).stdout)
        old = vg.leave_old_data(lvmlab.ROOT_MIB + lvmlab.SWAP_MIB)
        boot_dir = str(GUEST_KERNEL.parent)  # the lab's guest kernel: this host's file, vouched for
        args = ("import", export["directory"], "--name", name, "--storage", vg.name, "--boot-dir", boot_dir)
        imported = json.loads(dom0(uri, *args, "--json", timeout=300).stdout)
        root, swap = map(Path, imported["disks"])
        mac = _stored_mac(uri, name)
        g = lvmlab.guest(uri, name, mac, root, swap)
        yield Moved(export, Path(export["directory"]), imported, g, source_sha, source_definition, old)
    finally:
        lvmlab.forget(uri, name)
        shutil.rmtree(media, ignore_errors=True)


@pytest.fixture(scope="module")
def started(moved: Moved) -> Moved:
    """The imported guest, started with `dom0 start` as dom0 import says to (booting meanwhile); the moved fixture
    ends it."""
    lvmlab.start(moved.guest)
    return moved


def _stored_mac(uri: str, name: str) -> str:
    """The MAC the imported definition gives the guest's one NIC."""
    text = lvmlab.stored_definition(uri, name)
    if uri == "xl://":
        return text.split("mac=", 1)[1][:17]
    macs = [m.get("address", "") for m in ET.fromstring(text).iter("mac")]
    assert len(macs) == 1, text
    return macs[0]


def test_the_export_holds_the_definition_the_root_and_the_swap_identity(
    uri: str, moved: Moved, source: LvGuest
) -> None:
    definition = "definition.cfg" if uri == "xl://" else "definition.xml"
    assert sorted(p.name for p in moved.directory.iterdir()) == sorted([definition, "manifest.json", "xvda.raw.zst"])
    disks = {d["target"]: d for d in moved.export["disks"]}
    assert disks["xvda"]["file"] == "xvda.raw.zst"
    assert disks["xvda"]["size_bytes"] == ROOT_BYTES
    assert disks["xvda"]["stored_bytes"] < ROOT_BYTES // 4  # an ext4 mostly empty compresses to little
    # swap is not carried: only what makes it afresh for the guest's fstab
    assert disks["xvdb"]["file"] == ""
    assert (disks["xvdb"]["swap_uuid"], disks["xvdb"]["swap_label"]) == lvmlab.swap_signature(source.swap)


def test_the_imported_lvs_hold_the_exported_disk_and_nothing_older(
    started: Moved, source: LvGuest, vg: VolumeGroup
) -> None:
    tag = BACKENDS[source.uri]
    assert [started.guest.disk.name, started.guest.swap.name] == [
        f"dom0test-{tag}-lvmail2-xvda",
        f"dom0test-{tag}-lvmail2-xvdb",
    ]
    # byte for byte the source's root, on extents that held another guest's data before
    first, last = vg.extents(started.guest.disk.name)
    assert started.old_extents[0] <= first <= last <= started.old_extents[1]
    assert lvmlab.sha256(started.guest.disk, ROOT_BYTES) == started.source_sha
    assert lvmlab.swap_signature(started.guest.swap) == lvmlab.swap_signature(source.swap)
    config = lvmlab.xen_config(started.guest.name)
    assert [(d["vdev"], d["pdev_path"]) for d in config["disks"]] == [
        ("xvda", str(started.guest.disk)),
        ("xvdb", str(started.guest.swap)),
    ]


def test_the_original_is_left_as_it_was(uri: str, started: Moved, source: LvGuest) -> None:
    assert xl_state(source.name) is None  # export started nothing
    assert lvmlab.stored_definition(uri, source.name) == started.source_definition
    assert lvmlab.sha256(source.disk, ROOT_BYTES) == started.source_sha
    assert lvmlab.swap_signature(source.swap) == (started.export["disks"][1]["swap_uuid"], lvmlab.SWAP_LABEL)
    names = {line.split()[0] for line in xl("list").splitlines()[1:] if line.split()}
    assert started.guest.name in names


def test_the_imported_guest_boots_as_the_source_was_with_its_own_mac(started: Moved, source: LvGuest) -> None:
    hostname, ip, mac, machine_id = started.guest.identity()
    # a move, not a clone: inside it is what it was
    assert (hostname, ip, machine_id) == ("source-vm", "10.0.0.2/24", "0123456789abcdef0123456789abcdef")
    # but a second copy on this host gets its own MAC and UUID
    assert mac.startswith("00:16:3e:")
    assert mac != source.mac
    assert started.imported["uuid"] != started.export["uuid"]
    assert lvmlab.xen_config(started.guest.name)["c_info"]["uuid"] == started.imported["uuid"]
