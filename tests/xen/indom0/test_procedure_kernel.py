"""Booting a PV guest from the kernel `dom0 image kernel IMAGE -o DIR --sync` copied out of its own disk: what pygrub
users did by hand after each guest upgrade.

The guest's disk is an ext4 image whose /boot holds the lab's guest kernel and busybox initramfs under Debian's
names (vmlinuz-KV, initrd.img-KV) and a grub.cfg giving that kernel its command line. The kernel there is the
uncompressed ELF the lab boots every guest from (lab.uncompressed_kernel: xz inside dom0's domain builder is slow
and failed now and then under emulation); `image kernel` finds it by its Debian name and copies it as it is. The
printed boot lines go unchanged into a fresh definition: xl.cfg's kernel/ramdisk/extra for xl://, libvirt's
<kernel>/<initrd>/<cmdline> for xen:///system. A second --sync copies nothing and says so.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .guests import GUEST_INITRAMFS, GUEST_KERNEL, WORK, LabGuest, cleanup, dom0
from .procguests import create, definition, lab_guest, trace, xl_replace, xml_replace

KV = os.uname().release  # the lab's guests boot dom0's own Debian kernel
KERNEL_DIR = WORK / "kernel"
IMAGE = KERNEL_DIR / "disk.img"
OUT = KERNEL_DIR / "boot"
# what the guest's own boot loader gives its kernel; image kernel carries it into the printed lines
GRUB_ARGS = "quiet console=hvc0 dom0test.mode=idle"


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _build_image() -> None:
    """An ext4 disk holding a Debian-like / with the kernel and initramfs in /boot (mkfs.ext4 -d: no mount)."""
    tree = KERNEL_DIR / "tree"
    (tree / "boot/grub").mkdir(parents=True)
    (tree / "etc").mkdir()
    shutil.copyfile(GUEST_KERNEL, tree / f"boot/vmlinuz-{KV}")
    shutil.copyfile(GUEST_INITRAMFS, tree / f"boot/initrd.img-{KV}")
    (tree / "boot/grub/grub.cfg").write_text(
        "menuentry 'Debian GNU/Linux' {\n"
        f"\tlinux /boot/vmlinuz-{KV} root=/dev/xvda ro {GRUB_ARGS}\n"
        f"\tinitrd /boot/initrd.img-{KV}\n"
        "}\n"
    )
    (tree / "etc/os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n')
    (tree / "etc/debian_version").write_text("12.8\n")
    (tree / "etc/fstab").write_text("/dev/xvda / ext4 errors=remount-ro 0 1\n")
    size = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file()) + (24 << 20)
    with IMAGE.open("wb") as f:
        f.truncate(size)
    started = time.monotonic()
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "guestroot", "-d", str(tree), str(IMAGE)], check=True, timeout=300)
    shutil.rmtree(tree)
    trace(f"mkfs.ext4 -d of the guest's / ({size >> 20} MiB): {time.monotonic() - started:.1f} s")


@pytest.fixture(scope="module")
def guest(uri: str) -> Iterator[LabGuest]:
    """The guest (not created yet) whose disk is the image; removed with its files at the end."""
    shutil.rmtree(KERNEL_DIR, ignore_errors=True)
    KERNEL_DIR.mkdir(parents=True)
    g = lab_guest(uri, "kernel", "pv", 0x21, disk=IMAGE)
    try:
        _build_image()
        yield g
    finally:
        cleanup(g)
        shutil.rmtree(KERNEL_DIR, ignore_errors=True)


def _block(out: str, title: str) -> list[str]:
    """The indented lines under `title` in image kernel's output."""
    lines = out.splitlines()
    start = lines.index(title) + 1
    block = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        block.append(line.strip())
    return block


PRINTED: dict[str, list[str]] = {}


def test_image_kernel_sync_copies_the_kernel_out_of_the_guests_boot_as_it_is(uri: str, guest: LabGuest) -> None:
    started = time.monotonic()
    out = dom0(uri, "image", "kernel", str(IMAGE), "-o", str(OUT), "--sync", timeout=300).stdout
    trace(f"image kernel --sync, first ({time.monotonic() - started:.1f} s):\n{out}")
    lines = out.splitlines()
    assert lines[0] == f"kernel {KV} from the guest's /boot (whole disk) into {OUT}:", out
    assert f"  copied    /boot/vmlinuz-{KV} -> {OUT}/vmlinuz-{KV}" in lines, out
    assert f"  copied    /boot/initrd.img-{KV} -> {OUT}/initrd.img-{KV}" in lines, out
    # byte for byte what the guest has: the uncompressed ELF stays one (nothing unpacked or repacked)
    assert _sha256(OUT / f"vmlinuz-{KV}") == _sha256(GUEST_KERNEL)
    assert (OUT / f"vmlinuz-{KV}").read_bytes()[:4] == b"\x7fELF"
    assert _sha256(OUT / f"initrd.img-{KV}") == _sha256(GUEST_INITRAMFS)
    assert os.readlink(OUT / "vmlinuz") == f"vmlinuz-{KV}"
    assert os.readlink(OUT / "initrd.img") == f"initrd.img-{KV}"
    cmdline = f"root=/dev/xvda ro {GRUB_ARGS}"
    PRINTED["xl"] = _block(out, "xl:")
    PRINTED["libvirt"] = _block(out, "libvirt (in <os>):")
    assert PRINTED["xl"] == [f'kernel = "{OUT}/vmlinuz"', f'ramdisk = "{OUT}/initrd.img"', f'extra = "{cmdline}"']
    assert PRINTED["libvirt"] == [
        f"<kernel>{OUT}/vmlinuz</kernel>",
        f"<initrd>{OUT}/initrd.img</initrd>",
        f"<cmdline>{cmdline}</cmdline>",
    ]


def test_the_guest_boots_from_the_printed_boot_lines(uri: str, guest: LabGuest) -> None:
    if not PRINTED:
        pytest.skip("image kernel printed no boot lines")
    text = definition(guest)
    if uri == "xl://":
        text = xl_replace(text, drop=("kernel", "ramdisk", "extra", "vif"), add=PRINTED["xl"])
    else:
        text = xml_replace(
            text, drop=("kernel", "initrd", "cmdline", "interface"), after="<type ", add=PRINTED["libvirt"]
        )
    started = time.monotonic()
    create((guest, text))
    # mode=idle came from the guest's own grub.cfg, through the printed command line
    guest.wait_for_console("dom0test ready mode=idle")
    trace(f"{guest.name}: created and ready in {time.monotonic() - started:.1f} s from:\n{text}")


def test_a_second_sync_copies_nothing_and_says_so(uri: str, guest: LabGuest) -> None:
    if not PRINTED:
        pytest.skip("image kernel copied nothing the first time")
    before = {p.name: os.lstat(p) for p in OUT.iterdir()}
    started = time.monotonic()
    out = dom0(uri, "image", "kernel", str(IMAGE), "-o", str(OUT), "--sync", timeout=300).stdout
    trace(f"image kernel --sync, second ({time.monotonic() - started:.1f} s):\n{out}")
    assert out.splitlines()[0] == (
        f"up to date: kernel {KV} in {OUT} already matches the guest's /boot (whole disk)"
    ), out
    assert "copied" not in out, out
    after = {p.name: os.lstat(p) for p in OUT.iterdir()}
    assert sorted(after) == sorted(before)
    for name, st in after.items():  # not rewritten: the same inodes, untouched since the first run
        assert (st.st_ino, st.st_mtime_ns) == (before[name].st_ino, before[name].st_mtime_ns), name
