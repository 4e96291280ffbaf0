"""`dom0 image kernel`: copying the guest's kernel and initrd out of its /boot, and the boot lines it prints."""

from __future__ import annotations

import json
import os
from pathlib import Path

import imagebuild
import ostrees
import pytest
from unitkit import dom0

from dom0.image.kernels import Kernel, choose_kernel, find_kernels
from dom0.image.tree import DirectoryTree

MiB = 1024 * 1024
BOOT_UUID = "0d0e0000-0000-4000-8000-0000000000b1"
ROOT_UUID = "0d0e0000-0000-4000-8000-0000000000b2"


def test_sles_convenience_links_are_not_extra_kernels(tmp_path: Path) -> None:
    tree = DirectoryTree(ostrees.sles10().build(tmp_path / "sles"))
    assert find_kernels(tree) == (
        Kernel("2.6.16.60-0.21-xen", "/boot/vmlinuz-2.6.16.60-0.21-xen", "/boot/initrd-2.6.16.60-0.21-xen"),
    )


def test_choose_kernel_by_version_or_newest() -> None:
    kernels = (Kernel("6.1.0-10-amd64", "/boot/vmlinuz-6.1.0-10-amd64", None), Kernel("6.1.0-9-amd64", "/b/v", None))
    assert choose_kernel(kernels, None).version == "6.1.0-10-amd64"
    assert choose_kernel(kernels, "6.1.0-9-amd64").kernel == "/b/v"
    with pytest.raises(Exception, match=r"no kernel 5\.10 in the guest's /boot"):
        choose_kernel(kernels, "5.10")


def test_kernel_from_a_directory_then_sync(tmp_path: Path) -> None:
    guest = ostrees.debian12().build(tmp_path / "guest")
    out = tmp_path / "kernels"
    r = dom0("image", "kernel", str(guest), "-o", str(out))
    assert r.rc == 0, r.err
    assert (out / "vmlinuz-6.1.0-10-amd64").read_bytes() == ostrees.KERNEL_BYTES + b"vmlinuz-6.1.0-10-amd64"
    assert (out / "initrd.img-6.1.0-10-amd64").read_bytes() == ostrees.INITRD_BYTES + b"initrd.img-6.1.0-10-amd64"
    assert os.readlink(out / "vmlinuz") == "vmlinuz-6.1.0-10-amd64"
    assert os.readlink(out / "initrd.img") == "initrd.img-6.1.0-10-amd64"
    assert f"<kernel>{out}/vmlinuz</kernel>" in r.out
    assert f"<initrd>{out}/initrd.img</initrd>" in r.out
    assert f'kernel = "{out}/vmlinuz"' in r.out
    assert f'ramdisk = "{out}/initrd.img"' in r.out
    assert 'extra = "root=UUID=0b4e2a8c-1df3-4a4f-9a43-2a7c0a0e51c1 ro"' in r.out
    assert sorted(p.name for p in out.iterdir()) == [
        "initrd.img", "initrd.img-6.1.0-10-amd64", "vmlinuz", "vmlinuz-6.1.0-10-amd64",
    ]  # fmt: skip

    before = (out / "vmlinuz-6.1.0-10-amd64").stat().st_ino
    r = dom0("image", "kernel", str(guest), "-o", str(out), "--sync")
    assert r.rc == 0, r.err
    assert r.out.startswith("up to date: kernel 6.1.0-10-amd64")
    assert (out / "vmlinuz-6.1.0-10-amd64").stat().st_ino == before

    # The guest upgrades its kernel: --sync copies the new one and moves the links, the definition stays valid.
    (guest / "boot/vmlinuz-6.1.0-11-amd64").write_bytes(b"new kernel")
    (guest / "boot/initrd.img-6.1.0-11-amd64").write_bytes(b"new initrd")
    r = dom0("image", "kernel", str(guest), "-o", str(out), "--sync", "--json")
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    assert doc["version"] == "6.1.0-11-amd64"
    assert doc["up_to_date"] is False
    assert doc["kernel"] == {"guest": "/boot/vmlinuz-6.1.0-11-amd64", "path": f"{out}/vmlinuz-6.1.0-11-amd64",
                             "copied": True}  # fmt: skip
    assert doc["links"] == {"kernel": f"{out}/vmlinuz", "initrd": f"{out}/initrd.img"}
    assert doc["root"] == "UUID=0b4e2a8c-1df3-4a4f-9a43-2a7c0a0e51c1"
    assert (out / "vmlinuz").read_bytes() == b"new kernel"

    # Same size, different bytes: still copied (the hash is compared, not only the size).
    (guest / "boot/vmlinuz-6.1.0-11-amd64").write_bytes(b"NEW KERNEL")
    r = dom0("image", "kernel", str(guest), "-o", str(out), "--sync")
    assert r.rc == 0, r.err
    assert "copied    /boot/vmlinuz-6.1.0-11-amd64" in r.out
    assert "unchanged /boot/initrd.img-6.1.0-11-amd64" in r.out
    assert (out / "vmlinuz").read_bytes() == b"NEW KERNEL"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_older_version_on_request(tmp_path: Path) -> None:
    guest = ostrees.centos53().build(tmp_path / "guest")
    r = dom0("image", "kernel", str(guest), "-o", str(tmp_path / "k"), "--version", "2.6.18-92.el5xen", "--json")
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    assert doc["version"] == "2.6.18-92.el5xen"
    assert doc["initrd"]["guest"] == "/boot/initrd-2.6.18-92.el5xen.img"
    assert doc["cmdline"] == "root=/dev/VolGroup00/LogVol00 ro"


