"""Operating system inspection of distribution trees with their real release files, as directories and as ext4."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ostrees
import pytest
from unitkit import dom0

from dom0.image.kernels import version_key
from dom0.image.osinspect import (
    OperatingSystem,
    inspect_tree,
    is_os_root,
    match_filesystem,
    parse_fstab,
)
from dom0.image.probe import Filesystem
from dom0.image.tree import DirectoryTree, FilesystemTree

TREES = {make().name: make for make in ostrees.ALL}


def _check(system: OperatingSystem | None, expected: dict[str, Any], root: str) -> None:
    assert system is not None
    got = system.to_json()
    assert got["root"] == root
    for key in ("distro", "version", "product_name", "package_format", "package_tools", "package_hint", "hostname",
                "mountpoints", "kernels", "arch", "major_version", "minor_version", "point_release", "osinfo",
                "package_management"):  # fmt: skip
        assert got[key] == expected[key], key
    assert got["console"]["gettys"] == expected["console"]["gettys"]
    assert got["console"]["securetty"] == expected["console"]["securetty"]
    assert got["console"]["hvc0"] == ("hvc0" in expected["console"]["gettys"])
    assert got["console"]["xvc0"] == ("xvc0" in expected["console"]["gettys"])
    assert got["network"]["driver_aliases"] == expected["network"]["driver_aliases"]
    assert set(got) == {
        "root", "distro", "version", "product_name", "package_format", "package_tools", "package_hint", "hostname",
        "mountpoints", "kernels", "console", "network", "notes", "arch", "major_version", "minor_version",
        "point_release", "osinfo", "package_management",
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(TREES))
def test_directory_tree_of_each_distribution(name: str, tmp_path: Path) -> None:
    spec = TREES[name]()
    tree = DirectoryTree(spec.build(tmp_path / name))
    _check(inspect_tree(tree), spec.expected, "directory")


@pytest.mark.parametrize("name", ["fedora-core5", "centos53", "debian12", "sles10", "arch"])
def test_ext4_image_of_a_distribution(name: str, tmp_path: Path) -> None:
    spec = TREES[name]()
    image = ostrees.mkfs_ext4(spec.build(tmp_path / name), tmp_path / "root.img")
    tree = FilesystemTree(image.open("rb"), "ext4", name="root.img")
    _check(inspect_tree(tree, root="whole disk"), spec.expected, "whole disk")


def test_fedora_core_5_sentence_names_the_right_tools(tmp_path: Path) -> None:
    system = inspect_tree(DirectoryTree(ostrees.fedora_core5().build(tmp_path / "fc5")))
    assert system is not None
    assert system.package_hint == "this is Fedora Core 5: use rpm/yum, not dpkg/apt-get"


def test_tg3_alias_and_missing_xen_getty_are_flagged(tmp_path: Path) -> None:
    system = inspect_tree(DirectoryTree(ostrees.fedora_core5().build(tmp_path / "fc5")))
    assert system is not None
    (note,) = system.network.notes
    assert "eth0" in note
    assert "tg3" in note
    assert "xen-netfront" in note
    assert "/etc/modprobe.conf" in note
    assert any("no getty on hvc0 or xvc0" in n for n in system.console.notes)


def test_xen_ready_guest_has_no_warnings(tmp_path: Path) -> None:
    system = inspect_tree(DirectoryTree(ostrees.centos53().build(tmp_path / "c5")))
    assert system is not None
    assert system.network.notes == ()
    assert system.console.notes == ()


def test_getty_on_hvc0_without_securetty_entry_is_flagged(tmp_path: Path) -> None:
    system = inspect_tree(DirectoryTree(ostrees.ubuntu8().build(tmp_path / "u8")))
    assert system is not None
    assert system.console.notes == ("root cannot log in on hvc0: /etc/securetty does not list it",)


def test_old_release_files_without_os_release(tmp_path: Path) -> None:
    cases = {
        "/etc/redhat-release": ("Red Hat Enterprise Linux AS release 4 (Nahant Update 8)\n", "rhel", "4.8"),
        "/etc/debian_version": ("lenny/sid\n", "debian", "lenny/sid"),
    }
    for path, (text, distro, version) in cases.items():
        root = tmp_path / distro
        (root / "etc").mkdir(parents=True)
        (root / path.lstrip("/")).write_text(text)
        system = inspect_tree(DirectoryTree(root))
        assert system is not None
        assert (system.distro, system.version) == (distro, version)


def test_not_an_os_root(tmp_path: Path) -> None:
    (tmp_path / "grub").mkdir()
    (tmp_path / "vmlinuz-6.1.0-10-amd64").write_bytes(b"k")
    assert not is_os_root(DirectoryTree(tmp_path))
    assert inspect_tree(DirectoryTree(tmp_path)) is None


def test_version_order_is_not_text_order() -> None:
    assert version_key("2.6.18-128.el5") > version_key("2.6.18-92.el5")
    assert version_key("6.1.0-10-amd64") > version_key("6.1.0-9-amd64")
    assert version_key("2.6.24-gentoo-r10") > version_key("2.6.24-gentoo-r8")
    assert version_key("5.14.0-362.13.1.el9_3") > version_key("5.14.0-362.8.1.el9_3")


def _fs(location: str, uuid: str = "", label: str = "") -> Filesystem:
    return Filesystem(type="ext4", uuid=uuid, label=label, offset=0, size=1, location=location)


def test_fstab_devices_map_to_the_images_filesystems() -> None:
    filesystems = [
        _fs("partition 1", label="/boot"),
        _fs("partition 2", uuid="0b4e2a8c-1df3-4a4f-9a43-2a7c0a0e51c1"),
        _fs("logical volume VolGroup00/LogVol00"),
        _fs("logical volume vg-data/root"),
    ]
    fstab = parse_fstab(
        "LABEL=/boot /boot ext3 defaults 1 2\n"
        "UUID=0B4E2A8C-1DF3-4A4F-9A43-2A7C0A0E51C1 /srv ext4 defaults 0 0\n"
        "/dev/VolGroup00/LogVol00 / ext3 defaults 1 1\n"
        "/dev/mapper/vg--data-root /data ext4 defaults 0 0\n"
        "/dev/xvda1 /old ext3 defaults 0 0\n"
        "/dev/sdb1 /elsewhere ext3 defaults 0 0\n"
        "/dev/disk/by-label/nothing /x ext3 defaults 0 0\n"
    )
    located = [(e.mountpoint, m.location if (m := match_filesystem(e, filesystems)) else None) for e in fstab]
    assert located == [
        ("/boot", "partition 1"),
        ("/srv", "partition 2"),
        ("/", "logical volume VolGroup00/LogVol00"),
        ("/data", "logical volume vg-data/root"),
        ("/old", "partition 1"),
        ("/elsewhere", None),
        ("/x", None),
    ]


# --- text and sizes a hostile guest controls ------------------------------------------------------------------------


def test_terminal_escapes_from_guest_files_are_shown_escaped(tmp_path: Path) -> None:
    guest = ostrees.debian12().build(tmp_path / "guest")
    (guest / "etc/hostname").write_text("web\x1b]0;pwned\x07\n")
    release = (guest / "usr/lib/os-release").read_text()
    (guest / "usr/lib/os-release").write_text(release.replace('PRETTY_NAME="', 'PRETTY_NAME="\x1b[2J\x9b31m'))
    r = dom0("image", "inspect", str(guest))
    assert r.rc == 0, r.err
    assert "    hostname web\\x1b]0;pwned\\x07\n" in r.out
    assert "    release \\x1b[2J\\x9b31mDebian GNU/Linux 12 (bookworm)\n" in r.out
    assert not any(ch in r.out for ch in "\x1b\x07\x9b")

    # JSON carries the text as it is, with every control character escaped by the JSON encoder.
    r = dom0("image", "inspect", str(guest), "--json")
    assert r.rc == 0, r.err
    assert not any(ch in r.out for ch in "\x1b\x07\x9b")
    (system,) = json.loads(r.out)["operating_systems"]
    assert system["hostname"] == "web\x1b]0;pwned\x07"


def test_a_huge_config_file_is_reported_not_read(tmp_path: Path) -> None:
    guest = ostrees.debian12().build(tmp_path / "guest")
    with (guest / "etc/hostname").open("r+b") as fh:
        fh.truncate(50 * 1024 * 1024)  # 50 MiB of NULs, sparse
    r = dom0("image", "inspect", str(guest), "--json")
    assert r.rc == 0, r.err
    assert len(r.out) < 20_000
    (system,) = json.loads(r.out)["operating_systems"]
    assert system["hostname"] is None
    assert system["notes"] == [
        "/etc/hostname not read: 50.0 MiB, more than the 64.0 KiB a config file can be (the image may be damaged or "
        "hostile)"
    ]
    assert system["distro"] == "debian"
    r = dom0("image", "inspect", str(guest))
    assert r.rc == 0, r.err
    assert "    /etc/hostname not read: 50.0 MiB, more than the 64.0 KiB a config file can be" in r.out
