"""Minimal guest root trees of many distributions, with the release files those distributions really ship.

Each OSTree names its files, symlinks and /boot kernels, and the inspection result dom0 must report for it
(`expected`, in the JSON shape of `dom0 image inspect`). `debootstrap_tree()` builds (once, cached) a real
Debian 12 with debootstrap for end-to-end tests.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

KERNEL_BYTES = b"MZ\x00dummy kernel image "
INITRD_BYTES = b"070701dummy initrd "

_INITTAB_PLAIN = """\
id:2:initdefault:
si::sysinit:/etc/init.d/rcS
l2:2:wait:/etc/init.d/rc 2
1:2345:respawn:/sbin/getty 38400 tty1
2:23:respawn:/sbin/getty 38400 tty2
#T0:23:respawn:/sbin/getty -L ttyS0 9600 vt100
"""

_INITTAB_RH_XVC0 = """\
id:3:initdefault:
si::sysinit:/etc/rc.d/rc.sysinit
l3:3:wait:/etc/rc.d/rc 3
co:2345:respawn:/sbin/agetty xvc0 9600 vt100-nav
1:2345:respawn:/sbin/mingetty tty1
2:2345:respawn:/sbin/mingetty tty2
"""

_INITTAB_RH_PLAIN = """\
id:5:initdefault:
si::sysinit:/etc/rc.d/rc.sysinit
l5:5:wait:/etc/rc.d/rc 5
1:2345:respawn:/sbin/mingetty tty1
2:2345:respawn:/sbin/mingetty tty2
x:5:respawn:/etc/X11/prefdm -nodaemon
"""


@dataclass
class OSTree:
    """A distribution's minimal root: files (path -> text or bytes), symlinks (path -> target) and expectations."""

    name: str
    files: dict[str, str | bytes]
    links: dict[str, str] = field(default_factory=dict)
    expected: dict[str, Any] = field(default_factory=dict)

    def build(self, root: Path) -> Path:
        """Write the tree under `root` (created) and return it."""
        root.mkdir(parents=True, exist_ok=True)
        for d in ("etc", "bin", "usr/bin", "boot", "var", "tmp"):
            (root / d).mkdir(parents=True, exist_ok=True)
        for rel, content in self.files.items():
            path = root / rel.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        for rel, target in self.links.items():
            path = root / rel.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink() or path.exists():
                path.unlink()
            os.symlink(target, path)
        return root


# e_machine, ELF class and byte order of the architectures the trees below are built for.
_ELF_MACHINES = {
    "i386": (3, 32, True), "x86_64": (62, 64, True), "aarch64": (183, 64, True), "ppc64": (21, 64, False),
    "ppc64le": (21, 64, True), "s390x": (22, 64, False), "riscv64": (243, 64, True), "arm": (40, 32, True),
}  # fmt: skip


def elf_header(arch: str, *, e_type: int = 3) -> bytes:
    """The first 64 bytes of an ELF executable (a PIE: ET_DYN) for `arch`, as `file` and libguestfs read them."""
    machine, bits, little = _ELF_MACHINES[arch]
    order: Literal["little", "big"] = "little" if little else "big"
    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 1 if little else 2, 1, 0]) + bytes(8)
    head = ident + e_type.to_bytes(2, order) + machine.to_bytes(2, order) + (1).to_bytes(4, order)
    return head.ljust(64, b"\0")


def _facts(  # noqa: PLR0917 (a table row: positional on purpose)
    arch: str | None, major: int | None, minor: int | None, point: str | None, osinfo: str | None, tool: str | None
) -> dict[str, Any]:
    """The facts virt-inspector reports too: arch, major/minor version, point release, osinfo, package management."""
    return {
        "arch": arch, "major_version": major, "minor_version": minor, "point_release": point, "osinfo": osinfo,
        "package_management": tool,
    }  # fmt: skip


def _boot(*pairs: tuple[str, str | None]) -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = {}
    for kernel, initrd in pairs:
        files[f"/boot/{kernel}"] = KERNEL_BYTES + kernel.encode()
        if initrd:
            files[f"/boot/{initrd}"] = INITRD_BYTES + initrd.encode()
    return files


def _kernels(*triples: tuple[str, str, str | None]) -> list[dict[str, str | None]]:
    return [{"version": v, "kernel": f"/boot/{k}", "initrd": f"/boot/{i}" if i else None} for v, k, i in triples]


def _expect(  # noqa: PLR0917 (a table row: positional on purpose)
    distro: str,
    version: str | None,
    product: str,
    fmt: str,
    tools: list[str],
    hint: str,
    hostname: str | None,
    mountpoints: dict[str, str],
    kernels: list[dict[str, str | None]],
    gettys: list[str],
    securetty: list[str] | None,
    aliases: dict[str, str],
) -> dict[str, Any]:
    return {
        "distro": distro,
        "version": version,
        "product_name": product,
        "package_format": fmt,
        "package_tools": tools,
        "package_hint": hint,
        "hostname": hostname,
        "mountpoints": mountpoints,
        "kernels": kernels,
        "console": {"gettys": gettys, "securetty": securetty},
        "network": {"driver_aliases": aliases},
    }


