"""Guests of the Xen suite (which runs INSIDE the lab's dom0, see tests/xen/lab.py) and the commands it runs.

Guests boot the lab's busybox initramfs, which prints `dom0test ready` and then `tick N` every 5 s on hvc0;
xenconsoled logs that under /var/log/xen/console. Each has a raw file disk (xvda, phy backend: Xen's block
script puts it on a loop device) and one NIC on the bridge xenbr0. The same guest is written as an xl.cfg file
for `xl://` and as libvirt XML for `xen:///system`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

GUEST_KERNEL = Path("/opt/dom0-guest/vmlinux")  # uncompressed: see lab.uncompressed_kernel
GUEST_INITRAMFS = Path("/opt/dom0-guest/initramfs.cpio.gz")
CONSOLE_DIR = Path("/var/log/xen/console")
WORK = Path("/var/lib/dom0test")
READY = "dom0test ready"
POWEROFF = "dom0test: powering off"
BRIDGE = "xenbr0"
XVDA_VBD = 51712  # (202 << 8) | (0 << 4): the first xvd disk
# URI -> the tag in guest names; $XENLAB_URIS (comma list) limits a run to some of them
BACKENDS = {
    uri: tag
    for uri, tag in {"xl://": "xl", "xen:///system": "lv"}.items()
    if uri in os.environ.get("XENLAB_URIS", uri).split(",")
}
BOOT_TIMEOUT = 150.0


@dataclass
class LabGuest:
    """A guest a fixture made: name (dom0test-...), kind (pv or pvh), backend URI, MAC, disk and definition."""

    name: str
    kind: str
    uri: str
    mac: str
    disk: Path
    definition_path: Path

    @property
    def console_log(self) -> Path:
        """Where xenconsoled logs its console (--log=guest)."""
        return CONSOLE_DIR / f"guest-{self.name}.log"

    def console_text(self) -> str:
        """The console log so far ('' before the guest wrote anything)."""
        try:
            return self.console_log.read_text(errors="replace")
        except OSError:
            return ""

    def last_tick(self) -> int:
        """The number of the last `tick N` line on the console, 0 before the first."""
        ticks = re.findall(r"^tick (\d+)", self.console_text(), re.MULTILINE)
        return int(ticks[-1]) if ticks else 0

    def wait_for_console(self, text: str, timeout: float = BOOT_TIMEOUT) -> None:
        """Wait until the console log contains `text`; fail with the log's tail otherwise."""
        deadline = time.monotonic() + timeout
        while text not in self.console_text():
            if time.monotonic() > deadline:
                tail = "\n".join(self.console_text().splitlines()[-30:])
                pytest.fail(f"{self.name}: no {text!r} on its console within {timeout:g} s; console:\n{tail}")
            time.sleep(1)

    def wait_for_tick_after(self, tick: int, timeout: float = 60) -> int:
        """Wait for a `tick N` with N > tick (the guest's clock-driven loop is running); returns N."""
        deadline = time.monotonic() + timeout
        while (now := self.last_tick()) <= tick:
            if time.monotonic() > deadline:
                tail = "\n".join(self.console_text().splitlines()[-20:])
                pytest.fail(f"{self.name}: no tick after {tick} within {timeout:g} s; console:\n{tail}")
            time.sleep(1)
        return now


