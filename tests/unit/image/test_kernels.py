"""`dom0 image kernel`: copying the guest's kernel and initrd out of its /boot, and the boot lines it prints."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import imagebuild
import ostrees
import pytest
from unitkit import dom0

from dom0 import run
from dom0.errors import Dom0Error
from dom0.image import bootcopy
from dom0.image.bootcopy import MAX_BOOT_FILE
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

    # Same size, different bytes: still copied (the bytes are compared, not only the size).
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


# --- hostile guests: what they put in their fstab and /boot never reaches the lines an admin pastes ---------------


def _with_root(tmp_path: Path, root_field: str) -> Path:
    guest = ostrees.debian12().build(tmp_path / "guest")
    (guest / "etc/fstab").write_text(f"{root_field} / ext4 defaults 0 1\n")
    return guest


@pytest.mark.parametrize(
    "root_field",
    [
        # fstab's octal escapes: \012 is a newline once the field is read, \040 a space.
        '/dev/xvda1"\\012bootloader="/bin/sh',
        "/dev/xvda1</cmdline><initrd>/etc/shadow</initrd><cmdline>",
        "LABEL=root\\040init=/bin/sh",
    ],
)
def test_a_crafted_fstab_root_is_left_out_of_the_boot_lines(tmp_path: Path, root_field: str) -> None:
    guest = _with_root(tmp_path, root_field)
    out = tmp_path / "k"
    r = dom0("image", "kernel", str(guest), "-o", str(out))
    assert r.rc == 0, r.err
    notes, boot_lines = r.out.split("libvirt (in <os>):\n")
    assert boot_lines == (
        f"  <kernel>{out}/vmlinuz</kernel>\n  <initrd>{out}/initrd.img</initrd>\n"
        f'xl:\n  kernel = "{out}/vmlinuz"\n  ramdisk = "{out}/initrd.img"\n'
    )
    (note,) = [line for line in notes.splitlines() if line.startswith("note: ")]
    assert note.endswith("which is not a device name dom0 puts on a kernel command line: add root=... yourself")

    doc = json.loads(dom0("image", "kernel", str(guest), "-o", str(out), "--json").out)
    assert doc["root"] is None
    assert doc["cmdline"] is None
    assert "extra" not in doc["xl"]
    assert "<cmdline>" not in doc["libvirt"]
    assert any("not a device name" in note for note in doc["notes"])


def test_ordinary_root_devices_are_kept(tmp_path: Path) -> None:
    for device in ("/dev/mapper/vg--data-root", "PARTUUID=0d0e0000-02", "LABEL=/", "/dev/xvda1"):
        guest = _with_root(tmp_path / device.replace("/", "_"), device)
        doc = json.loads(dom0("image", "kernel", str(guest), "-o", str(tmp_path / "k"), "--json").out)
        assert doc["cmdline"] == f"root={device} ro"
        assert doc["notes"] == []


def test_an_output_path_is_escaped_for_xml_and_left_out_of_xl_when_it_cannot_be_quoted(tmp_path: Path) -> None:
    guest = ostrees.debian12().build(tmp_path / "guest")
    r = dom0("image", "kernel", str(guest), "-o", str(tmp_path / "a&b<c"))
    assert r.rc == 0, r.err
    assert f"  <kernel>{tmp_path}/a&amp;b&lt;c/vmlinuz</kernel>\n" in r.out
    assert f'  kernel = "{tmp_path}/a&b<c/vmlinuz"\n' in r.out

    r = dom0("image", "kernel", str(guest), "-o", str(tmp_path / 'q"d'))
    assert r.rc == 0, r.err
    boot_lines = r.out.split("libvirt (in <os>):\n")[1]
    assert boot_lines == (
        "  <cmdline>root=UUID=0b4e2a8c-1df3-4a4f-9a43-2a7c0a0e51c1 ro</cmdline>\n"
        'xl:\n  extra = "root=UUID=0b4e2a8c-1df3-4a4f-9a43-2a7c0a0e51c1 ro"\n'
    )
    assert "note: kernel left out of the lines below" in r.out
    assert "note: ramdisk left out of the lines below" in r.out


def test_kernel_names_that_are_not_plain_names_are_not_kernels(tmp_path: Path) -> None:
    guest = ostrees.debian12().build(tmp_path / "guest")
    (guest / 'boot/vmlinuz-9.9"\x1b]0;x\x07').write_bytes(b"not a kernel")
    (guest / "boot/vmlinuz-9.8 init=sh").write_bytes(b"not a kernel")
    assert [k.version for k in find_kernels(DirectoryTree(guest))] == ["6.1.0-10-amd64", "6.1.0-9-amd64"]


def test_terminal_escapes_in_the_fstab_are_shown_escaped(tmp_path: Path) -> None:
    guest = ostrees.debian12().build(tmp_path / "guest")
    (guest / "etc/fstab").write_text(
        "/dev/xvda1\x1b]0;pwned\x07 / ext4 defaults 0 1\nLABEL=b\x1b[2J /boot ext4 defaults\n"
    )
    r = dom0("image", "kernel", str(guest), "-o", str(tmp_path / "k"))
    assert r.rc == 0, r.err
    assert "\x1b" not in r.out
    assert "\x07" not in r.out
    assert "(LABEL=b\\x1b[2J)" in r.out


# --- sizes and names in the way -------------------------------------------------------------------------------------


def test_a_kernel_over_the_cap_is_refused_before_a_byte_is_copied(tmp_path: Path) -> None:
    guest = ostrees.debian12().build(tmp_path / "guest")
    with (guest / "boot/vmlinuz-6.1.0-10-amd64").open("r+b") as fh:
        fh.truncate(MAX_BOOT_FILE + 1)  # sparse: costs nothing on disk
    out = tmp_path / "k"
    r = dom0("image", "kernel", str(guest), "-o", str(out))
    assert r.rc == 1
    assert "Traceback" not in r.err
    lines = r.err.splitlines()
    assert len(lines) == 2, r.err
    assert lines[0] == (
        "dom0: error: /boot/vmlinuz-6.1.0-10-amd64 in the guest is 512.0 MiB, more than the 512.0 MiB a kernel or "
        "initrd can be"
    )
    assert lines[1].strip().startswith("hint: ")
    assert list(out.iterdir()) == []


class _GrowingTree:
    """A guest whose file says it is small and then reads on and on (a file grown after its size was read)."""

    name = "growing"

    def size(self, path: str) -> int:
        return 10

    def open(self, path: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(b"x" * 5000))


def test_a_copy_stops_at_the_cap_whatever_the_size_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bootcopy, "MAX_BOOT_FILE", 1000)
    with pytest.raises(Dom0Error, match="more than the 1000 B a kernel or initrd can be"):
        bootcopy.copy_out(_GrowingTree(), "/boot/vmlinuz-1", tmp_path, sync=False)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_sync_against_a_growing_guest_file_reads_no_more_than_its_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the copy from the last run matches the size the guest's inode claims and its first bytes: --sync compares
    # byte for byte, sees the guest's file go on, and copies it afresh (stopped at the cap)
    monkeypatch.setattr(bootcopy, "MAX_BOOT_FILE", 1000)
    (tmp_path / "vmlinuz-1").write_bytes(b"x" * 10)
    with pytest.raises(Dom0Error, match="more than the 1000 B a kernel or initrd can be"):
        bootcopy.copy_out(_GrowingTree(), "/boot/vmlinuz-1", tmp_path, sync=True)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vmlinuz-1"]


@pytest.mark.parametrize("in_the_way", ["vmlinuz-6.1.0-10-amd64", "initrd.img-6.1.0-10-amd64", "vmlinuz", "initrd.img"])
def test_a_directory_in_the_way_is_a_one_line_error_and_nothing_is_written(tmp_path: Path, in_the_way: str) -> None:
    guest = ostrees.debian12().build(tmp_path / "guest")
    out = tmp_path / "k"
    (out / in_the_way).mkdir(parents=True)
    r = dom0("image", "kernel", str(guest), "-o", str(out))
    assert r.rc == 1
    assert "Traceback" not in r.err
    lines = [line.strip() for line in r.err.splitlines()]
    assert lines == [
        f"dom0: error: {out}/{in_the_way} is a directory: dom0 would replace it with the guest's file",
        "hint: move it out of the way, or give -o another directory",
    ], r.err
    assert [p.name for p in out.iterdir()] == [in_the_way]
    assert list((out / in_the_way).iterdir()) == []


def test_a_base_image_elsewhere_is_read_only_where_the_admin_allows(tmp_path: Path) -> None:
    """image kernel opens images as image inspect does: a qcow2 whose base lies in another directory is refused
    until --backing-dir names that directory."""
    base = _fc5_disk(tmp_path)
    guests = tmp_path / "guests"
    guests.mkdir()
    top = guests / "fc5.qcow2"
    run.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base), str(top)])
    out = tmp_path / "k"
    r = dom0("image", "kernel", str(top), "-o", str(out))
    assert r.rc == 1
    assert "--backing-dir" in r.err
    assert not out.exists() or not any(out.iterdir())
    r = dom0("image", "kernel", str(top), "-o", str(out), "--backing-dir", str(tmp_path))
    assert r.rc == 0, r.err
    assert (out / "vmlinuz-2.6.20-1.2320.fc5").exists()


def test_the_guests_own_boot_arguments_follow_root_but_only_plain_words(tmp_path: Path) -> None:
    guest = _with_root(tmp_path, "/dev/xvda1")
    version = json.loads(dom0("image", "inspect", str(guest), "--json").out)["operating_systems"][0]["kernels"][0]
    name = version["kernel"].rsplit("/", 1)[-1]
    (guest / "boot/grub").mkdir(parents=True, exist_ok=True)
    (guest / "boot/grub/grub.cfg").write_text(
        "menuentry 'Debian' {\n"
        f'\tlinux\t/boot/{name} root=/dev/sda1 ro quiet console=ttyS0,115200 init="/bin/sh" BOOT_IMAGE=/x\n'
        "}\n"
    )
    doc = json.loads(dom0("image", "kernel", str(guest), "-o", str(tmp_path / "k"), "--json").out)
    # root= from the fstab (what the guest mounts), the loader's console= and quiet kept, the quoted word left out
    assert doc["cmdline"] == "root=/dev/xvda1 ro quiet console=ttyS0,115200"
