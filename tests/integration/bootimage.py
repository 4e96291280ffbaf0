"""A bootable Debian 12 disk image configured for bare metal, for the tests that adapt a guest and then boot it.

The image is what a physical Debian server's disk looks like when it is copied into a guest: an MBR with one ext4
partition, the root named `/dev/sda1` in /etc/fstab and on the kernel command line of /boot/grub/grub.cfg (no
UUID), no `console=` anywhere, and a getty on tty1 only (systemd's default). Booted as it is under QEMU, its disk
is vda and its console the VGA screen: the serial console stays silent. Its network is systemd-networkd with a
static address on the first wired NIC (`e*`), so an adapted guest that booted shows up on the wire.

Made from ostrees.debootstrap_tree() (a copy: the cache is never changed) plus what debootstrap's minbase lacks
for a real boot: the host's Debian kernel, its initrd (initramfs-tools' MODULES=most holds virtio and ext4) and
config, the few modules the running system loads itself (virtio_net and its dependencies, depmod run on the
copy), and udev (without it systemd never sees ttyS0 appear, so no serial getty would start): the host's own
udev files when the host runs the same systemd version as the tree, else the .deb of that version.
Nothing is mounted: the partition is made by mkfs.ext4 -d and placed at its offset.

The pristine image is built once per set of inputs under guestkit.WORK_DIR and copied for each test.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import imagebuild
import ostrees

from dom0 import run

from . import guestkit

ROOT_UUID = "0d0e0000-0000-4000-8000-0000000b0071"  # what an adapted fstab and grub.cfg must name
PART_START = 2048  # sectors: where partition 1 starts
PART_OFFSET = PART_START * imagebuild.SECTOR
PART_MIB = 768  # sparse; the tree with kernel, initrd and udev is about 300 MiB
GUEST_IP = "192.0.2.10"  # TEST-NET-1: never routed anywhere
PEER_IP = "192.0.2.1"
PREFIX_LEN = 24
# Loaded by the running system (the initrd loads the disk's and may load these too); dependencies added by depmod.
MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "ext4", "crc32c_generic")
BARE_CMDLINE = "root=/dev/sda1 ro quiet"


@dataclass(frozen=True, slots=True)
class BootImage:
    """A copy of the bare-metal image: the raw disk, the kernel version in its /boot, and its root filesystem."""

    path: Path
    version: str
    root_uuid: str = ROOT_UUID
    offset: int = PART_OFFSET


def missing() -> str:
    """Why the image cannot be built here ('' when it can)."""
    if os.geteuid() != 0:
        return "building the boot image needs root (the tree's files belong to root)"
    for tool in ("sfdisk", "mkfs.ext4", "debugfs", "depmod", "dpkg-query"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        _, version = guestkit.host_kernel()
    except RuntimeError as exc:
        return str(exc)
    if not Path(f"/boot/initrd.img-{version}").is_file() or not Path(f"/lib/modules/{version}").is_dir():
        return f"no /boot/initrd.img-{version} or /lib/modules/{version} for the host's Debian kernel"
    return ""


def _systemd_version(tree: Path) -> str:
    """The version of the systemd package dpkg installed in `tree`."""
    status = (tree / "var/lib/dpkg/status").read_text()
    match = re.search(r"^Package: systemd\n(?:[^\n]+\n)*?Version: (\S+)", status, re.M)
    if match is None:
        raise RuntimeError(f"{tree}: no systemd package in var/lib/dpkg/status")
    return match.group(1)


def _host_udev_version() -> str:
    proc = run.run(["dpkg-query", "-W", "-f", "${Status} ${Version}", "udev"], check=False)
    words = proc.stdout.decode().split()
    return words[-1] if proc.returncode == 0 and words[:3] == ["install", "ok", "installed"] else ""


def _copy_host_package_files(package: str, tree: Path) -> None:
    """Copy the files, directories and symlinks dpkg installed for `package` on the host into `tree`."""
    for line in run.output(["dpkg-query", "-L", package]).splitlines():
        if not line.startswith("/") or line == "/.":
            continue
        src = Path(line)
        # through the tree's own /lib -> usr/lib: a relative link, so it resolves inside the tree
        dst = tree / line.lstrip("/")
        if src.is_symlink():
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            os.symlink(os.readlink(src), dst)
        elif src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
        elif src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def _add_udev(tree: Path) -> str:
    """Install udev of the tree's systemd version into `tree`; returns where it came from."""
    wanted = _systemd_version(tree)
    if _host_udev_version() == wanted:
        _copy_host_package_files("udev", tree)
        return f"host udev {wanted}"
    debs = ostrees.DEBOOTSTRAP_CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"udev_{wanted.replace(':', '%3a')}_*.deb"))
    if not found:
        proc = subprocess.run(
            ["apt-get", "download", f"udev={wanted}"], cwd=debs, capture_output=True, timeout=300, check=False
        )
        found = sorted(debs.glob("udev_*.deb"))
        found = [d for d in found if wanted.replace(":", "%3a") in d.name]
        if not found:
            raise RuntimeError(
                f"udev {wanted} (the tree's systemd version) is neither on the host nor downloadable: "
                f"{proc.stderr.decode(errors='replace').strip()}"
            )
    run.run(["dpkg-deb", "-x", str(found[-1]), str(tree)])
    return f"{found[-1].name}"