DEBIAN12_OS_RELEASE = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"""


def debian4() -> OSTree:
    """Debian 4.0 (etch): only /etc/debian_version; a tg3 alias from a physical host; no hvc0 getty."""
    return OSTree(
        "debian4",
        {
            "/etc/debian_version": "4.0\n",
            "/etc/issue": "Debian GNU/Linux 4.0 \\n \\l\n\n",
            "/etc/hostname": "etch\n",
            "/etc/fstab": "# /etc/fstab: static file system information.\n"
            "proc            /proc           proc    defaults        0       0\n"
            "/dev/sda1       /               ext3    defaults,errors=remount-ro 0       1\n"
            "/dev/sda2       none            swap    sw              0       0\n",
            "/etc/inittab": _INITTAB_PLAIN,
            "/etc/modprobe.d/arch-aliases": "alias eth0 tg3\nalias scsi_hostadapter ata_piix\n",
            "/bin/bash": elf_header("i386"),
            **_boot(("vmlinuz-2.6.18-6-686", "initrd.img-2.6.18-6-686"), ("vmlinuz-2.6.18-4-686", None)),
        },
        expected=_expect(
            "debian", "4.0", "Debian GNU/Linux 4.0", "deb", ["dpkg", "apt-get"],
            "this is Debian 4.0: use dpkg/apt-get, not rpm/yum", "etch", {"/": "/dev/sda1"},
            _kernels(("2.6.18-6-686", "vmlinuz-2.6.18-6-686", "initrd.img-2.6.18-6-686"),
                     ("2.6.18-4-686", "vmlinuz-2.6.18-4-686", None)),
            ["tty1", "tty2"], None, {"eth0": "tg3"},
        ) | _facts("i386", 4, 0, "4.0", "debian4", "apt"),
    )  # fmt: skip


def debian12() -> OSTree:
    """Debian 12 with merged /usr, os-release an ABSOLUTE symlink (so it must be re-rooted), systemd hvc0 getty."""
    return OSTree(
        "debian12",
        {
            "/usr/lib/os-release": DEBIAN12_OS_RELEASE,
            "/etc/debian_version": "12.5\n",
            "/etc/hostname": "bookworm-vm\n",
            "/etc/fstab": "# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n"
            "UUID=0b4e2a8c-1df3-4a4f-9a43-2a7c0a0e51c1 /               ext4    errors=remount-ro 0       1\n"
            "UUID=3c6d0f7e-2b1a-4c55-8e21-5d1e9b0e4f02 /boot           ext4    defaults        0       2\n",
            "/etc/systemd/system/getty.target.wants/getty@tty1.service": "",
            "/etc/systemd/system/getty.target.wants/serial-getty@hvc0.service": "",
            "/etc/modprobe.d/blacklist.conf": "blacklist pcspkr\n",
            "/var/lib/dpkg/status": "Package: base-files\nEssential: yes\nStatus: install ok installed\n"
            "Priority: required\nSection: admin\nInstalled-Size: 341\nMaintainer: Santiago Vila <sanvila@debian.org>\n"
            "Architecture: amd64\nVersion: 12.4+deb12u5\nDescription: Debian base system miscellaneous files\n\n",
            "/bin/dash": elf_header("x86_64"),
            **_boot(
                ("vmlinuz-6.1.0-9-amd64", "initrd.img-6.1.0-9-amd64"),
                ("vmlinuz-6.1.0-10-amd64", "initrd.img-6.1.0-10-amd64"),
            ),
        },
        links={"/bin/sh": "dash", "/etc/os-release": "/usr/lib/os-release", "/sbin": "usr/sbin"},
        expected=_expect(
            "debian", "12", "Debian GNU/Linux 12 (bookworm)", "deb", ["dpkg", "apt-get", "apt"],
            "this is Debian 12: use dpkg/apt-get/apt, not rpm/yum", "bookworm-vm",
            {"/": "UUID=0b4e2a8c-1df3-4a4f-9a43-2a7c0a0e51c1", "/boot": "UUID=3c6d0f7e-2b1a-4c55-8e21-5d1e9b0e4f02"},
            _kernels(("6.1.0-10-amd64", "vmlinuz-6.1.0-10-amd64", "initrd.img-6.1.0-10-amd64"),
                     ("6.1.0-9-amd64", "vmlinuz-6.1.0-9-amd64", "initrd.img-6.1.0-9-amd64")),
            ["tty1", "hvc0"], None, {},
        ) | _facts("x86_64", 12, 5, "12.5", "debian12", "apt"),
    )  # fmt: skip


def ubuntu8() -> OSTree:
    """Ubuntu 8.04: lsb-release, and /etc/debian_version says "lenny/sid" (it must not be taken for Debian)."""
    return OSTree(
        "ubuntu8",
        {
            "/etc/lsb-release": "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=8.04\nDISTRIB_CODENAME=hardy\n"
            'DISTRIB_DESCRIPTION="Ubuntu 8.04.4 LTS"\n',
            "/etc/debian_version": "lenny/sid\n",
            "/etc/hostname": "hardy\n",
            "/etc/fstab": "proc /proc proc defaults 0 0\n/dev/xvda1 / ext3 relatime,errors=remount-ro 0 1\n",
            "/etc/event.d/tty1": "start on runlevel 2\nrespawn\nexec /sbin/getty 38400 tty1\n",
            "/etc/init/hvc0.conf": "# hvc0 - getty\nstart on stopped rc RUNLEVEL=[2345]\nrespawn\n"
            "exec /sbin/getty -8 38400 hvc0\n",
            "/etc/securetty": "console\ntty1\ntty2\n",
            **_boot(("vmlinuz-2.6.24-28-xen", "initrd.img-2.6.24-28-xen"),
                    ("vmlinuz-2.6.24-19-xen", "initrd.img-2.6.24-19-xen")),
        },
        expected=_expect(
            "ubuntu", "8.04", "Ubuntu 8.04.4 LTS", "deb", ["dpkg", "apt-get"],
            "this is Ubuntu 8.04: use dpkg/apt-get, not rpm/yum", "hardy", {"/": "/dev/xvda1"},
            _kernels(("2.6.24-28-xen", "vmlinuz-2.6.24-28-xen", "initrd.img-2.6.24-28-xen"),
                     ("2.6.24-19-xen", "vmlinuz-2.6.24-19-xen", "initrd.img-2.6.24-19-xen")),
            ["hvc0"], ["console", "tty1", "tty2"], {},
        ) | _facts(None, 8, 4, "8.04.4", "ubuntu8.04", "apt"),
    )  # fmt: skip


def ubuntu22() -> OSTree:
    """Ubuntu 22.04 with os-release as Ubuntu ships it (relative symlink into /usr/lib)."""
    return OSTree(
        "ubuntu22",
        {
            "/usr/lib/os-release": 'PRETTY_NAME="Ubuntu 22.04.3 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\n'
            'VERSION="22.04.3 LTS (Jammy Jellyfish)"\nVERSION_CODENAME=jammy\nID=ubuntu\nID_LIKE=debian\n'
            'HOME_URL="https://www.ubuntu.com/"\nSUPPORT_URL="https://help.ubuntu.com/"\n'
            'BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"\n'
            'PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"\n'
            "UBUNTU_CODENAME=jammy\n",
            "/etc/lsb-release": "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\nDISTRIB_CODENAME=jammy\n"
            'DISTRIB_DESCRIPTION="Ubuntu 22.04.3 LTS"\n',
            "/etc/debian_version": "bookworm/sid\n",
            "/etc/hostname": "jammy\n",
            "/etc/fstab": "LABEL=cloudimg-rootfs\t/\t ext4\tdiscard,errors=remount-ro\t0 1\n",
            "/etc/systemd/system/getty.target.wants/getty@tty1.service": "",
            "/usr/bin/bash": elf_header("aarch64"),
            **_boot(("vmlinuz-5.15.0-91-generic", "initrd.img-5.15.0-91-generic"),
                    ("vmlinuz-5.15.0-100-generic", "initrd.img-5.15.0-100-generic")),
        },
        links={"/bin/bash": "/usr/bin/bash", "/etc/os-release": "../usr/lib/os-release"},
        expected=_expect(
            "ubuntu", "22.04", "Ubuntu 22.04.3 LTS", "deb", ["dpkg", "apt-get", "apt"],
            "this is Ubuntu 22.04: use dpkg/apt-get/apt, not rpm/yum", "jammy", {"/": "LABEL=cloudimg-rootfs"},
            _kernels(("5.15.0-100-generic", "vmlinuz-5.15.0-100-generic", "initrd.img-5.15.0-100-generic"),
                     ("5.15.0-91-generic", "vmlinuz-5.15.0-91-generic", "initrd.img-5.15.0-91-generic")),
            ["tty1"], None, {},
        ) | _facts("aarch64", 22, 4, "22.04.3", "ubuntu22.04", "apt"),
    )  # fmt: skip


def fedora_core5() -> OSTree:
    """Fedora Core 5 (Bordeaux), the seed's guest: HOSTNAME in sysconfig/network, LABEL= fstab, /boot apart."""
    release = "Fedora Core release 5 (Bordeaux)\n"
    return OSTree(
        "fedora-core5",
        {
            "/etc/fedora-release": release,
            "/etc/redhat-release": release,
            "/etc/sysconfig/network": "NETWORKING=yes\nHOSTNAME=fc5.example.com\n",
            "/etc/fstab": "LABEL=/                 /                       ext3    defaults        1 1\n"
            "LABEL=/boot             /boot                   ext3    defaults        1 2\n"
            "devpts                  /dev/pts                devpts  gid=5,mode=620  0 0\n"
            "tmpfs                   /dev/shm                tmpfs   defaults        0 0\n"
            "proc                    /proc                   proc    defaults        0 0\n"
            "sysfs                   /sys                    sysfs   defaults        0 0\n"
            "LABEL=SWAP-sda3         swap                    swap    defaults        0 0\n",
            "/etc/inittab": _INITTAB_RH_PLAIN,
            "/etc/securetty": "console\nvc/1\ntty1\ntty2\n",
            "/etc/modprobe.conf": "alias eth0 tg3\nalias scsi_hostadapter ata_piix\n",
            "/bin/bash": elf_header("i386"),
            **_boot(("vmlinuz-2.6.15-1.2054_FC5", "initrd-2.6.15-1.2054_FC5.img"),
                    ("vmlinuz-2.6.20-1.2320.fc5", "initrd-2.6.20-1.2320.fc5.img")),
        },
        expected=_expect(
            "fedora", "5", "Fedora Core release 5 (Bordeaux)", "rpm", ["rpm", "yum"],
            "this is Fedora Core 5: use rpm/yum, not dpkg/apt-get", "fc5.example.com",
            {"/": "LABEL=/", "/boot": "LABEL=/boot"},
            _kernels(("2.6.20-1.2320.fc5", "vmlinuz-2.6.20-1.2320.fc5", "initrd-2.6.20-1.2320.fc5.img"),
                     ("2.6.15-1.2054_FC5", "vmlinuz-2.6.15-1.2054_FC5", "initrd-2.6.15-1.2054_FC5.img")),
            ["tty1", "tty2"], ["console", "vc/1", "tty1", "tty2"], {"eth0": "tg3"},
        ) | _facts("i386", 5, 0, "5", "fedora5", "yum"),
    )  # fmt: skip


