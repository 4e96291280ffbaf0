"""Write a libvirt test-driver node XML with N guests of varied states, sizes, disks, NICs and boot methods.

libvirt's test:// driver reads such a file in-process (`dom0 -c test:///abs/path/node.xml list`), so tests and
benchmarks see a host with many guests without a daemon. Each guest's run state is set with the driver's
<test:runstate> element (a virDomainState number); active guests get IDs 1, 2, ... in file order.

Usage: python tests/data/nodegen.py N FILE
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"

# virDomainState numbers, the names dom0 shows for them, and whether the guest then has an ID.
RUNSTATES: dict[str, tuple[int, bool]] = {
    "running": (1, True),
    "blocked": (2, True),
    "paused": (3, True),
    "shutdown": (4, True),
    "shutoff": (5, False),
    "crashed": (6, True),
    "pmsuspended": (7, True),
}

# Weighted so a big node looks like a real one: mostly quiet (blocked) or running guests.
_STATE_CYCLE = (
    "blocked",
    "running",
    "blocked",
    "shutoff",
    "paused",
    "running",
    "crashed",
    "blocked",
    "shutdown",
    "shutoff",
    "pmsuspended",
    "blocked",
)
_ROLES = ("web", "db", "mail", "dns", "build", "cache")


@dataclass(frozen=True, slots=True)
class DiskSpec:
    """One disk: libvirt's disk type ('file', 'block', 'volume'), where it lives, the guest's device name, and
    the image format its <driver> element names (raw, qcow2)."""

    kind: str
    source: str
    target: str
    bus: str
    format: str = "raw"


@dataclass(frozen=True, slots=True)
class NicSpec:
    """One NIC: 'bridge' or 'network', the bridge or network name, its MAC."""

    kind: str
    source: str
    mac: str


@dataclass(frozen=True, slots=True)
class GuestSpec:
    """The facts of one generated guest, which tests compare dom0's output with."""

    name: str
    uuid: str
    state: str
    max_memory_kib: int
    memory_kib: int
    vcpus: int
    boot: str  # 'kernel', 'bootloader' or 'firmware'
    disks: tuple[DiskSpec, ...]
    nics: tuple[NicSpec, ...]
    transient: bool = False

    @property
    def active(self) -> bool:
        """Whether the guest runs (and so has an ID)."""
        return RUNSTATES[self.state][1]


def guest_specs(n: int) -> list[GuestSpec]:
    """N deterministic guests; every state appears once N >= 12."""
    specs = []
    for i in range(n):
        state = _STATE_CYCLE[i % len(_STATE_CYCLE)]
        max_mib = (256, 512, 1024, 2048, 4096)[i % 5]
        # Some guests are ballooned down, as Xen guests often are.
        cur_mib = max_mib // 2 if i % 3 == 0 else max_mib
        boot = ("kernel", "bootloader", "firmware")[i % 3]
        prefix, bus = ("xvd", "xen") if boot != "firmware" else ("hd", "ide")
        disks = [DiskSpec("file", f"/var/lib/xen/images/g{i:03d}-root.img", f"{prefix}a", bus)]
        if i % 4 == 1:
            disks.append(DiskSpec("block", f"/dev/vg0/g{i:03d}-swap", f"{prefix}b", bus))
        if i % 4 == 2:
            disks.append(DiskSpec("volume", f"g{i:03d}-data", f"{prefix}c" if prefix == "hd" else "xvdq", bus))
        nics = [NicSpec("bridge", "xenbr0", f"00:16:3e:00:{i // 256:02x}:{i % 256:02x}")]
        if i % 5 == 4:
            nics.append(NicSpec("network", "default", f"52:54:00:00:{i // 256:02x}:{i % 256:02x}"))
        specs.append(
            GuestSpec(
                name=f"{_ROLES[i % len(_ROLES)]}{i:03d}",
                uuid=f"d0d0d0d0-0000-4000-8000-{i:012x}",
                state=state,
                max_memory_kib=max_mib * 1024,
                memory_kib=cur_mib * 1024,
                vcpus=1 + i % 4,
                boot=boot,
                disks=tuple(disks),
                nics=tuple(nics),
                # A transient guest cannot be shut off (it would not exist), so only active ones are.
                transient=i % 7 == 5 and RUNSTATES[state][1],
            )
        )
    return specs


