"""Architecture, release numbers, osinfo id and package tool, as virt-inspector reports them, from guest trees."""

from __future__ import annotations

import json
import os
from pathlib import Path

import ostrees
import pytest
from unitkit import dom0

from dom0.image import osfacts
from dom0.image.osinspect import inspect_tree
from dom0.image.tree import MAX_CONFIG_READ, DirectoryTree

DEBIAN_OS_RELEASE_NO_VERSION = 'PRETTY_NAME="Debian GNU/Linux bookworm/sid"\nNAME="Debian GNU/Linux"\nID=debian\n'


def _inspect_json(root: Path) -> dict[str, object]:
    r = dom0("image", "inspect", str(root), "--json")
    assert r.rc == 0, r.err
    (system,) = json.loads(r.out)["operating_systems"]
    assert isinstance(system, dict)
    return system


def test_debian12_facts_in_json_and_text(tmp_path: Path) -> None:
    root = ostrees.debian12().build(tmp_path / "deb")
    system = _inspect_json(root)
    assert (system["arch"], system["major_version"], system["minor_version"]) == ("x86_64", 12, 5)
    assert (system["point_release"], system["osinfo"], system["package_management"]) == ("12.5", "debian12", "apt")
    r = dom0("image", "inspect", str(root))
    assert r.rc == 0, r.err
    assert (
        "  operating system on directory: Debian 12.5 (debian12, x86_64), deb, apt: "
        "use dpkg/apt-get/apt, not rpm/yum" in r.out.splitlines()
    )


def test_no_elf_binary_means_no_arch_and_the_text_says_less(tmp_path: Path) -> None:
    root = ostrees.ubuntu8().build(tmp_path / "u8")
    assert _inspect_json(root)["arch"] is None
    r = dom0("image", "inspect", str(root))
    assert "  operating system on directory: Ubuntu 8.04.4 (ubuntu8.04), deb, apt: use dpkg/apt-get, not rpm/yum" in (
        r.out.splitlines()
    )


@pytest.mark.parametrize(
    ("head", "arch"),
    [
        (ostrees.elf_header("x86_64"), "x86_64"),
        (ostrees.elf_header("i386", e_type=2), "i386"),
        (ostrees.elf_header("ppc64"), "ppc64"),
        (ostrees.elf_header("ppc64le"), "ppc64le"),
        (ostrees.elf_header("s390x"), "s390x"),
        (ostrees.elf_header("riscv64"), "riscv64"),
        (ostrees.elf_header("arm"), "arm"),
        (ostrees.elf_header("x86_64")[:19], None),  # cut short
        (b"\x7fELF\x03" + ostrees.elf_header("x86_64")[5:], None),  # no such ELF class
        (ostrees.elf_header("x86_64")[:5] + b"\x07" + ostrees.elf_header("x86_64")[6:], None),  # no byte order
        (ostrees.elf_header("x86_64", e_type=4), None),  # a core dump names no installed architecture
        (ostrees.elf_header("x86_64")[:18] + b"\xff\xff" + bytes(44), None),  # unknown machine
        (b"#!/bin/sh\n" + bytes(54), None),
    ],
)
def test_elf_headers(head: bytes, arch: str | None) -> None:
    assert osfacts.elf_arch(head) == arch


def test_hostile_binaries_are_skipped_for_the_next_one(tmp_path: Path) -> None:
    """/bin/sh in a symlink loop, /bin/bash a short file, /bin/ls a FIFO: /usr/bin/env still names the arch."""
    spec = ostrees.debian12()
    del spec.files["/bin/dash"]
    spec.files["/bin/bash"] = b"\x7fELF\x02\x01"
    spec.files["/usr/bin/env"] = ostrees.elf_header("aarch64")
    spec.links["/bin/sh"] = "/bin/sh2"
    spec.links["/bin/sh2"] = "/bin/sh"
    root = spec.build(tmp_path / "deb")
    os.mkfifo(root / "bin/ls")
    system = _inspect_json(root)
    assert system["arch"] == "aarch64"
    assert system["distro"] == "debian"