def fedora39() -> OSTree:
    """Fedora 39 Server: os-release, a rescue kernel, initramfs-*.img, dnf."""
    os_release = (
        'NAME="Fedora Linux"\nVERSION="39 (Server Edition)"\nID=fedora\nVERSION_ID=39\nVERSION_CODENAME=""\n'
        'PLATFORM_ID="platform:f39"\nPRETTY_NAME="Fedora Linux 39 (Server Edition)"\n'
        'ANSI_COLOR="0;38;2;60;110;180"\nLOGO=fedora-logo-icon\nCPE_NAME="cpe:/o:fedoraproject:fedora:39"\n'
        'HOME_URL="https://fedoraproject.org/"\n'
        'DOCUMENTATION_URL="https://docs.fedoraproject.org/en-US/fedora/f39/system-administrators-guide/"\n'
        'SUPPORT_URL="https://ask.fedoraproject.org/"\nBUG_REPORT_URL="https://bugzilla.redhat.com/"\n'
        'REDHAT_BUGZILLA_PRODUCT="Fedora"\nREDHAT_BUGZILLA_PRODUCT_VERSION=39\nREDHAT_SUPPORT_PRODUCT="Fedora"\n'
        'REDHAT_SUPPORT_PRODUCT_VERSION=39\nSUPPORT_END=2024-11-12\nVARIANT="Server Edition"\nVARIANT_ID=server\n'
    )
    rescue = "0-rescue-5f1c1a4b2c6e4d0f8a7b9c3d2e1f0a9b"
    return OSTree(
        "fedora39",
        {
            "/usr/lib/os-release": os_release,
            "/etc/fedora-release": "Fedora release 39 (Thirty Nine)\n",
            "/etc/hostname": "f39.example.org\n",
            "/etc/fstab": "UUID=7e3b1c2a-9d8f-4e6a-b5c4-3a2f1e0d9c8b /     xfs   defaults   0 0\n"
            "UUID=1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d /boot ext4  defaults   1 2\n",
            "/etc/systemd/system/getty.target.wants/getty@tty1.service": "",
            "/usr/bin/bash": elf_header("x86_64"),
            "/usr/bin/dnf-3": "#!/usr/bin/python3\n",
            **_boot(("vmlinuz-6.5.6-300.fc39.x86_64", "initramfs-6.5.6-300.fc39.x86_64.img"),
                    ("vmlinuz-6.6.9-200.fc39.x86_64", "initramfs-6.6.9-200.fc39.x86_64.img"),
                    (f"vmlinuz-{rescue}", f"initramfs-{rescue}.img")),
        },
        links={"/bin/sh": "../usr/bin/bash", "/usr/bin/dnf": "dnf-3", "/etc/os-release": "../usr/lib/os-release",
               "/etc/redhat-release": "fedora-release"},
        expected=_expect(
            "fedora", "39", "Fedora Linux 39 (Server Edition)", "rpm", ["rpm", "dnf"],
            "this is Fedora 39: use rpm/dnf, not dpkg/apt-get", "f39.example.org",
            {"/": "UUID=7e3b1c2a-9d8f-4e6a-b5c4-3a2f1e0d9c8b", "/boot": "UUID=1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"},
            _kernels(("6.6.9-200.fc39.x86_64", "vmlinuz-6.6.9-200.fc39.x86_64", "initramfs-6.6.9-200.fc39.x86_64.img"),
                     ("6.5.6-300.fc39.x86_64", "vmlinuz-6.5.6-300.fc39.x86_64", "initramfs-6.5.6-300.fc39.x86_64.img"),
                     (rescue, f"vmlinuz-{rescue}", f"initramfs-{rescue}.img")),
            ["tty1"], None, {},
        ) | _facts("x86_64", 39, 0, "39", "fedora39", "dnf"),
    )  # fmt: skip