def dom0(uri: str, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real `dom0 -c URI ARGS...` (python3 -m dom0), stdin not a terminal."""
    proc = subprocess.run(
        [sys.executable, "-m", "dom0", "-c", uri, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    if check and proc.returncode != 0:
        pytest.fail(f"dom0 -c {uri} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def xl(*args: str, check: bool = True, timeout: float = 120) -> str:
    """Xen's own `xl`: the harness's independent view of the host (both backends' guests are Xen domains)."""
    proc = subprocess.run(["xl", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"xl {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc.stdout


def xl_state(name: str) -> str | None:
    """The six-letter state `xl list` shows for a domain, None when there is no such domain."""
    out = subprocess.run(["xl", "list", name], capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        if "invalid domain identifier" in out.stderr:
            return None
        pytest.fail(f"xl list {name} exited {out.returncode}: {out.stderr}")
    for line in out.stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == name:
            return fields[4]
    return None


def wait_until_gone(name: str, timeout: float) -> bool:
    """Wait until Xen has no domain of that name; whether it went within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while xl_state(name) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def _cmdline(g: LabGuest) -> str:
    # the PV guest keeps reading and writing its disk, so disk statistics are real numbers
    mode = "diskping" if g.kind == "pv" else "idle"
    return f"console=hvc0 loglevel=4 dom0test.mode={mode} dom0test.data=xvda"


def xl_cfg(g: LabGuest) -> str:
    """The guest as an xl.cfg file."""
    lines = [
        f'name = "{g.name}"',
        f'type = "{g.kind}"',
        f'kernel = "{GUEST_KERNEL}"',
        f'ramdisk = "{GUEST_INITRAMFS}"',
        f'extra = "{_cmdline(g)}"',
        "memory = 128",
        "vcpus = 1",
        f'disk = [ "format=raw, vdev=xvda, access=rw, backendtype=phy, target={g.disk}" ]',
        f'vif = [ "mac={g.mac}, bridge={BRIDGE}" ]',
        'on_poweroff = "destroy"',
        'on_reboot = "restart"',
        'on_crash = "destroy"',
    ]
    if g.kind == "pvh":
        # Under QEMU's emulation a PVH guest dies on RDTSCP unless the TSC is native.
        lines.append('tsc_mode = "native"')
    return "\n".join(lines) + "\n"


def libvirt_xml(g: LabGuest) -> str:
    """The same guest as libvirt domain XML for the libxl driver."""
    os_type = "<type arch='x86_64' machine='xenpv'>linux</type>"
    clock = "<clock offset='utc'/>"
    if g.kind == "pvh":
        os_type = "<type arch='x86_64' machine='xenpvh'>xenpvh</type>"
        clock = "<clock offset='utc'><timer name='tsc' mode='native'/></clock>"
    return f"""<domain type='xen'>
  <name>{g.name}</name>
  <memory unit='MiB'>128</memory>
  <currentMemory unit='MiB'>128</currentMemory>
  <vcpu>1</vcpu>
  <os>
    {os_type}
    <kernel>{GUEST_KERNEL}</kernel>
    <initrd>{GUEST_INITRAMFS}</initrd>
    <cmdline>{_cmdline(g)}</cmdline>
  </os>
  {clock}
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='phy' type='raw'/>
      <source file='{g.disk}'/>
      <target dev='xvda' bus='xen'/>
    </disk>
    <interface type='bridge'>
      <mac address='{g.mac}'/>
      <source bridge='{BRIDGE}'/>
    </interface>
    <console type='pty'>
      <target type='xen' port='0'/>
    </console>
  </devices>
</domain>
"""


def _remove_domain(uri: str, name: str) -> None:
    """Destroy a leftover guest the way its backend knows it (libvirt must see its own guests go)."""
    if xl_state(name) is None:
        return
    if uri.startswith("xen:"):
        subprocess.run(["virsh", "-c", uri, "destroy", name], capture_output=True, timeout=120, check=False)
    if xl_state(name) is not None:
        subprocess.run(["xl", "destroy", name], capture_output=True, timeout=120, check=False)


def make_guest(uri: str, kind: str) -> LabGuest:
    """Write the guest's disk and definition and create it through `dom0 create` (it boots in the background)."""
    tag = BACKENDS[uri]
    name = f"dom0test-{tag}-{kind}"
    index = (2 if tag == "lv" else 0) + (1 if kind == "pvh" else 0)
    WORK.mkdir(parents=True, exist_ok=True)
    disk = WORK / f"{name}.img"
    with disk.open("wb") as f:
        f.truncate(64 << 20)
    definition = WORK / (f"{name}.cfg" if tag == "xl" else f"{name}.xml")
    g = LabGuest(name, kind, uri, f"00:16:3e:d0:00:{index + 1:02x}", disk, definition)
    _remove_domain(uri, name)
    g.console_log.unlink(missing_ok=True)
    definition.write_text(xl_cfg(g) if tag == "xl" else libvirt_xml(g))
    dom0(uri, "create", str(definition), timeout=180)
    return g


def cleanup(g: LabGuest) -> None:
    """Destroy the guest if it still runs and delete its files."""
    _remove_domain(g.uri, g.name)
    for p in (g.disk, g.definition_path, WORK / f"{g.name}.save"):
        p.unlink(missing_ok=True)
