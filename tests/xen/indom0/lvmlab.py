"""Storage and guests of the clone and export procedures, inside the lab's dom0: a volume group of the module's own
on a loop device, and PV guests whose root and swap are LVs in it, as Xen hosts have kept their guests since xen-tools.

The VG sits on a sparse file under WORK: made when a module starts, removed with everything in it when the module
ends (after the guests, whose fixtures depend on it). The guests boot the lab's busybox kernel and initramfs in
guestkit's `identity` mode: the root LV holds the ext4 image lab.stage_identity_root built on the host (a Debian 12
tree, hostname source-vm, 10.0.0.2/24 in /etc/network/interfaces), which the guest mounts read-only and reports on
hvc0 as `dom0test identity hostname=H ip=A mac=M machine-id=ID` (xenconsoled logs it). The swap LV carries a swap
signature with a label, which any copy must keep for the guest's fstab. Each guest is kept the way its backend keeps
guests: an xl.cfg in /etc/xen (where `dom0 start` and `dom0 clone` find it) or a persistent libvirt definition. A
source is started by the backend's own tool; what dom0 made (a clone, an import) with `dom0 start`, as dom0 says to.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from .guests import BOOT_TIMEOUT, BRIDGE, GUEST_INITRAMFS, GUEST_KERNEL, READY, WORK, LabGuest, _remove_domain, dom0

IDENTITY_ROOT = Path("/opt/dom0-identity/root.img")  # lab.IDENTITY_ROOT, staged by the host
ROOT_MIB = 32  # lab.IDENTITY_ROOT_MIB: the LV holds the image exactly
SWAP_MIB = 16
SWAP_LABEL = "dom0swap"
XL_CONFIG_DIR = Path("/etc/xen")
MiB = 1 << 20
IDENTITY = re.compile(r"dom0test identity hostname=(\S*) ip=(\S*) mac=(\S*) machine-id=(\S*)")


class Identity(NamedTuple):
    """What an `identity` guest printed at boot, from its own files and NIC."""

    hostname: str
    ip: str
    mac: str
    machine_id: str


def sh(*cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a host command; fail the test with its stderr when it fails and `check` is set."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def sha256(path: Path, size: int) -> str:
    """The SHA-256 of the first `size` bytes of a disk."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        left = size
        while left and (chunk := f.read(min(MiB, left))):
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def swap_signature(device: Path) -> tuple[str, str]:
    """UUID and label of the swap signature on `device`, as blkid reads them from the device itself."""
    out = sh("blkid", "-p", "-o", "export", str(device)).stdout
    fields = {key: value for key, _, value in (line.partition("=") for line in out.splitlines())}
    assert fields.get("TYPE") == "swap", out
    return fields.get("UUID", ""), fields.get("LABEL", "")


@dataclass(frozen=True)
class VolumeGroup:
    """A VG of the test's own on a loop device over a sparse file."""

    name: str
    loop: str
    backing: Path

    def lv(self, name: str) -> Path:
        return Path(f"/dev/{self.name}/{name}")

    def lvs(self) -> dict[str, dict[str, str]]:
        """Every LV in the VG, as lvs reports it: name -> {lv_attr, origin}."""
        out = sh("lvs", "--reportformat", "json", "-o", "lv_name,lv_attr,origin", self.name).stdout
        rows = json.loads(out)["report"][0]["lv"]
        return {row["lv_name"]: row for row in rows}

    def create_lv(self, name: str, size_mib: int) -> Path:
        sh("lvcreate", "-q", "--yes", "-L", f"{size_mib}m", "-n", name, self.name)
        return self.lv(name)

    def remove_lv(self, name: str) -> None:
        sh("lvremove", "-q", "--yes", f"{self.name}/{name}")

    def extents(self, name: str) -> tuple[int, int]:
        """The first and last physical extent of a one-segment LV on the VG's one PV."""
        out = sh("lvs", "--reportformat", "json", "-o", "seg_pe_ranges", f"{self.name}/{name}").stdout
        ranges = [row["seg_pe_ranges"] for row in json.loads(out)["report"][0]["lv"]]
        assert len(ranges) == 1, ranges
        first, _, last = ranges[0].rpartition(":")[2].partition("-")
        return int(first), int(last)

    def leave_old_data(self, size_mib: int) -> tuple[int, int]:
        """Leave another guest's bytes in the VG's next free extents, as an LV removed from a real host does (lvremove
        leaves the data where it was; the next lvcreate takes those extents first); which extents they fill."""
        name = "dom0test-old-guest"
        path = self.create_lv(name, size_mib)
        where = self.extents(name)
        with path.open("r+b") as f:
            for _ in range(size_mib):
                f.write(b"\xaa" * MiB)
            f.flush()
        self.remove_lv(name)
        return where


