"""Reading libvirt domain XML: the disks, NICs, boot method and console log `list --long` reports."""

from __future__ import annotations

from dom0.hypervisor.libvirt import domxml
from dom0.model import BootKind, DiskSource

PV_GUEST = """\
<domain type='xen' id='3'>
  <name>web1</name>
  <memory unit='KiB'>1048576</memory>
  <os>
    <type arch='x86_64' machine='xenpv'>linux</type>
    <kernel>/boot/vmlinuz-6.1</kernel>
    <initrd>/boot/initrd-6.1</initrd>
    <cmdline>root=/dev/xvda1 ro</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>preserve</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/xen/images/web1.qcow2'/>
      <target dev='xvda' bus='xen'/>
    </disk>
    <disk type='block' device='disk'>
      <source dev='/dev/vg0/web1-swap'/>
      <target dev='xvdb' bus='xen'/>
    </disk>
    <disk type='volume' device='disk'>
      <source pool='guests' volume='web1-data'/>
      <target dev='xvdc' bus='xen'/>
      <readonly/>
    </disk>
    <disk type='file' device='cdrom'>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <interface type='bridge'>
      <mac address='00:16:3e:12:34:56'/>
      <source bridge='xenbr0'/>
      <target dev='vif3.0'/>
    </interface>
    <interface type='network'>
      <mac address='52:54:00:ab:cd:ef'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'>
      <log file='/var/log/libvirt/qemu/web1-console.log' append='on'/>
      <target port='0'/>
    </serial>
  </devices>
</domain>
"""


def test_pv_guest() -> None:
    d = domxml.parse(PV_GUEST)
    assert (d.hypervisor_type, d.os_type) == ("xen", "linux")
    assert (d.on_poweroff, d.on_reboot, d.on_crash) == ("destroy", "restart", "preserve")
    assert d.boot.kind == BootKind.KERNEL
    assert (d.boot.kernel, d.boot.initrd, d.boot.cmdline) == (
        "/boot/vmlinuz-6.1",
        "/boot/initrd-6.1",
        "root=/dev/xvda1 ro",
    )
    assert d.console_log == "/var/log/libvirt/qemu/web1-console.log"
    assert domxml.name_of(PV_GUEST) == "web1"


def test_disks_file_block_volume_and_empty_cdrom() -> None:
    disks = domxml.parse(PV_GUEST).disks
    assert [(x.target, x.source_kind, x.source) for x in disks] == [
        ("xvda", DiskSource.FILE, "/var/lib/xen/images/web1.qcow2"),
        ("xvdb", DiskSource.BLOCK, "/dev/vg0/web1-swap"),
        ("xvdc", DiskSource.VOLUME, "guests/web1-data"),
        ("hdc", DiskSource.NONE, ""),
    ]
    assert disks[0].format == "qcow2"
    assert disks[0].bus == "xen"
    assert [x.readonly for x in disks] == [False, False, True, True]
    assert disks[3].device == "cdrom"


def test_nics_bridge_and_network() -> None:
    nics = domxml.parse(PV_GUEST).nics
    assert [(n.mac, n.kind, n.source, n.model, n.target) for n in nics] == [
        ("00:16:3e:12:34:56", "bridge", "xenbr0", "", "vif3.0"),
        ("52:54:00:ab:cd:ef", "network", "default", "virtio", ""),
    ]


def test_bootloader_guest() -> None:
    xml = """<domain type='xen'><name>db</name><bootloader>/usr/bin/pygrub</bootloader>
      <bootloader_args>--entry=1</bootloader_args><os><type>linux</type></os><devices/></domain>"""
    boot = domxml.parse(xml).boot
    assert (boot.kind, boot.bootloader, boot.cmdline) == (BootKind.BOOTLOADER, "/usr/bin/pygrub", "--entry=1")


def test_firmware_guest_with_file_console() -> None:
    xml = """<domain type='kvm'><name>win</name><os><type>hvm</type><boot dev='cdrom'/><boot dev='hd'/></os>
      <devices><console type='file'><source path='/var/log/win-console.log'/></console></devices></domain>"""
    d = domxml.parse(xml)
    assert (d.boot.kind, d.boot.devices) == (BootKind.FIRMWARE, ("cdrom", "hd"))
    assert d.console_log == "/var/log/win-console.log"
    assert (d.disks, d.nics) == ((), ())


def test_minimal_domain_has_no_console_log_and_no_name() -> None:
    d = domxml.parse("<domain type='test'><os><type>hvm</type></os></domain>")
    assert d.console_log == ""
    assert d.boot.kind == BootKind.FIRMWARE
    assert d.boot.devices == ()
    assert domxml.name_of("<domain/>") == ""