def centos53() -> OSTree:
    """CentOS 5.3 as a Xen guest: xvc0 getty and securetty, LVM root, the el5 kernels whose text order is wrong."""
    return OSTree(
        "centos53",
        {
            "/etc/redhat-release": "CentOS release 5.3 (Final)\n",
            "/etc/sysconfig/network": "NETWORKING=yes\nNETWORKING_IPV6=no\nHOSTNAME=centos5.localdomain\n",
            "/etc/fstab": "/dev/VolGroup00/LogVol00 /                       ext3    defaults        1 1\n"
            "LABEL=/boot             /boot                   ext3    defaults        1 2\n"
            "tmpfs                   /dev/shm                tmpfs   defaults        0 0\n"
            "/dev/VolGroup00/LogVol01 swap                    swap    defaults        0 0\n",
            "/etc/inittab": _INITTAB_RH_XVC0,
            "/etc/securetty": "console\nvc/1\ntty1\ntty2\nxvc0\n",
            "/etc/modprobe.conf": "alias eth0 xennet\nalias scsi_hostadapter xenblk\n",
            "/bin/bash": elf_header("i386"),
            **_boot(("vmlinuz-2.6.18-92.el5xen", "initrd-2.6.18-92.el5xen.img"),
                    ("vmlinuz-2.6.18-128.el5xen", "initrd-2.6.18-128.el5xen.img")),
        },
        expected=_expect(
            "centos", "5.3", "CentOS release 5.3 (Final)", "rpm", ["rpm", "yum"],
            "this is CentOS 5.3: use rpm/yum, not dpkg/apt-get", "centos5.localdomain",
            {"/": "/dev/VolGroup00/LogVol00", "/boot": "LABEL=/boot"},
            _kernels(("2.6.18-128.el5xen", "vmlinuz-2.6.18-128.el5xen", "initrd-2.6.18-128.el5xen.img"),
                     ("2.6.18-92.el5xen", "vmlinuz-2.6.18-92.el5xen", "initrd-2.6.18-92.el5xen.img")),
            ["xvc0", "tty1", "tty2"], ["console", "vc/1", "tty1", "tty2", "xvc0"], {"eth0": "xennet"},
        ) | _facts("i386", 5, 3, "5.3", "centos5.3", "yum"),
    )  # fmt: skip


