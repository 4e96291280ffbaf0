"""Cloning a running Xen PV guest whose root and swap are LVs, the procedure Xen administrators do by hand (lvcreate
-s, copy, lvremove the snapshot, mkswap with the old UUID and label, a new config with a new name, UUID, MACs and
disk paths, the IP changed inside), done by `dom0 clone` on real Xen, once per backend: the source is an xl.cfg in
/etc/xen on xl://, a persistent libvirt definition on xen:///system.

The source boots in guestkit's `identity` mode and keeps ticking; the clone must boot printing its NEW hostname,
IP and MAC, while the source runs on untouched and no snapshot is left in the VG (see lvmlab for both guests). The
tests that need no boot come first: under emulation a boot takes tens of seconds, which they use.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import lvmlab
from .guests import BACKENDS, dom0, xl, xl_state
from .lvmlab import LvGuest, VolumeGroup

SOURCE_MACS = {"xl": "00:16:3e:d0:01:01", "lv": "00:16:3e:d0:01:02"}
NEW_HOSTNAME = "clone-vm"
NEW_IP = "10.0.0.42/24"


@pytest.fixture(scope="module")
def vg(uri: str) -> Iterator[VolumeGroup]:
    with lvmlab.volume_group(f"dom0test-{BACKENDS[uri]}-clone") as made:
        yield made


@pytest.fixture(scope="module")
def source(uri: str, vg: VolumeGroup) -> Iterator[LvGuest]:
    """The running guest to clone (cloned while it boots: emulation makes every boot long)."""
    tag = BACKENDS[uri]
    with lvmlab.running_guest(uri, vg, f"dom0test-{tag}-lvweb", SOURCE_MACS[tag]) as g:
        yield g


@dataclass
class Cloned:
    """The clone `dom0 clone` made, and the source as it was just before."""

    out: dict[str, Any]  # dom0 clone --json
    guest: LvGuest
    lvs: dict[str, dict[str, str]]  # the VG's LVs right after the clone
    source_sha: str
    source_tick: int  # the source's last tick before the clone


@pytest.fixture(scope="module")
def cloned(uri: str, vg: VolumeGroup, source: LvGuest) -> Iterator[Cloned]:
    name = f"dom0test-{BACKENDS[uri]}-lvweb2"
    lvmlab.forget(uri, name)
    source_sha = lvmlab.sha256(source.disk, lvmlab.ROOT_MIB * lvmlab.MiB)
    tick = source.last_tick()
    try:
        args = ("clone", source.name, name, "--hostname", NEW_HOSTNAME, "--ip", NEW_IP, "--gateway", "10.0.0.1")
        out = json.loads(dom0(uri, *args, "--json", timeout=300).stdout)
        lvs = vg.lvs()
        disks = {d["target"]: Path(d["dest"]) for d in out["disks"]}
        clone = lvmlab.guest(uri, name, out["macs"][0], disks["xvda"], disks["xvdb"])
        yield Cloned(out, clone, lvs, source_sha, tick)
    finally:
        lvmlab.forget(uri, name)


@pytest.fixture(scope="module")
def started(cloned: Cloned) -> Cloned:
    """The clone, started with `dom0 start` as dom0 clone says to (booting meanwhile); the cloned fixture ends it."""
    lvmlab.start(cloned.guest)
    return cloned


def test_the_root_is_copied_from_a_snapshot_removed_after_and_the_swap_made_afresh(
    cloned: Cloned, source: LvGuest, vg: VolumeGroup
) -> None:
    methods = {d["target"]: d["method"] for d in cloned.out["disks"]}
    assert methods == {"xvda": "LV snapshot, copy, remove snapshot", "xvdb": "new swap (same size, UUID, label)"}
    # lvs shows the two guests' LVs and nothing else: no snapshot left behind, none of them a snapshot
    names = {source.disk.name, source.swap.name, cloned.guest.disk.name, cloned.guest.swap.name}
    assert set(cloned.lvs) == names, cloned.lvs
    assert [n for n, row in cloned.lvs.items() if row["lv_attr"].startswith(("s", "S")) or row["origin"]] == []
    new = f"dom0test-{BACKENDS[source.uri]}-lvweb2"
    assert (cloned.guest.disk, cloned.guest.swap) == (vg.lv(f"{new}-root"), vg.lv(f"{new}-swap"))
    # the guest's fstab names its swap by UUID or label: both stay
    assert lvmlab.swap_signature(cloned.guest.swap) == lvmlab.swap_signature(source.swap)
    assert lvmlab.swap_signature(source.swap)[1] == lvmlab.SWAP_LABEL


def test_the_new_definition_has_a_new_name_uuid_mac_and_the_new_lvs(uri: str, started: Cloned, source: LvGuest) -> None:
    new_uuid = started.out["uuid"]
    mac = started.out["macs"][0]
    root, swap = str(started.guest.disk), str(started.guest.swap)
    # as the backend keeps it, for the next start
    text = lvmlab.stored_definition(uri, started.guest.name)
    if uri == "xl://":
        assert f'name = "{started.guest.name}"' in text
        assert f'uuid = "{new_uuid}"' in text
        assert f"mac={mac}" in text
        assert f"target={root}" in text
        assert f"target={swap}" in text
    else:
        dom = ET.fromstring(text)
        assert dom.findtext("name") == started.guest.name
        assert dom.findtext("uuid") == new_uuid
        assert [m.get("address") for m in dom.iter("mac")] == [mac]
        assert [s.get("dev") for s in dom.findall("devices/disk/source")] == [root, swap]
    assert str(source.disk) not in text
    assert str(source.swap) not in text
    assert source.mac not in text
    # as Xen runs it now
    config = lvmlab.xen_config(started.guest.name)
    source_config = lvmlab.xen_config(source.name)
    assert config["c_info"]["name"] == started.guest.name
    assert config["c_info"]["uuid"] == new_uuid != source_config["c_info"]["uuid"]
    assert [n["mac"] for n in config["nics"]] == [mac]
    assert [(d["vdev"], d["pdev_path"]) for d in config["disks"]] == [("xvda", root), ("xvdb", swap)]


def test_xl_list_and_dom0_list_show_both_guests(uri: str, started: Cloned, source: LvGuest) -> None:
    names = {line.split()[0] for line in xl("list").splitlines()[1:] if line.split()}
    assert {source.name, started.guest.name} <= names
    rows = {line.split()[0]: line.split() for line in dom0(uri, "list").stdout.splitlines() if line.split()}
    for g in (source, started.guest):
        assert rows[g.name][4] in ("r-----", "-b----"), rows


def test_the_clone_boots_with_its_new_hostname_ip_and_mac(started: Cloned, source: LvGuest) -> None:
    hostname, ip, mac, machine_id = started.guest.identity()
    assert (hostname, ip) == (NEW_HOSTNAME, NEW_IP)
    assert mac == started.out["macs"][0]
    assert mac.startswith("00:16:3e:")
    assert mac != source.mac
    assert machine_id == "uninitialized"  # systemd makes a new one at first boot


def test_the_source_keeps_running_untouched(cloned: Cloned, source: LvGuest) -> None:
    source.wait_for_tick_after(cloned.source_tick)  # its clock-driven loop went on through the clone
    assert source.boots() == 1  # never restarted
    assert source.identity() == ("source-vm", "10.0.0.2/24", source.mac, "0123456789abcdef0123456789abcdef")
    assert lvmlab.sha256(source.disk, lvmlab.ROOT_MIB * lvmlab.MiB) == cloned.source_sha
    assert xl_state(source.name) is not None