def test_no_kernel_is_exit_1_with_a_hint(tmp_path: Path) -> None:
    guest = ostrees.rhel54().build(tmp_path / "guest")
    for f in (guest / "boot").iterdir():
        f.unlink()
    r = dom0("image", "kernel", str(guest), "-o", str(tmp_path / "k"))
    assert r.rc == 1
    assert r.err.splitlines()[0] == "dom0: error: no kernel found in the guest's /boot"
    assert "hint:" in r.err
    assert "Traceback" not in r.err
    assert not (tmp_path / "k").exists()


def test_not_an_os_directory(tmp_path: Path) -> None:
    r = dom0("image", "kernel", str(tmp_path), "-o", str(tmp_path / "k"))
    assert r.rc == 1
    assert "no operating system in this directory" in r.err


def _fc5_disk(tmp_path: Path) -> Path:
    """Fedora Core 5 as the seed had it: MBR at sector 63, /boot (LABEL=/boot) on 1, / (LABEL=/) on 2."""
    spec = ostrees.fedora_core5()
    tree = spec.build(tmp_path / "tree")
    boot = ostrees.split_boot(tree, tmp_path / "boot")
    img = imagebuild.sparse(tmp_path / "fc5.img", 96 * MiB)
    imagebuild.sfdisk(img, "label: dos\nstart=63, size=32768, type=83, bootable\nstart=32831, type=83\n")
    imagebuild.mkfs("ext3", tmp_path / "p1", 32768 * 512, BOOT_UUID, "/boot", tree=boot)
    imagebuild.mkfs("ext3", tmp_path / "p2", 96 * MiB - 32831 * 512, ROOT_UUID, "/", tree=tree)
    imagebuild.place(img, 63 * 512, tmp_path / "p1")
    imagebuild.place(img, 32831 * 512, tmp_path / "p2")
    return img


def test_kernel_from_a_separate_boot_partition_of_an_image(tmp_path: Path) -> None:
    img = _fc5_disk(tmp_path)
    out = tmp_path / "k"
    r = dom0("image", "kernel", str(img), "-o", str(out), "--json")
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    assert doc["boot"] == "partition 1"
    assert doc["version"] == "2.6.20-1.2320.fc5"
    assert (out / "vmlinuz-2.6.20-1.2320.fc5").read_bytes() == ostrees.KERNEL_BYTES + b"vmlinuz-2.6.20-1.2320.fc5"
    assert (out / "initrd.img").read_bytes() == ostrees.INITRD_BYTES + b"initrd-2.6.20-1.2320.fc5.img"
    assert doc["root"] == "LABEL=/"
    assert doc["xl"] == f'kernel = "{out}/vmlinuz"\nramdisk = "{out}/initrd.img"\nextra = "root=LABEL=/ ro"'

    r = dom0("image", "inspect", str(img), "--json")
    assert r.rc == 0, r.err
    (system,) = json.loads(r.out)["operating_systems"]
    expected = ostrees.fedora_core5().expected
    assert system["distro"] == "fedora"
    assert system["version"] == "5"
    assert system["hostname"] == expected["hostname"]
    assert system["mountpoints"] == {"/": "partition 2", "/boot": "partition 1"}
    assert system["kernels"] == expected["kernels"]