def rhel54() -> OSTree:
    """Red Hat Enterprise Linux Server 5.4 (Tikanga)."""
    return OSTree(
        "rhel54",
        {
            "/etc/redhat-release": "Red Hat Enterprise Linux Server release 5.4 (Tikanga)\n",
            "/etc/sysconfig/network": "NETWORKING=yes\nHOSTNAME=rhel5.example.com\nGATEWAY=192.0.2.1\n",
            "/etc/fstab": "LABEL=/1                /                       ext3    defaults        1 1\n",
            "/etc/inittab": _INITTAB_RH_PLAIN,
            "/etc/modprobe.conf": "alias eth0 e1000\nalias eth1 bnx2\n",
            "/bin/bash": elf_header("ppc64"),
            **_boot(("vmlinuz-2.6.18-164.el5", "initrd-2.6.18-164.el5.img")),
        },
        expected=_expect(
            "rhel", "5.4", "Red Hat Enterprise Linux Server release 5.4 (Tikanga)", "rpm", ["rpm", "yum"],
            "this is Red Hat Enterprise Linux 5.4: use rpm/yum, not dpkg/apt-get", "rhel5.example.com",
            {"/": "LABEL=/1"},
            _kernels(("2.6.18-164.el5", "vmlinuz-2.6.18-164.el5", "initrd-2.6.18-164.el5.img")),
            ["tty1", "tty2"], None, {"eth0": "e1000", "eth1": "bnx2"},
        ) | _facts("ppc64", 5, 4, "5.4", "rhel5.4", "yum"),
    )  # fmt: skip


def rocky9() -> OSTree:
    """Rocky Linux 9.3 (Blue Onyx)."""
    os_release = (
        'NAME="Rocky Linux"\nVERSION="9.3 (Blue Onyx)"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"\n'
        'PLATFORM_ID="platform:el9"\nPRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"\nANSI_COLOR="0;32"\n'
        'LOGO="fedora-logo-icon"\nCPE_NAME="cpe:/o:rocky:rocky:9::baseos"\nHOME_URL="https://rockylinux.org/"\n'
        'BUG_REPORT_URL="https://bugs.rockylinux.org/"\nSUPPORT_END="2032-05-31"\n'
        'ROCKY_SUPPORT_PRODUCT="Rocky-Linux-9"\nROCKY_SUPPORT_PRODUCT_VERSION="9.3"\n'
        'REDHAT_SUPPORT_PRODUCT="Rocky Linux"\nREDHAT_SUPPORT_PRODUCT_VERSION="9.3"\n'
    )
    return OSTree(
        "rocky9",
        {
            "/usr/lib/os-release": os_release,
            "/etc/rocky-release": "Rocky Linux release 9.3 (Blue Onyx)\n",
            "/etc/hostname": "rocky9\n",
            "/etc/fstab": "/dev/mapper/rl-root     /                       xfs     defaults        0 0\n"
            "UUID=9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c6b /boot                   xfs     defaults        0 0\n"
            "/dev/mapper/rl-swap     none                    swap    defaults        0 0\n",
            "/usr/bin/bash": elf_header("x86_64"),
            **_boot(("vmlinuz-5.14.0-362.8.1.el9_3.x86_64", "initramfs-5.14.0-362.8.1.el9_3.x86_64.img"),
                    ("vmlinuz-5.14.0-362.13.1.el9_3.x86_64", "initramfs-5.14.0-362.13.1.el9_3.x86_64.img")),
        },
        links={
            "/bin/bash": "../usr/bin/bash",
            "/etc/os-release": "../usr/lib/os-release",
            "/etc/redhat-release": "rocky-release",
            "/etc/system-release": "rocky-release",
        },
        expected=_expect(
            "rocky", "9.3", "Rocky Linux 9.3 (Blue Onyx)", "rpm", ["rpm", "dnf"],
            "this is Rocky Linux 9.3: use rpm/dnf, not dpkg/apt-get", "rocky9",
            {"/": "/dev/mapper/rl-root", "/boot": "UUID=9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c6b"},
            _kernels(("5.14.0-362.13.1.el9_3.x86_64", "vmlinuz-5.14.0-362.13.1.el9_3.x86_64",
                      "initramfs-5.14.0-362.13.1.el9_3.x86_64.img"),
                     ("5.14.0-362.8.1.el9_3.x86_64", "vmlinuz-5.14.0-362.8.1.el9_3.x86_64",
                      "initramfs-5.14.0-362.8.1.el9_3.x86_64.img")),
            [], None, {},
        ) | _facts("x86_64", 9, 3, "9.3", "rocky9", "dnf"),
    )  # fmt: skip