def test_sh_pointing_out_of_the_guest_is_read_inside_it(tmp_path: Path) -> None:
    """An absolute /bin/sh -> /usr/bin/busybox is the guest's busybox, never the host's file of that name."""
    spec = ostrees.alpine()
    del spec.files["/bin/busybox"]
    spec.files["/usr/bin/busybox"] = ostrees.elf_header("s390x")
    spec.links["/bin/sh"] = "/../../../../usr/bin/busybox"
    system = _inspect_json(spec.build(tmp_path / "alp"))
    assert system["arch"] == "s390x"


def test_huge_debian_version_is_not_read_and_os_release_gives_the_major(tmp_path: Path) -> None:
    spec = ostrees.debian12()
    spec.files["/etc/debian_version"] = "1" * (MAX_CONFIG_READ + 1) + "\n"
    system = _inspect_json(spec.build(tmp_path / "deb"))
    assert (system["major_version"], system["minor_version"], system["point_release"]) == (12, 0, "12")
    assert system["osinfo"] == "debian12"
    assert any("/etc/debian_version not read" in n for n in system["notes"])  # type: ignore[attr-defined]


def test_long_digit_runs_in_debian_version_make_no_number(tmp_path: Path) -> None:
    """60 KiB of digits fits the read limit but is no release: no giant integer, no traceback."""
    spec = ostrees.debian4()
    spec.files["/etc/debian_version"] = "9" * 60_000 + "\n"
    system = _inspect_json(spec.build(tmp_path / "deb"))
    assert (system["major_version"], system["minor_version"], system["point_release"]) == (None, None, None)
    assert system["osinfo"] is None


def test_debian_testing_takes_its_number_from_the_codename(tmp_path: Path) -> None:
    spec = ostrees.debian12()
    spec.files["/usr/lib/os-release"] = DEBIAN_OS_RELEASE_NO_VERSION
    spec.files["/etc/debian_version"] = "bookworm/sid\n"
    system = inspect_tree(DirectoryTree(spec.build(tmp_path / "sid")))
    assert system is not None
    assert (system.major_version, system.minor_version, system.point_release) == (12, 0, None)
    assert system.osinfo == "debian12"


@pytest.mark.parametrize(
    ("distro", "major", "minor", "osinfo"),
    [
        ("debian", 12, 15, "debian12"),
        ("debian", 3, 1, "debian3.1"),
        ("centos", 5, 3, "centos5.3"),
        ("centos", 7, 9, "centos7.0"),
        ("centos", 8, 5, "centos8"),
        ("rhel", 9, 2, "rhel9.2"),
        ("fedora", 39, 0, "fedora39"),
        ("sles", 12, 0, "sles12"),
        ("sles", 12, 5, "sles12sp5"),
        ("ubuntu", 22, 4, "ubuntu22.04"),
        ("opensuse-leap", 15, 5, "opensuse15.5"),
        ("alpine", 3, 19, "alpinelinux3.19"),
        ("arch", 0, 0, "archlinux"),
        ("unknown", 1, 0, None),
        ("debian", None, None, None),
    ],
)
def test_osinfo_rule_without_a_database(
    distro: str, major: int | None, minor: int | None, osinfo: str | None, tmp_path: Path
) -> None:
    assert osfacts.osinfo_id(distro, major, minor, db=tmp_path / "no-osinfo") == osinfo


def _osinfo_file(db: Path, vendor: str, name: str, body: str) -> None:
    (db / vendor).mkdir(parents=True, exist_ok=True)
    (db / vendor / name).write_text(f'<?xml version="1.0"?>\n<libosinfo version="0.0.1">{body}</libosinfo>\n')


