"""The clone's libvirt XML: new identity and disks, its own per-guest files, nothing of the source's run left."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET

import pytest
from unitkit import DATA

from dom0.clone.definition import CloneChange, DiskRewrite, clone_xml, per_guest_path
from dom0.clone.macs import KVM_PREFIX, XEN_PREFIX, new_macs
from dom0.errors import Dom0Error, UsageError

SOURCE = """<domain type='kvm' id='7'>
  <name>web</name>
  <uuid>11111111-2222-4333-8444-555555555555</uuid>
  <title>the web server</title>
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>1048576</currentMemory>
  <vcpu placement='static' current='1'>2</vcpu>
  <os><type arch='x86_64'>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>
    <nvram>/var/lib/libvirt/qemu/nvram/web_VARS.fd</nvram></os>
  <devices>
    <disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/vg0/web-disk'/>
      <target dev='vda' bus='virtio'/><alias name='virtio-disk0'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/srv/web-data.qcow2' index='2'/>
      <backingStore type='file'><format type='raw'/><source file='/srv/base.raw'/></backingStore>
      <target dev='vdb' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><source file='/srv/iso/debian.iso'/><target dev='sda' bus='sata'/>
      <readonly/></disk>
    <interface type='bridge'><mac address='52:54:00:aa:bb:01'/><source bridge='br0'/><target dev='vnet3'/>
      <model type='virtio'/></interface>
    <interface type='network'><source network='default'/><model type='virtio'/></interface>
    <serial type='pty'><source path='/dev/pts/4'/><log file='/var/log/libvirt/qemu/web-serial.log'/>
      <target port='0'/></serial>
    <console type='pty' tty='/dev/pts/4'><source path='/dev/pts/4'/><target type='serial' port='0'/></console>
    <channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/target/web.org.qemu.guest_agent.0'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <graphics type='vnc' port='5901' autoport='no' listen='127.0.0.1'/>
  </devices>