def _boot_xml(g: GuestSpec) -> str:
    if g.boot == "kernel":
        return (
            "<os><type>xen</type><kernel>/boot/vmlinuz-6.1.0-xen</kernel>"
            "<initrd>/boot/initrd.img-6.1.0-xen</initrd><cmdline>root=/dev/xvda ro console=hvc0</cmdline></os>"
        )
    if g.boot == "bootloader":
        return "<bootloader>/usr/bin/pygrub</bootloader><os><type>xen</type></os>"
    return "<os><type>hvm</type><boot dev='hd'/><boot dev='network'/></os>"


def _disk_xml(d: DiskSpec) -> str:
    if d.kind == "file":
        source = f"<source file={quoteattr(d.source)}/>"
    elif d.kind == "block":
        source = f"<source dev={quoteattr(d.source)}/>"
    else:
        source = f"<source pool='guests' volume={quoteattr(d.source)}/>"
    return (
        f"<disk type='{d.kind}' device='disk'><driver name='qemu' type='{d.format}'/>{source}"
        f"<target dev='{d.target}' bus='{d.bus}'/></disk>"
    )


def _nic_xml(n: NicSpec) -> str:
    attr = "bridge" if n.kind == "bridge" else "network"
    return f"<interface type='{n.kind}'><mac address='{n.mac}'/><source {attr}={quoteattr(n.source)}/></interface>"


def domain_xml(g: GuestSpec) -> str:
    """One <domain> element for the test driver's node file."""
    devices = "".join(_disk_xml(d) for d in g.disks) + "".join(_nic_xml(n) for n in g.nics)
    devices += f"<serial type='pty'><log file='/var/log/xen/console/{g.name}.log'/></serial>"
    extra = "<test:transient/>" if g.transient else ""
    return (
        f"  <domain type='test' xmlns:test='{TEST_NS}'>\n"
        f"    <name>{g.name}</name><uuid>{g.uuid}</uuid>\n"
        f"    <memory unit='KiB'>{g.max_memory_kib}</memory>"
        f"<currentMemory unit='KiB'>{g.memory_kib}</currentMemory><vcpu>{g.vcpus}</vcpu>\n"
        f"    {_boot_xml(g)}\n"
        "    <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>preserve</on_crash>\n"
        f"    <devices>{devices}</devices>\n"
        f"    <test:runstate>{RUNSTATES[g.state][0]}</test:runstate>{extra}\n"
        "  </domain>\n"
    )


def node_xml(specs: list[GuestSpec]) -> str:
    """The whole node file: a 16-CPU, 64 GiB host carrying `specs`."""
    cpu = (
        "<cpu><mhz>2400</mhz><model>x86_64</model><active>16</active><nodes>1</nodes>"
        "<sockets>1</sockets><cores>8</cores><threads>2</threads></cpu>"
    )
    body = "".join(domain_xml(g) for g in specs)
    return f"<node>\n  {cpu}\n  <memory>67108864</memory>\n{body}</node>\n"


def write_node(path: Path, n: int) -> list[GuestSpec]:
    """Write a node file with `n` guests to `path` and return their facts."""
    specs = guest_specs(n)
    path.write_text(node_xml(specs))
    return specs


if __name__ == "__main__":
    if len(sys.argv) != 3 or not sys.argv[1].isdigit():
        sys.exit(f"usage: {sys.argv[0]} N FILE")
    write_node(Path(sys.argv[2]), int(sys.argv[1]))