def _add_kernel(tree: Path, version: str) -> None:
    """The host's Debian kernel, initrd, config and the modules in MODULES (with their dependencies)."""
    boot = tree / "boot"
    boot.mkdir(exist_ok=True)
    for name in (f"vmlinuz-{version}", f"initrd.img-{version}", f"config-{version}"):
        shutil.copy2(Path("/boot") / name, boot / name)
    # the links Debian's kernel postinst keeps at the root
    for link, target in (("vmlinuz", f"boot/vmlinuz-{version}"), ("initrd.img", f"boot/initrd.img-{version}")):
        os.symlink(target, tree / link)
    host = Path("/lib/modules") / version
    guest = tree / "usr/lib/modules" / version
    for rel in guestkit.module_closure(host, MODULES):
        (guest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(host / rel, guest / rel)
    for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (host / name).exists():
            shutil.copy2(host / name, guest / name)
    run.run(["depmod", "-b", str(tree), version])


GRUB_CFG = """\
#
# DO NOT EDIT THIS FILE
#
# It is automatically generated by grub-mkconfig using templates
# from /etc/grub.d and settings from /etc/default/grub
#
set default="0"
set timeout=5
insmod part_msdos
insmod ext2
set root='hd0,msdos1'
menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class gnu --class os {{
	load_video
	insmod gzio
	insmod part_msdos
	insmod ext2
	set root='hd0,msdos1'
	echo	'Loading Linux {version} ...'
	linux	/boot/vmlinuz-{version} {cmdline}
	echo	'Loading initial ramdisk ...'
	initrd	/boot/initrd.img-{version}
}}
"""

DEFAULT_GRUB = """\
# If you change this file, run 'update-grub' afterwards to update
# /boot/grub/grub.cfg.

GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX=""
"""

NETWORK = f"""\
[Match]
Name=e*

[Network]
Address={GUEST_IP}/{PREFIX_LEN}
"""


def _bare_metal(tree: Path, version: str) -> None:
    """The configuration of a Debian installed on a physical server with one SATA disk."""
    (tree / "etc/fstab").write_text(
        "# /etc/fstab: static file system information.\n"
        "# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n"
        "/dev/sda1       /               ext4    errors=remount-ro 0       1\n"
    )
    (tree / "boot/grub").mkdir(parents=True, exist_ok=True)
    (tree / "boot/grub/grub.cfg").write_text(GRUB_CFG.format(version=version, cmdline=BARE_CMDLINE))
    (tree / "etc/default").mkdir(exist_ok=True)
    (tree / "etc/default/grub").write_text(DEFAULT_GRUB)
    (tree / "etc/systemd/network/50-wired.network").write_text(NETWORK)
    wants = tree / "etc/systemd/system"
    for unit, target in (("systemd-networkd.service", "multi-user"), ("systemd-networkd.socket", "sockets")):
        (wants / f"{target}.target.wants").mkdir(exist_ok=True)
        os.symlink(f"/lib/systemd/system/{unit}", wants / f"{target}.target.wants" / unit)
    # root logs in on the console without a password
    shadow = tree / "etc/shadow"
    shadow.write_text(re.sub(r"^root:[^:]*:", "root::", shadow.read_text(), count=1, flags=re.M))
    gettys = sorted(p.name for p in (wants / "getty.target.wants").iterdir())
    assert gettys == ["getty@tty1.service"], f"the tree should have systemd's default getty only: {gettys}"


def _inputs_key(tree: Path, version: str) -> str:
    key = hashlib.sha256()
    key.update(Path(__file__).read_bytes())  # a changed recipe builds a new image
    key.update((tree.with_name(tree.name + ".complete")).read_bytes())
    key.update(_systemd_version(tree).encode())
    for path in (Path(f"/boot/vmlinuz-{version}"), Path(f"/boot/initrd.img-{version}")):
        st = path.stat()
        key.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode())
    return key.hexdigest()[:16]