def _leftover_loops(backing: Path) -> list[str]:
    out = sh("losetup", "-j", str(backing), check=False).stdout
    return [line.partition(":")[0] for line in out.splitlines() if line.startswith("/dev/loop")]


@contextmanager
def volume_group(name: str, size_mib: int = 256) -> Iterator[VolumeGroup]:
    """A new VG `name` on a loop device over a sparse file of `size_mib`; removed with its PV, loop and file after.

    A VG of that name is this suite's own from an earlier run in this boot (dom0init runs failed tests again): it
    is removed first."""
    backing = WORK / f"{name}.img"
    if backing.exists():  # the VG lives on it: no file, no VG to remove
        if sh("vgs", name, check=False).returncode == 0:
            sh("vgremove", "-q", "-f", "-y", name)
        for loop in _leftover_loops(backing):
            sh("losetup", "-d", loop, check=False)
    WORK.mkdir(parents=True, exist_ok=True)
    backing.unlink(missing_ok=True)
    with backing.open("wb") as f:
        f.truncate(size_mib * MiB)
    loop = sh("losetup", "--find", "--show", str(backing)).stdout.strip()
    try:
        sh("pvcreate", "-q", "--yes", loop)
        sh("vgcreate", "-q", name, loop)
        yield VolumeGroup(name, loop, backing)
    finally:
        sh("vgremove", "-q", "-f", "-y", name, check=False)
        sh("pvremove", "-q", "-y", loop, check=False)
        sh("losetup", "-d", loop, check=False)
        backing.unlink(missing_ok=True)


@dataclass
class LvGuest(LabGuest):
    """A PV guest of this module: `disk` is its root LV, `swap` its swap LV."""

    swap: Path = Path()

    def identity(self, timeout: float = BOOT_TIMEOUT) -> Identity:
        """The identity line the guest printed at boot (waits for it)."""
        self.wait_for_console("dom0test identity ", timeout)
        m = IDENTITY.search(self.console_text())
        assert m, self.console_text()[-1500:]
        return Identity(*m.groups())

    def boots(self) -> int:
        """How many times the guest came up (a restart would print `dom0test ready` again)."""
        return self.console_text().count(READY)


def _cmdline() -> str:
    return "console=hvc0 loglevel=4 dom0test.mode=identity dom0test.data=xvda"


def xl_cfg(name: str, mac: str, root: Path, swap: Path) -> str:
    """The guest as an administrator's /etc/xen/NAME.cfg."""
    return "\n".join(
        [
            f'name = "{name}"',
            'type = "pv"',
            f'kernel = "{GUEST_KERNEL}"',
            f'ramdisk = "{GUEST_INITRAMFS}"',
            f'extra = "{_cmdline()}"',
            "memory = 128",
            "vcpus = 1",
            "disk = [",
            f'    "format=raw, vdev=xvda, access=rw, target={root}",',
            f'    "format=raw, vdev=xvdb, access=rw, target={swap}",',
            "]",
            f'vif = [ "mac={mac}, bridge={BRIDGE}" ]',
            'on_poweroff = "destroy"',
            'on_reboot = "restart"',
            'on_crash = "destroy"',
            "",
        ]
    )