def sles10() -> OSTree:
    """SUSE Linux Enterprise Server 10 SP2: SuSE-release, /etc/HOSTNAME, SUSE's vmlinuz-xen convenience links."""
    return OSTree(
        "sles10",
        {
            "/etc/SuSE-release": "SUSE Linux Enterprise Server 10 (x86_64)\nVERSION = 10\nPATCHLEVEL = 2\n",
            "/etc/HOSTNAME": "sles10.example.com\n",
            "/etc/fstab": "/dev/xvda2           /                    reiserfs   acl,user_xattr        1 1\n"
            "/dev/xvda1           swap                 swap       defaults              0 0\n"
            "proc                 /proc                proc       defaults              0 0\n",
            "/etc/inittab": "id:3:initdefault:\n"
            "1:2345:respawn:/sbin/mingetty --noclear tty1\n"
            "x0:12345:respawn:/sbin/agetty -L 9600 xvc0 xterm\n",
            "/etc/securetty": "console\ntty1\ntty2\n",
            "/bin/bash": elf_header("x86_64"),
            **_boot(("vmlinuz-2.6.16.60-0.21-xen", "initrd-2.6.16.60-0.21-xen")),
        },
        links={"/boot/vmlinuz-xen": "vmlinuz-2.6.16.60-0.21-xen", "/boot/initrd-xen": "initrd-2.6.16.60-0.21-xen"},
        expected=_expect(
            "sles", "10.2", "SUSE Linux Enterprise Server 10 (x86_64)", "rpm", ["rpm", "zypper"],
            "this is SUSE Linux Enterprise Server 10.2: use rpm/zypper, not dpkg/apt-get/yum", "sles10.example.com",
            {"/": "/dev/xvda2"},
            _kernels(("2.6.16.60-0.21-xen", "vmlinuz-2.6.16.60-0.21-xen", "initrd-2.6.16.60-0.21-xen")),
            ["tty1", "xvc0"], ["console", "tty1", "tty2"], {},
        ) | _facts("x86_64", 10, 2, "10.2", "sles10sp2", "zypper"),
    )  # fmt: skip


def opensuse111() -> OSTree:
    """openSUSE 11.1: SuSE-release without PATCHLEVEL."""
    return OSTree(
        "opensuse111",
        {
            "/etc/SuSE-release": "openSUSE 11.1 (x86_64)\nVERSION = 11.1\n",
            "/etc/HOSTNAME": "linux-abcd.site\n",
            "/etc/fstab": "/dev/disk/by-id/ata-QEMU_HARDDISK_QM00001-part2 / ext3 acl,user_xattr 1 1\n",
            "/etc/inittab": "1:2345:respawn:/sbin/mingetty --noclear tty1\n",
            "/bin/bash": elf_header("x86_64"),
            **_boot(("vmlinuz-2.6.27.7-9-default", "initrd-2.6.27.7-9-default")),
        },
        expected=_expect(
            "opensuse", "11.1", "openSUSE 11.1 (x86_64)", "rpm", ["rpm", "zypper"],
            "this is openSUSE 11.1: use rpm/zypper, not dpkg/apt-get/yum", "linux-abcd.site",
            {"/": "/dev/disk/by-id/ata-QEMU_HARDDISK_QM00001-part2"},
            _kernels(("2.6.27.7-9-default", "vmlinuz-2.6.27.7-9-default", "initrd-2.6.27.7-9-default")),
            ["tty1"], None, {},
        ) | _facts("x86_64", 11, 1, "11.1", "opensuse11.1", "zypper"),
    )  # fmt: skip


def opensuse_leap42() -> OSTree:
    """openSUSE Leap 42.3: still a SuSE-release, but Leap."""
    return OSTree(
        "opensuse-leap42",
        {
            "/etc/SuSE-release": "openSUSE 42.3 (x86_64)\nVERSION = 42.3\nCODENAME = Malachite\n"
            "# /etc/SuSE-release is deprecated and will be removed in a future service pack or release.\n"
            "# Please check /etc/os-release for details about this release.\n",
            "/etc/HOSTNAME": "leap42\n",
            "/etc/fstab": "UUID=5c1f2e3d-4b5a-4968-8776-a5b4c3d2e1f0 / btrfs defaults 0 0\n",
            "/bin/bash": elf_header("ppc64le"),
            **_boot(("vmlinuz-4.4.76-1-default", "initrd-4.4.76-1-default")),
        },
        expected=_expect(
            "opensuse-leap", "42.3", "openSUSE 42.3 (x86_64)", "rpm", ["rpm", "zypper"],
            "this is openSUSE Leap 42.3: use rpm/zypper, not dpkg/apt-get/yum", "leap42",
            {"/": "UUID=5c1f2e3d-4b5a-4968-8776-a5b4c3d2e1f0"},
            _kernels(("4.4.76-1-default", "vmlinuz-4.4.76-1-default", "initrd-4.4.76-1-default")),
            [], None, {},
        ) | _facts("ppc64le", 42, 3, "42.3", "opensuse42.3", "zypper"),
    )  # fmt: skip


def alpine() -> OSTree:
    """Alpine 3.19: flavour-named kernel (vmlinuz-virt) whose release comes from /lib/modules; busybox inittab."""
    return OSTree(
        "alpine",
        {
            "/etc/alpine-release": "3.19.1\n",
            "/usr/lib/os-release": 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\n'
            'PRETTY_NAME="Alpine Linux v3.19"\nHOME_URL="https://alpinelinux.org/"\n'
            'BUG_REPORT_URL="https://gitlab.alpinelinux.org/alpine/aports/-/issues"\n',
            "/etc/hostname": "alpine-guest\n",
            "/etc/fstab": "UUID=d1e2f3a4-b5c6-4d7e-8f90-a1b2c3d4e5f6\t/\text4\trw,relatime 0 1\n"
            "UUID=a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d\t/boot\text4\trw,relatime 0 2\n",
            "/etc/inittab": "::sysinit:/sbin/openrc sysinit\ntty1::respawn:/sbin/getty 38400 tty1\n"
            "hvc0::respawn:/sbin/getty -L 0 hvc0 vt100\n",
            "/etc/securetty": "console\ntty1\nhvc0\n",
            "/lib/modules/6.6.14-0-virt/modules.dep": "",
            "/bin/busybox": elf_header("x86_64"),
            **_boot(("vmlinuz-virt", "initramfs-virt")),
        },
        links={"/bin/sh": "/bin/busybox", "/etc/os-release": "../usr/lib/os-release"},
        expected=_expect(
            "alpine", "3.19.1", "Alpine Linux v3.19", "apk", ["apk"],
            "this is Alpine Linux 3.19.1: use apk, not apt-get/yum", "alpine-guest",
            {"/": "UUID=d1e2f3a4-b5c6-4d7e-8f90-a1b2c3d4e5f6", "/boot": "UUID=a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"},
            _kernels(("6.6.14-0-virt", "vmlinuz-virt", "initramfs-virt")),
            ["tty1", "hvc0"], ["console", "tty1", "hvc0"], {},
        ) | _facts("x86_64", 3, 19, "3.19.1", "alpinelinux3.19", "apk"),
    )  # fmt: skip


