"""A libvirt test-driver node whose guests' disks are real images of different distributions (for the survey's
unit tests): `dom0 -c test:///ABS/node.xml image inspect --all` reads them as it would a host's guests."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import ostrees
from nodegen import RUNSTATES, TEST_NS


@dataclass(frozen=True, slots=True)
class NodeGuest:
    """A guest of the node: its disk (any path, even a missing one), state, and the host kernel it boots directly."""

    name: str
    disk: str
    state: str = "shutoff"
    kernel: str = ""
    os_type: str = "hvm"
    uuid: str = ""


def domain(g: NodeGuest, index: int) -> str:
    """One <domain> for the test driver."""
    uuid = g.uuid or f"5e1f0000-0000-4000-8000-{index:012x}"
    boot = f"<kernel>{g.kernel}</kernel>" if g.kernel else "<boot dev='hd'/>"
    return (
        f"  <domain type='test' xmlns:test='{TEST_NS}'>\n"
        f"    <name>{g.name}</name><uuid>{uuid}</uuid>\n"
        "    <memory unit='KiB'>262144</memory><vcpu>1</vcpu>\n"
        f"    <os><type>{g.os_type}</type>{boot}</os>\n"
        f"    <devices><disk type='file' device='disk'><driver name='qemu' type='raw'/>"
        f"<source file={quoteattr(g.disk)}/><target dev='vda' bus='virtio'/></disk></devices>\n"
        f"    <test:runstate>{RUNSTATES[g.state][0]}</test:runstate>\n"
        "  </domain>\n"
    )


def write_node(path: Path, guests: list[NodeGuest]) -> str:
    """Write the node file; returns the -c URI for it."""
    body = "".join(domain(g, i) for i, g in enumerate(guests))
    cpu = "<cpu><mhz>2400</mhz><model>x86_64</model><active>4</active></cpu>"
    path.write_text(f"<node>\n  {cpu}\n  <memory>8388608</memory>\n{body}</node>\n")
    return f"test://{path.resolve()}"


def os_image(tmp: Path, make: Callable[[], ostrees.OSTree], name: str = "") -> Path:
    """An ext4 whole-disk image holding one of ostrees' distribution trees."""
    tree = make()
    label = name or tree.name
    root = tree.build(tmp / f"{label}-tree")
    return ostrees.mkfs_ext4(root, tmp / f"{label}.img", size_mb=16)


def garbage(tmp: Path) -> Path:
    """Random bytes where a disk should be."""
    path = tmp / "garbage.img"
    path.write_bytes(os.urandom(1 << 20))
    return path


def bzimage(path: Path, version: str) -> Path:
    """A file with an x86 boot header whose version string says `version` (as a host's direct-boot kernel)."""
    head = bytearray(0x4000)
    head[0x202:0x206] = b"HdrS"
    head[0x206:0x208] = (0x020F).to_bytes(2, "little")
    head[0x20E:0x210] = (0x1000 - 0x200).to_bytes(2, "little")
    text = f"{version} (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC\0".encode()
    head[0x1000 : 0x1000 + len(text)] = text
    path.write_bytes(bytes(head))
    return path


@dataclass(frozen=True, slots=True)
class Node:
    """The survey tests' host: its URI and the images its guests' disks are."""

    uri: str
    debian: Path
    centos: Path
    alpine: Path
    missing: Path
    junk: Path
    kernels: Path


def standard_node(tmp: Path) -> Node:
    """web (running Debian 12 booting an older kernel directly, hostname bookworm-vm), alpine-guest (Alpine, booting
    a header-only kernel file), centos5 (CentOS 5.3), gone (its disk missing) and junk (random bytes)."""
    debian, centos, alpine = (os_image(tmp, m) for m in (ostrees.debian12, ostrees.centos53, ostrees.alpine))
    kernels = tmp / "boot"
    kernels.mkdir()
    (kernels / "vmlinuz-6.1.0-9-amd64").write_bytes(b"\0" * 4096)
    bzimage(kernels / "vmlinuz", "6.6.14-0-virt")
    missing, junk = tmp / "missing.img", garbage(tmp)
    uri = write_node(
        tmp / "node.xml",
        [
            NodeGuest("web", str(debian), "running", str(kernels / "vmlinuz-6.1.0-9-amd64"), "xen"),
            NodeGuest("centos5", str(centos)),
            NodeGuest("alpine-guest", str(alpine), kernel=str(kernels / "vmlinuz")),
            NodeGuest("gone", str(missing)),
            NodeGuest("junk", str(junk)),
        ],
    )
    return Node(uri, debian, centos, alpine, missing, junk, kernels)