def libvirt_xml(name: str, mac: str, root: Path, swap: Path) -> str:
    """The same guest as libvirt domain XML for the libxl driver, its disks block devices."""
    disks = "".join(
        f"""
    <disk type='block' device='disk'>
      <driver name='phy' type='raw'/>
      <source dev='{path}'/>
      <target dev='{target}' bus='xen'/>
    </disk>"""
        for path, target in ((root, "xvda"), (swap, "xvdb"))
    )
    return f"""<domain type='xen'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <currentMemory unit='MiB'>128</currentMemory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='xenpv'>linux</type>
    <kernel>{GUEST_KERNEL}</kernel>
    <initrd>{GUEST_INITRAMFS}</initrd>
    <cmdline>{_cmdline()}</cmdline>
  </os>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>{disks}
    <interface type='bridge'>
      <mac address='{mac}'/>
      <source bridge='{BRIDGE}'/>
    </interface>
    <console type='pty'>
      <target type='xen' port='0'/>
    </console>
  </devices>
</domain>
"""


def definition_path(uri: str, name: str) -> Path:
    """Where the test keeps a guest's definition: /etc/xen/NAME.cfg for xl, a file under WORK for libvirt."""
    return XL_CONFIG_DIR / f"{name}.cfg" if uri == "xl://" else WORK / f"{name}.xml"


def stored_definition(uri: str, name: str) -> str:
    """The guest's definition as its backend keeps it (what the next start reads)."""
    if uri == "xl://":
        return (XL_CONFIG_DIR / f"{name}.cfg").read_text()
    return sh("virsh", "-c", uri, "dumpxml", "--inactive", name).stdout


def xen_config(name: str) -> dict[str, Any]:
    """The running domain's configuration as Xen's toolstack holds it (`xl list -l NAME`): the same for guests
    xl and libvirt's libxl driver made."""
    entries = json.loads(sh("xl", "list", "-l", name).stdout)
    assert len(entries) == 1, entries
    config: dict[str, Any] = entries[0]["config"]
    return config


def forget(uri: str, name: str) -> None:
    """Destroy the guest if it runs and remove its definition."""
    _remove_domain(uri, name)
    if uri == "xl://":
        (XL_CONFIG_DIR / f"{name}.cfg").unlink(missing_ok=True)
    else:
        sh("virsh", "-c", uri, "undefine", name, check=False)
        (WORK / f"{name}.xml").unlink(missing_ok=True)


def guest(uri: str, name: str, mac: str, root: Path, swap: Path) -> LvGuest:
    """The LvGuest a name and its disks make (nothing is created)."""
    return LvGuest(name, "pv", uri, mac, root, definition_path(uri, name), swap)


def start(g: LvGuest) -> None:
    """`dom0 start` a defined guest, its console log read afresh."""
    g.console_log.unlink(missing_ok=True)
    dom0(g.uri, "start", g.name, timeout=180)


@contextmanager
def defined_guest(uri: str, vg: VolumeGroup, name: str, mac: str) -> Iterator[LvGuest]:
    """A guest with a root LV (the identity image) and a swap LV in `vg`, defined (not started); forgotten after
    (its LVs go with the VG)."""
    _remove_domain(uri, name)  # a leftover of an earlier run in this boot; define replaces its definition
    root = vg.create_lv(f"{name}-root", ROOT_MIB)
    with root.open("r+b") as f:
        f.write(IDENTITY_ROOT.read_bytes())
        f.flush()
    swap = vg.create_lv(f"{name}-swap", SWAP_MIB)
    sh("mkswap", "-L", SWAP_LABEL, str(swap))
    g = guest(uri, name, mac, root, swap)
    text = xl_cfg(name, mac, root, swap) if uri == "xl://" else libvirt_xml(name, mac, root, swap)
    WORK.mkdir(parents=True, exist_ok=True)
    g.definition_path.write_text(text)
    try:
        if uri != "xl://":
            sh("virsh", "-c", uri, "define", str(g.definition_path))
        yield g
    finally:
        forget(uri, name)


@contextmanager
def running_guest(uri: str, vg: VolumeGroup, name: str, mac: str) -> Iterator[LvGuest]:
    """defined_guest, started by the backend's own tool (the procedure under test starts its guests with dom0);
    booting meanwhile."""
    with defined_guest(uri, vg, name, mac) as g:
        g.console_log.unlink(missing_ok=True)
        if uri == "xl://":
            sh("xl", "create", "-q", str(g.definition_path), timeout=300)
        else:
            sh("virsh", "-c", uri, "start", name, timeout=300)
        yield g