def arch() -> OSTree:
    """Arch Linux: empty /etc/arch-release, rolling (no VERSION_ID), vmlinuz-linux + pkgbase."""
    return OSTree(
        "arch",
        {
            "/etc/arch-release": "",
            "/usr/lib/os-release": 'NAME="Arch Linux"\nPRETTY_NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n'
            'ANSI_COLOR="38;2;23;147;209"\nHOME_URL="https://archlinux.org/"\n'
            'DOCUMENTATION_URL="https://wiki.archlinux.org/"\nSUPPORT_URL="https://bbs.archlinux.org/"\n'
            'BUG_REPORT_URL="https://gitlab.archlinux.org/groups/archlinux/-/issues"\n'
            'PRIVACY_POLICY_URL="https://terms.archlinux.org/docs/privacy-policy/"\nLOGO=archlinux-logo\n',
            "/etc/hostname": "archie\n",
            "/etc/fstab": "# /dev/vda2\nUUID=f0e1d2c3-b4a5-4697-8879-6a5b4c3d2e1f\t/\text4\trw,relatime\t0 1\n",
            "/usr/lib/modules/6.7.4-arch1-1/pkgbase": "linux\n",
            "/usr/bin/env": elf_header("x86_64"),
            **_boot(("vmlinuz-linux", "initramfs-linux.img")),
            "/boot/initramfs-linux-fallback.img": INITRD_BYTES,
        },
        links={"/etc/os-release": "../usr/lib/os-release", "/lib": "usr/lib"},
        expected=_expect(
            "arch", None, "Arch Linux", "pacman", ["pacman"],
            "this is Arch Linux: use pacman, not apt-get/yum", "archie",
            {"/": "UUID=f0e1d2c3-b4a5-4697-8879-6a5b4c3d2e1f"},
            _kernels(("6.7.4-arch1-1", "vmlinuz-linux", "initramfs-linux.img")),
            [], None, {},
        ) | _facts("x86_64", 0, 0, None, "archlinux", "pacman"),
    )  # fmt: skip


def gentoo() -> OSTree:
    """Gentoo with only /etc/gentoo-release (before os-release), /etc/conf.d/hostname and genkernel names."""
    return OSTree(
        "gentoo",
        {
            "/etc/gentoo-release": "Gentoo Base System release 1.12.11.1\n",
            "/etc/conf.d/hostname": '# Set to the hostname of this machine\nhostname="gentoo-xen"\n',
            "/etc/fstab": "/dev/xvda1\t\t/boot\t\text2\t\tnoauto,noatime\t1 2\n"
            "/dev/xvda3\t\t/\t\text3\t\tnoatime\t\t0 1\n",
            "/etc/inittab": "c1:12345:respawn:/sbin/agetty 38400 tty1 linux\n"
            "h0:12345:respawn:/sbin/agetty 9600 hvc0 screen\n",
            "/etc/modules.autoload.d/kernel-2.6": "# nothing\n",
            "/bin/bash": elf_header("x86_64"),
            **_boot(("kernel-genkernel-x86_64-2.6.24-gentoo-r8", "initramfs-genkernel-x86_64-2.6.24-gentoo-r8"),
                    ("kernel-genkernel-x86_64-2.6.24-gentoo-r10", "initramfs-genkernel-x86_64-2.6.24-gentoo-r10")),
        },
        expected=_expect(
            "gentoo", "1.12.11.1", "Gentoo Base System release 1.12.11.1", "ebuild", ["emerge"],
            "this is Gentoo 1.12.11.1: use emerge, not apt-get/yum", "gentoo-xen",
            {"/": "/dev/xvda3", "/boot": "/dev/xvda1"},
            _kernels(("2.6.24-gentoo-r10", "kernel-genkernel-x86_64-2.6.24-gentoo-r10",
                      "initramfs-genkernel-x86_64-2.6.24-gentoo-r10"),
                     ("2.6.24-gentoo-r8", "kernel-genkernel-x86_64-2.6.24-gentoo-r8",
                      "initramfs-genkernel-x86_64-2.6.24-gentoo-r8")),
            ["tty1", "hvc0"], None, {},
        ) | _facts("x86_64", 1, 12, "1.12.11.1", "gentoo", "portage"),
    )  # fmt: skip


ALL = (
    debian4, debian12, ubuntu8, ubuntu22, fedora_core5, fedora39, centos53, rhel54, rocky9, sles10, opensuse111,
    opensuse_leap42, alpine, arch, gentoo,
)  # fmt: skip


def split_boot(tree: Path, boot_dir: Path) -> Path:
    """Move tree/boot's contents to boot_dir (to become a separate /boot filesystem); returns boot_dir."""
    boot_dir.mkdir(parents=True, exist_ok=True)
    for entry in (tree / "boot").iterdir():
        shutil.move(str(entry), boot_dir / entry.name)
    return boot_dir