def pristine(work_dir: Path = guestkit.WORK_DIR) -> tuple[Path, str]:
    """The bare-metal image built once for these inputs (never booted, never adapted) and its kernel version."""
    tree = ostrees.debootstrap_tree()
    if tree is None:
        raise RuntimeError("no Debian 12 debootstrap tree (needs root, debootstrap and a Debian mirror)")
    _, version = guestkit.host_kernel()
    work_dir.mkdir(parents=True, exist_ok=True)
    work_dir.chmod(0o755)
    image = work_dir / f"bare-metal-debian12-{_inputs_key(tree, version)}.img"
    if image.exists():
        return image, version
    build_dir = Path(tempfile.mkdtemp(dir=work_dir, prefix=".bootimage-"))
    try:
        copy = build_dir / "tree"
        run.run(["cp", "-a", str(tree), str(copy)], timeout=300)
        _add_udev(copy)
        _add_kernel(copy, version)
        _bare_metal(copy, version)
        size = (PART_START + PART_MIB * 2048 + 2048) * imagebuild.SECTOR
        disk = imagebuild.sparse(build_dir / "disk.img", size)
        imagebuild.sfdisk(disk, f"label: dos\nstart={PART_START}, size={PART_MIB}M, type=83, bootable\n")
        part = imagebuild.mkfs("ext4", build_dir / "part1", PART_MIB * 1024 * 1024, ROOT_UUID, "", tree=copy)
        imagebuild.place(disk, PART_OFFSET, part)
        disk.chmod(0o644)
        for old in work_dir.glob("bare-metal-debian12-*.img"):
            old.unlink()  # built from other inputs: never used again
        os.replace(disk, image)
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
    return image, version


def copy_image(dest: Path) -> BootImage:
    """A fresh copy of the pristine image at `dest` (sparse), readable and writable by QEMU."""
    image, version = pristine()
    run.run(["cp", "--sparse=always", str(image), str(dest)], timeout=300)
    dest.chmod(0o666)
    return BootImage(dest, version)


def sha256(path: Path) -> str:
    """The SHA-256 of a whole image file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_guest_file(image: BootImage, guest_path: str) -> str:
    """A file of the image's root filesystem, read by debugfs (independently of dom0's own readers)."""
    proc = run.run(["debugfs", "-R", f"cat {guest_path}", f"{image.path}?offset={image.offset}"], timeout=60)
    return proc.stdout.decode(errors="replace")


@dataclass(frozen=True, slots=True)
class GrubEntry:
    """The first menu entry of a grub.cfg: what grub would boot by default."""

    kernel: str
    initrd: str
    cmdline: str


def grub_entry(grub_cfg: str) -> GrubEntry:
    """The kernel, initrd and command line of grub.cfg's first `menuentry`."""
    body = grub_cfg.partition("menuentry ")[2]
    linux = re.search(r"^\s*linux\s+(\S+)[ \t]*(.*)$", body, re.M)
    initrd = re.search(r"^\s*initrd\s+(\S+)", body, re.M)
    if linux is None or initrd is None:
        raise AssertionError(f"no linux/initrd line in grub.cfg's first menu entry:\n{grub_cfg}")
    return GrubEntry(linux.group(1), initrd.group(1), linux.group(2).strip())


def domain_xml(
    *,
    name: str,
    uuid: str,
    disk: Path,
    kernel: Path,
    initrd: Path,
    cmdline: str,
    console_log: Path,
    tap: str,
    mac: str,
    memory_mib: int = 1024,
) -> str:
    """A QEMU guest (software emulation) booting `kernel` directly from its virtio disk, NIC a tap named `tap`."""
    return f"""<domain type='qemu'>
  <name>{escape(name)}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>{memory_mib}</memory>
  <currentMemory unit='MiB'>{memory_mib}</currentMemory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(str(kernel))}</kernel>
    <initrd>{escape(str(initrd))}</initrd>
    <cmdline>{escape(cmdline)}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{escape(str(disk))}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='ethernet'>
      <mac address='{escape(mac)}'/>
      <target dev='{escape(tap)}'/>
      <model type='virtio'/>
      <rom enabled='no'/>
    </interface>
    <serial type='pty'>
      <log file='{escape(str(console_log))}' append='off'/>
      <target port='0'/>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='none'/>
  </devices>
</domain>
"""