def test_osinfo_database_names_a_release_the_rule_does_not(tmp_path: Path) -> None:
    db = tmp_path / "os"
    _osinfo_file(db, "almalinux.org", "almalinux-9.xml",
                 '<os id="http://almalinux.org/almalinux/9"><short-id>almalinux9</short-id>'
                 "<version>9</version><distro>almalinux</distro></os>")  # fmt: skip
    _osinfo_file(db, "debian.org", "debian-4.xml",
                 '<os id="http://debian.org/debian/4"><short-id>debian4</short-id><short-id>debianetch</short-id>'
                 "<version>4.0</version><distro>debian</distro></os>")  # fmt: skip
    assert osfacts.osinfo_id("almalinux", 9, 3, db=db) == "almalinux9"
    assert osfacts.osinfo_id("debian", 4, 0, db=db) == "debian4"
    # A release newer than the database keeps libguestfs's id, as virt-inspector reports it.
    assert osfacts.osinfo_id("debian", 12, 15, db=db) == "debian12"


def test_hostile_osinfo_database_files_are_skipped(tmp_path: Path) -> None:
    db = tmp_path / "os"
    _osinfo_file(db, "x.org", "almalinux-8.xml", "<os><short-id>broken" * 10)
    _osinfo_file(db, "x.org", "almalinux-9.xml", "<os><short-id>big9</short-id><version>9</version>"
                 "<distro>almalinux</distro></os>" + " " * (300 * 1024))  # fmt: skip
    os.symlink("/etc/passwd", db / "x.org" / "almalinux-10.xml")
    os.mkfifo(db / "x.org" / "almalinux-11.xml")
    assert osfacts.osinfo_id("almalinux", 9, 3, db=db) == "almalinux9.3"  # the rule's id: nothing usable read


def test_host_osinfo_database_when_installed() -> None:
    if not osfacts.OSINFO_DB.is_dir():
        pytest.skip("osinfo-db is not installed on this host")
    assert osfacts.osinfo_id("centos", 5, 3) == "centos5.3"
    assert osfacts.osinfo_id("debian", 12, 15) == "debian12"
    assert osfacts.osinfo_id("almalinux", 9, 3) == "almalinux9"
    assert osfacts.osinfo_id("ol", 6, 5) == "ol6.5"  # libguestfs's rule alone says oraclelinux6.5


@pytest.mark.parametrize(
    ("distro", "major", "fmt", "tool"),
    [
        ("centos", 4, "rpm", "up2date"),
        ("centos", 7, "rpm", "yum"),
        ("rhel", 9, "rpm", "dnf"),
        ("sles", 15, "rpm", "zypper"),
        ("linuxmint", 21, "deb", "apt"),
        ("gentoo", 2, "ebuild", "portage"),
        ("unknown", None, None, None),
    ],
)
def test_package_management(distro: str, major: int | None, fmt: str | None, tool: str | None, tmp_path: Path) -> None:
    tree = DirectoryTree(tmp_path)
    assert osfacts.package_management(distro, major, fmt, tree) == tool


def test_fedora_without_dnf_installed_says_yum_as_libguestfs_does(tmp_path: Path) -> None:
    spec = ostrees.fedora39()
    del spec.links["/usr/bin/dnf"]
    system = inspect_tree(DirectoryTree(spec.build(tmp_path / "f39")))
    assert system is not None
    assert system.package_management == "yum"


def test_real_debootstrapped_debian_12() -> None:
    """The labs' debootstrapped bookworm (read only): dash's ELF header, /etc/debian_version's point release."""
    roots = sorted(Path("/var/cache/dom0-tests").glob("debootstrap-bookworm-*/"))
    if not roots:
        pytest.skip("no debootstrapped Debian 12 cached on this host (tests/data/ostrees.debootstrap_tree builds one)")
    root = roots[0]
    point = (root / "etc/debian_version").read_text().strip()
    system = _inspect_json(root)
    assert system["arch"] == "x86_64"
    assert (system["major_version"], system["minor_version"]) == tuple(int(n) for n in point.split("."))
    assert (system["point_release"], system["osinfo"], system["package_management"]) == (point, "debian12", "apt")