</domain>
"""

CHANGE = CloneChange(
    name="web2",
    uuid="99999999-8888-4777-8666-555555555555",
    macs=("52:54:00:12:34:56", "52:54:00:12:34:57"),
    disks={
        "vda": DiskRewrite("/dev/vg0/web2-disk", block=True),
        "vdb": DiskRewrite("/srv/web2-data.qcow2", False, "qcow2"),
    },
    memory_mib=512,
    vcpus=1,
)


def _clone() -> tuple[ET.Element, dict[str, str], tuple[str, str] | None]:
    out = clone_xml(SOURCE, CHANGE)
    return ET.fromstring(out.text), out.files, out.nvram


def test_identity_memory_and_cpus_are_the_clones() -> None:
    root, _, _ = _clone()
    assert root.findtext("name") == "web2"
    assert root.findtext("uuid") == CHANGE.uuid
    assert root.find("title") is None
    assert root.find("memory").text == str(512 * 1024)  # type: ignore[union-attr]
    assert root.find("vcpu").text == "1"  # type: ignore[union-attr]


def test_disks_point_at_the_copies_and_shared_ones_stay() -> None:
    root, _, _ = _clone()
    disks = {d.find("target").get("dev"): d for d in root.iter("disk")}  # type: ignore[union-attr]
    assert disks["vda"].get("type") == "block"
    assert disks["vda"].find("source").attrib == {"dev": "/dev/vg0/web2-disk"}  # type: ignore[union-attr]
    assert disks["vdb"].find("source").attrib == {"file": "/srv/web2-data.qcow2"}  # type: ignore[union-attr]
    assert disks["vdb"].find("backingStore") is None  # libvirt reads the copy's own chain
    assert disks["sda"].find("source").get("file") == "/srv/iso/debian.iso"  # type: ignore[union-attr]


def test_macs_are_new_and_run_time_names_are_gone() -> None:
    root, _, _ = _clone()
    assert [m.get("address") for m in root.iter("mac")] == list(CHANGE.macs)
    assert all(i.find("target") is None for i in root.iter("interface"))
    assert not list(root.iter("alias"))
    graphics = root.find("devices/graphics")
    assert graphics is not None
    assert graphics.get("autoport") == "yes"
    assert graphics.get("port") is None


def test_per_guest_files_get_the_clones_own_paths() -> None:
    root, files, nvram = _clone()
    assert files == {
        "/var/log/libvirt/qemu/web-serial.log": "/var/log/libvirt/qemu/web2-serial.log",
        "/var/lib/libvirt/qemu/channel/target/web.org.qemu.guest_agent.0": (
            "/var/lib/libvirt/qemu/channel/target/web2.org.qemu.guest_agent.0"
        ),
    }
    assert nvram == ("/var/lib/libvirt/qemu/nvram/web_VARS.fd", "/var/lib/libvirt/qemu/nvram/web2_VARS.fd")
    assert root.findtext("os/nvram") == "/var/lib/libvirt/qemu/nvram/web2_VARS.fd"
    assert "/dev/pts/4" not in ET.tostring(root, encoding="unicode")  # the source's pty of the moment


def test_a_path_without_the_name_gets_it_in_front_in_the_same_directory() -> None:
    assert per_guest_path("/var/tmp/guests/web/console.log", "web", "web2") == "/var/tmp/guests/web/web2-console.log"
    assert per_guest_path("/srv/web.img", "web", "db") == "/srv/db.img"


def test_one_mac_per_interface_or_a_clear_error() -> None:
    with pytest.raises(Dom0Error, match="2 network interfaces but 1 MACs"):
        clone_xml(SOURCE, CloneChange("x", CHANGE.uuid, ("52:54:00:00:00:01",), {}))


def test_new_macs_use_the_hypervisors_prefix_and_avoid_taken_ones() -> None:
    rng = random.Random(4)
    macs = new_macs(["auto", "52:54:00:AA:BB:CC"], 3, ["52:54:00:00:00:01"], KVM_PREFIX, rng)
    assert macs[1] == "52:54:00:aa:bb:cc"
    assert macs[0].startswith(KVM_PREFIX)
    assert len(set(macs)) == 3
    assert new_macs([], 1, [], XEN_PREFIX, rng)[0].startswith("00:16:3e:")
    with pytest.raises(UsageError, match="already used"):
        new_macs(["52:54:00:00:00:01"], 1, ["52:54:00:00:00:01"], KVM_PREFIX, rng)
    with pytest.raises(UsageError, match="multicast"):
        new_macs(["01:00:5e:00:00:01"], 1, [], KVM_PREFIX, rng)
    with pytest.raises(UsageError, match="2 --mac given"):
        new_macs(["auto", "auto"], 1, [], KVM_PREFIX, rng)


def test_an_xl_cfg_clone_changes_only_what_differs() -> None:

    from dom0.clone.definition import clone_definition

    text = (DATA / "xen/cfg/build-pvh.cfg").read_text()
    change = CloneChange(
        name="build2",
        uuid="99999999-8888-4777-8666-555555555555",
        macs=("00:16:3e:12:34:56",),
        disks={"xvda": DiskRewrite("/dev/vg0/build2-root", block=True)},
    )
    out = clone_definition(text, change).text
    assert 'name = "build2"' in out
    assert "99999999-8888-4777-8666-555555555555" in out
    assert "/dev/vg0/build2-root" in out
    assert "/dev/vg0/build-root" not in out
    assert "build-cache.qcow2" in out  # not rewritten: shared as it is
    assert "00:16:3e:12:34:56" in out
    assert "00:16:3e:7b:00:01" not in out
    assert "# PVH build runner" in out  # comments stay
    assert 'tsc_mode = "native"' in out  # settings dom0 does not model stay too


def test_a_writable_pool_volume_is_refused_not_shared() -> None:
    from dom0.clone.plan import CloneOptions, _disk_step
    from dom0.model import Disk, DiskSource, Guest, GuestState

    source = Guest("web", "11111111-2222-4333-8444-555555555555", 1, GuestState.RUNNING, 1024, 1024, 1, 0)
    volume = Disk("vda", DiskSource.VOLUME, "default/web.qcow2", format="qcow2")
    with pytest.raises(Dom0Error, match="volume disk"):
        _disk_step(volume, source, CloneOptions("web2"), live=True)
    cdrom = Disk("sda", DiskSource.FILE, "/srv/iso/debian.iso", device="cdrom", readonly=True)
    assert _disk_step(cdrom, source, CloneOptions("web2"), live=True).dest == "/srv/iso/debian.iso"  # shared