def mkfs_ext4(tree: Path, image: Path, size_mb: int = 32, label: str = "", uuid: str = "") -> Path:
    """An ext4 filesystem image holding `tree` (mkfs.ext4 -d: no root, no mount)."""
    cmd = ["mkfs.ext4", "-q", "-F", "-d", str(tree)]
    if label:
        cmd += ["-L", label]
    if uuid:
        cmd += ["-U", uuid]
    with image.open("wb") as fh:
        fh.truncate(size_mb * 1024 * 1024)
    subprocess.run([*cmd, str(image)], check=True, capture_output=True)
    return image


# --- a real Debian through debootstrap ------------------------------------------------------------------------------

DEBOOTSTRAP_CACHE = Path("/var/cache/dom0-tests")
DEBOOT_HOSTNAME = "deboot-guest"
DEBOOT_ROOT_UUID = "0d0e0000-0000-4000-8000-00000000d0b1"
DEBOOT_BOOT_UUID = "0d0e0000-0000-4000-8000-00000000d0b2"
DEBOOT_FSTAB = (
    f"UUID={DEBOOT_ROOT_UUID} / ext4 errors=remount-ro 0 1\n"
    f"UUID={DEBOOT_BOOT_UUID} /boot ext4 defaults 0 2\n"
    "proc /proc proc defaults 0 0\n"
)
DEBOOTSTRAP_ARGS = ("--variant=minbase", "--include=systemd-sysv", "bookworm")


def debootstrap_tree() -> Path | None:
    """A real Debian 12 root built by debootstrap (minbase), cached and reused; None if it cannot be built here.

    Its /etc/hostname and /etc/fstab (root and a separate /boot, by the DEBOOT_*_UUIDs) are set as an installer
    would; debootstrap leaves them unconfigured.
    """
    key = hashlib.sha256(" ".join(DEBOOTSTRAP_ARGS).encode()).hexdigest()[:12]
    root = DEBOOTSTRAP_CACHE / f"debootstrap-bookworm-{key}"
    marker = root.with_name(root.name + ".complete")
    if marker.exists() and root.is_dir():
        _configure(root)
        return root
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        return None
    partial = root.with_name(root.name + ".partial")
    _unmount_below(partial)  # a debootstrap killed mid-way leaves its /proc mounted there, and rmtree fails
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    mirror = os.environ.get("DOM0_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    proc = subprocess.run(
        ["debootstrap", *DEBOOTSTRAP_ARGS, str(partial), mirror], capture_output=True, timeout=900, check=False
    )
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        return None
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    marker.write_text(" ".join(DEBOOTSTRAP_ARGS) + "\n")
    _configure(root)
    return root


def _unmount_below(directory: Path) -> None:
    """Lazily unmount whatever is mounted inside `directory` (deepest first)."""
    prefix = f"{directory}/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=60, check=False)


def _configure(root: Path) -> None:
    for rel, text in (("etc/hostname", DEBOOT_HOSTNAME + "\n"), ("etc/fstab", DEBOOT_FSTAB)):
        path = root / rel
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def _xfs_protofile(tree: Path) -> str:
    lines = ["/dev/null", "0 0", "d--755 0 0"]

    def walk(directory: Path, depth: int) -> None:
        for entry in sorted(directory.iterdir()):
            pad = " " * depth
            if entry.is_symlink():
                lines.append(f"{pad}{entry.name} l--777 0 0 {os.readlink(entry)}")
            elif entry.is_dir():
                lines.append(f"{pad}{entry.name} d--{entry.stat().st_mode & 0o777:03o} 0 0")
                walk(entry, depth + 1)
                lines.append(f"{pad}$")
            elif entry.is_file():
                lines.append(f"{pad}{entry.name} ---{entry.stat().st_mode & 0o777:03o} 0 0 {entry}")

    walk(tree, 1)
    lines.append("$")
    return "\n".join(lines) + "\n"


def make_fs_image(tree: Path, image: Path, fstype: str, label: str = "", uuid: str = "") -> Path:
    """A filesystem image of `fstype` (ext4, btrfs, xfs, vfat) holding `tree`, made without root or mounts."""
    if fstype in ("ext2", "ext3", "ext4"):
        return mkfs_ext4(tree, image, label=label, uuid=uuid)
    size = {"btrfs": 160, "xfs": 320, "vfat": 64}[fstype]
    with image.open("wb") as fh:
        fh.truncate(size * 1024 * 1024)
    if fstype == "btrfs":
        cmd = ["mkfs.btrfs", "-q", "-f", "--rootdir", str(tree)] + (["-L", label] if label else [])
        subprocess.run([*cmd, *(["-U", uuid] if uuid else []), str(image)], check=True, capture_output=True)
    elif fstype == "xfs":
        proto = image.with_suffix(".proto")
        proto.write_text(_xfs_protofile(tree))
        cmd = ["mkfs.xfs", "-q", "-f", "-p", str(proto)] + (["-L", label] if label else [])
        subprocess.run([*cmd, *(["-m", f"uuid={uuid}"] if uuid else []), str(image)], check=True, capture_output=True)
        proto.unlink()
    elif fstype == "vfat":
        cmd = ["mkfs.vfat"] + (["-n", label] if label else [])
        subprocess.run([*cmd, str(image)], check=True, capture_output=True)
        # FAT has no symlinks: copy only directories and regular files.
        for entry in sorted(tree.rglob("*")):
            rel = "::/" + entry.relative_to(tree).as_posix()
            if entry.is_symlink():
                continue
            if entry.is_dir():
                subprocess.run(["mmd", "-i", str(image), rel], check=True, capture_output=True)
            else:
                subprocess.run(["mcopy", "-i", str(image), str(entry), rel], check=True, capture_output=True)
    else:
        raise ValueError(fstype)
    return image
