"""End to end on a real Debian 12 made by debootstrap: packed into a partitioned image, inspected, kernel copied."""

from __future__ import annotations

import json
from pathlib import Path

import imagebuild
import ostrees
import pytest
from unitkit import dom0

MiB = 1024 * 1024
KERNEL = "vmlinuz-6.1.0-28-amd64"
INITRD = "initrd.img-6.1.0-28-amd64"


@pytest.fixture(scope="module")
def debian_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MBR at 2048: partition 1 is /boot (ext4, a kernel and initrd), partition 2 the debootstrapped / (ext4)."""
    tree = ostrees.debootstrap_tree()
    if tree is None:
        pytest.skip("debootstrap needs root and a Debian mirror (cached under /var/cache/dom0-tests once built)")
    base = tmp_path_factory.mktemp("deboot")
    boot = base / "boot"
    boot.mkdir()
    (boot / KERNEL).write_bytes(ostrees.KERNEL_BYTES + b"debian")
    (boot / INITRD).write_bytes(ostrees.INITRD_BYTES + b"debian")
    img = imagebuild.sparse(base / "debian.img", 640 * MiB)
    imagebuild.sfdisk(img, "label: dos\nstart=2048, size=64M, type=83, bootable\nstart=133120, type=83\n")
    imagebuild.mkfs("ext4", base / "p1", 64 * MiB, ostrees.DEBOOT_BOOT_UUID, "boot", tree=boot)
    imagebuild.mkfs("ext4", base / "p2", 640 * MiB - 133120 * 512, ostrees.DEBOOT_ROOT_UUID, "root", tree=tree)
    imagebuild.place(img, 2048 * 512, base / "p1")
    imagebuild.place(img, 133120 * 512, base / "p2")
    for part in ("p1", "p2"):
        (base / part).unlink()
    return img


def test_inspect_finds_debian_12(debian_image: Path) -> None:
    r = dom0("image", "inspect", str(debian_image), "--json")
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    (system,) = doc["operating_systems"]
    assert system["root"] == "partition 2"
    assert system["distro"] == "debian"
    assert system["version"] == "12"
    assert system["product_name"] == "Debian GNU/Linux 12 (bookworm)"
    assert system["package_format"] == "deb"
    assert system["package_tools"] == ["dpkg", "apt-get", "apt"]
    assert system["package_hint"] == "this is Debian 12: use dpkg/apt-get/apt, not rpm/yum"
    assert system["hostname"] == "deboot-guest"
    assert system["mountpoints"] == {"/": "partition 2", "/boot": "partition 1"}
    assert system["kernels"] == [
        {"version": "6.1.0-28-amd64", "kernel": f"/boot/{KERNEL}", "initrd": f"/boot/{INITRD}"}
    ]
    # systemd-sysv with no inittab: the getty on hvc0 comes from systemd when the kernel console is hvc0.
    assert system["console"]["hvc0"] is False
    assert any("systemd starts one on the kernel's console" in n for n in system["console"]["notes"])
    assert system["network"] == {"driver_aliases": {}, "notes": []}


def test_kernel_out_of_the_boot_partition(debian_image: Path, tmp_path: Path) -> None:
    r = dom0("image", "kernel", str(debian_image), "-o", str(tmp_path), "--json")
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    assert doc["boot"] == "partition 1"
    assert (tmp_path / KERNEL).read_bytes() == ostrees.KERNEL_BYTES + b"debian"
    assert doc["cmdline"] == f"root=UUID={ostrees.DEBOOT_ROOT_UUID} ro"
    r = dom0("image", "kernel", str(debian_image), "-o", str(tmp_path), "--sync")
    assert r.rc == 0, r.err
    assert r.out.startswith("up to date: kernel 6.1.0-28-amd64")
