"""The facts virt-inspector reports per operating system, read the way libguestfs reads them, so the two compare.

- arch: the ELF header (class, byte order, e_machine) of a core binary, named as libguestfs names it (i386 for
  every x86 32-bit, x86_64, aarch64, arm, ppc64/ppc64le, s390x, riscv64, ...).
- major/minor version: libguestfs's order of release files (os-release, lsb-release, the Red Hat family's files,
  debian_version, SuSE-release, gentoo-release, alpine-release), each parsed as "N.M" or "N" (minor 0). Debian,
  CentOS and Rocky put only the major in os-release, so their own file gives the minor (debian_version "12.15").
- point_release: the most precise release the guest states ("12.15", "5.3", "3.19.1", "22.04.3").
- package_management: libguestfs's table (distribution and major version; dnf on Fedora only when installed).
- osinfo: libosinfo's short id by libguestfs's own rule (virt-inspector never consults the osinfo database), checked
  against the host's osinfo-db when that is installed: a release the database names differently (AlmaLinux 9.3 is
  almalinux9, Oracle Linux is ol) takes the database's id.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dom0.errors import Dom0Error
from dom0.image.tree import GuestTree

__all__ = [
    "OsFacts",
    "elf_arch",
    "find_arch",
    "first_line",
    "os_facts",
    "osinfo_id",
    "package_management",
    "parse_keyvals",
]


# --- release files' lines (shared with osinspect) ---------------------------------------------------------------


def first_line(text: str | None) -> str:
    """The first non-blank line of a release file, stripped; "" when there is none."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def _unquote(value: str) -> str:
    value = value.strip()
    try:
        parts = shlex.split(value, comments=False)
    except ValueError:
        return value.strip("\"'")
    return " ".join(parts) if parts else ""


def parse_keyvals(text: str) -> dict[str, str]:
    """KEY=value lines (os-release, lsb-release, sysconfig, SuSE-release's "KEY = value"), quotes removed."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = _unquote(value)
    return out


# What libguestfs looks at (bash, ls, echo, rm, sh); /bin/sh first, since on Alpine it is busybox, the one binary.
ARCH_BINARIES = ("/bin/sh", "/bin/bash", "/bin/ls", "/usr/bin/env", "/sbin/init")
# e_ident (16 bytes), e_type and e_machine: all an architecture needs.
_ELF_HEAD = 20

# e_machine -> libguestfs's name; the machines whose name depends on word size or byte order are in elf_arch.
_MACHINES = {
    3: "i386",  # EM_386: libguestfs says i386 for i386 to i686 alike
    6: "i386",  # EM_486
    62: "x86_64",
    183: "aarch64",
    40: "arm",
    20: "ppc",
    2: "sparc",
    18: "sparc",  # EM_SPARC32PLUS
    43: "sparc64",
    50: "ia64",
    258: "loongarch64",
}


def elf_arch(head: bytes) -> str | None:
    """The architecture an ELF header names, or None if `head` is not one (short, wrong class or type, unknown)."""
    if len(head) < _ELF_HEAD or head[:4] != b"\x7fELF":
        return None
    bits = {1: 32, 2: 64}.get(head[4])
    order: Literal["little", "big"] | None = "little" if head[5] == 1 else "big" if head[5] == 2 else None
    if bits is None or order is None:
        return None
    e_type = int.from_bytes(head[16:18], order)
    if e_type not in (1, 2, 3):  # relocatable, executable, shared object: what `file` names an architecture for
        return None
    machine = int.from_bytes(head[18:20], order)
    little = order == "little"
    if machine == 21:  # EM_PPC64: POWER8 and later run little-endian
        return "ppc64le" if little else "ppc64"
    if machine == 22:  # EM_S390
        return "s390x" if bits == 64 else "s390"
    if machine == 243:  # EM_RISCV
        return f"riscv{bits}"
    if machine == 8:  # EM_MIPS
        return ("mips64" if bits == 64 else "mips") + ("el" if little else "")
    return _MACHINES.get(machine)


def find_arch(tree: GuestTree) -> str | None:
    """The architecture of the first core binary found whose header is an ELF's; None when none is."""
    for path in ARCH_BINARIES:
        try:
            if not tree.is_file(path):
                continue
            with tree.open(path) as fh:
                head = fh.read(_ELF_HEAD)
        except (Dom0Error, OSError):
            continue  # a symlink loop, a damaged inode: try the next binary, as libguestfs does
        arch = elf_arch(head)
        if arch is not None:
            return arch
    return None


# --- versions -------------------------------------------------------------------------------------------------------

# Digit runs are bounded: a hostile "99999...9" must not become a huge integer.
_MAJOR_MINOR = re.compile(r"(?<!\d)(\d{1,9})\.(\d{1,9})(?!\d)")
_MAJOR = re.compile(r"(?<!\d)(\d{1,9})(?!\d)")
_POINT = re.compile(r"(?<![\w.])\d{1,9}(?:\.\d{1,9}){0,4}(?![\w.])")
# Debian testing and unstable name the next release: "bookworm/sid" is on its way to 12, so 12 and 0 here. libguestfs
# finds no number in it and reports 0 and 0 (osinfo "unknown"): the one place dom0 knowingly says more.
_DEBIAN_CODENAMES = {
    "etch": 4, "lenny": 5, "squeeze": 6, "wheezy": 7, "jessie": 8, "stretch": 9, "buster": 10, "bullseye": 11,
    "bookworm": 12, "trixie": 13, "forky": 14, "duke": 15,
}  # fmt: skip
_ROLLING = {"arch", "gentoo", "void", "manjaro", "endeavouros", "opensuse-tumbleweed"}


def _numbers(text: str) -> tuple[int, int] | None:
    """libguestfs's parse_version_from_major_minor: the first "N.M", else the first "N" with minor 0."""
    m = _MAJOR_MINOR.search(text)
    if m:
        return int(m.group(1)), int(m.group(2))
    m = _MAJOR.search(text)
    return (int(m.group(1)), 0) if m else None


def _point(text: str, numbers: tuple[int, int]) -> str | None:
    """The longest dotted release in `text` that begins with the major version found ("22.04.3" in a VERSION)."""
    best = None
    for m in _POINT.finditer(text):
        if int(m.group(0).split(".")[0]) == numbers[0] and (best is None or len(m.group(0)) > len(best)):
            best = m.group(0)
    return best


@dataclass(frozen=True)
class _Release:
    major: int | None
    minor: int | None
    point: str | None


_Read = Callable[[str], str | None]


def _from_os_release(read: _Read, distro: str) -> tuple[_Release | None, bool]:
    """(release, final): not final when libguestfs goes on to the distribution's own release file."""
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        text = read(path)
        if not text:
            continue
        keys = parse_keyvals(text)
        version_id = keys.get("VERSION_ID", "")
        numbers = _numbers(version_id) if version_id else None
        if numbers is None:
            if distro in _ROLLING:
                return _Release(0, 0, None), True
            return None, False
        release = _Release(*numbers, _point(f"{version_id} {keys.get('VERSION', '')}", numbers))
        # Debian, CentOS and Rocky write only the major here ("12"): their own file has the rest.
        return release, not (distro in ("debian", "centos", "rocky") and numbers[1] == 0)
    return None, False


def _release_numbers(read: _Read, distro: str) -> _Release:
    found, final = _from_os_release(read, distro)
    if final and found is not None:
        return found
    lsb = parse_keyvals(read("/etc/lsb-release") or "")
    if lsb.get("DISTRIB_ID") and (numbers := _numbers(lsb.get("DISTRIB_RELEASE", ""))):
        text = f"{lsb.get('DISTRIB_RELEASE', '')} {lsb.get('DISTRIB_DESCRIPTION', '')}"
        return _Release(*numbers, _point(text, numbers))
    for path in ("/etc/centos-release", "/etc/rocky-release", "/etc/redhat-release"):
        line = first_line(read(path))
        m = re.search(r"release\s+(\d{1,9}(?:\.\d{1,9}){0,4})(?![\d.])", line)
        if m:
            numbers = _numbers(m.group(1)) or (0, 0)
            update = re.search(r"Update (\d{1,9})", line)  # RHEL/CentOS 4: "release 4 (Nahant Update 8)"
            if update and "." not in m.group(1):
                numbers = (numbers[0], int(update.group(1)))
                return _Release(*numbers, f"{numbers[0]}.{numbers[1]}")
            return _Release(*numbers, m.group(1))
    if distro in ("debian", "unknown") or found is not None:
        line = first_line(read("/etc/debian_version"))
        numbers = _numbers(line) if line else None
        if numbers is not None:
            return _Release(*numbers, _point(line, numbers))
        codename = line.split("/", 1)[0].strip().lower() if line else ""
        if codename in _DEBIAN_CODENAMES:
            return _Release(_DEBIAN_CODENAMES[codename], 0, None)
    if found is not None:
        return found
    suse = read("/etc/SuSE-release")
    if suse:
        keys = parse_keyvals(suse)
        numbers = _numbers(keys.get("VERSION", "")) or _numbers(first_line(suse))
        if numbers is not None:
            patch = _MAJOR.fullmatch(keys.get("PATCHLEVEL", "").strip())
            if patch and numbers[1] == 0:
                numbers = (numbers[0], int(patch.group(1)))
            point = f"{numbers[0]}.{numbers[1]}" if patch and patch.group(1) != "0" else keys.get("VERSION")
            return _Release(*numbers, point if point and _POINT.fullmatch(point) else None)
    for path in ("/etc/gentoo-release", "/etc/alpine-release"):
        line = first_line(read(path))
        numbers = _numbers(line) if line else None
        if numbers is not None:
            return _Release(*numbers, _point(line, numbers))
    if distro in _ROLLING:
        return _Release(0, 0, None)
    return _Release(None, None, None)


# --- package management ---------------------------------------------------------------------------------------------

_REDHAT_LIKE = {"centos", "rhel", "rocky", "almalinux", "ol", "scientific", "redhat-based", "circle"}
_BY_FORMAT = {"deb": "apt", "apk": "apk", "pacman": "pacman", "ebuild": "portage"}


def package_management(distro: str, major: int | None, package_format: str | None, tree: GuestTree) -> str | None:
    """The tool libguestfs names for installing packages: apt, dnf, yum, up2date, zypper, apk, pacman, portage."""
    major = major or 0
    if distro == "fedora":
        if major >= 22 and _is_file(tree, "/usr/bin/dnf"):
            return "dnf"
        return "yum" if major >= 1 else None
    if distro in _REDHAT_LIKE:
        if major >= 8:
            return "dnf"
        return "yum" if major >= 5 else "up2date" if major >= 2 else None
    if distro == "amzn":
        return "dnf" if major >= 2022 else "yum" if major >= 1 else None
    if distro.startswith(("opensuse", "sles", "sled", "suse")):
        return "zypper"
    if distro in ("mageia", "mandriva"):
        return "urpmi"
    if distro == "void":
        return "xbps"
    return _BY_FORMAT.get(package_format or "")


def _is_file(tree: GuestTree, path: str) -> bool:
    try:
        return tree.is_file(path)
    except Dom0Error:
        return False


# --- osinfo ---------------------------------------------------------------------------------------------------------

# dom0's distribution IDs (os-release's) -> the distro names libguestfs and libosinfo use.
_OSINFO_DISTRO = {
    "arch": "archlinux", "alpine": "alpinelinux", "opensuse-leap": "opensuse", "opensuse-tumbleweed": "opensuse",
    "sled": "sles", "ol": "oraclelinux", "scientific": "scientificlinux", "void": "voidlinux", "kali": "kalilinux",
}  # fmt: skip
# The distributions libguestfs knows; any other gets no short id from the rule.
_RULE_DISTROS = {
    "centos", "circle", "rocky", "debian", "fedora", "mageia", "sles", "ubuntu", "archlinux", "gentoo", "voidlinux",
    "altlinux", "rhel", "opensuse", "alpinelinux", "oraclelinux", "scientificlinux", "linuxmint", "kalilinux",
    "mandriva", "openmandriva", "frugalware", "pldlinux", "slackware", "cirros", "coreos", "almalinux",
}  # fmt: skip

OSINFO_DB = Path("/usr/share/osinfo/os")
# osinfo-db's files are a few KiB each, one per release; more is not a database.
_DB_FILE_LIMIT = 256 * 1024
_DB_FILES_PER_RELEASE = 16
_DB_CACHE: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {}


def osinfo_rule(distro: str, major: int | None, minor: int | None) -> str | None:
    """libguestfs's built-in rule (guestfs_inspect_get_osinfo): debian12, centos5.3, centos7.0, rocky9, fedora39,
    sles10sp2, ubuntu22.04, opensuse42.3, alpinelinux3.19, archlinux; None where it says "unknown"."""
    name = _OSINFO_DISTRO.get(distro, distro)
    major, minor = major or 0, minor or 0
    if name not in _RULE_DISTROS:
        return None
    if name == "centos":
        if major >= 8:
            return f"centos{major}"
        if major == 7:
            return "centos7.0"
    elif name in ("circle", "rocky"):
        if major >= 8:
            return f"{name}{major}"
    elif name == "debian":
        if major >= 4:
            return f"debian{major}"
    elif name in ("fedora", "mageia"):
        return f"{name}{major}"
    elif name == "sles":
        return f"sles{major}" if minor == 0 else f"sles{major}sp{minor}"
    elif name == "ubuntu":
        return f"ubuntu{major}.{minor:02d}"
    elif name in ("archlinux", "gentoo", "voidlinux"):
        return name
    elif name == "altlinux":
        return f"alt{major}.{minor}" if major >= 8 else f"altlinux{major}.{minor}"
    return f"{name}{major}.{minor}" if major > 0 or minor > 0 else None


def _db_entries(name: str, versions: tuple[str, ...], db: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    """(distro, version, short ids) of the database's files for one release (NAME-VERSION.xml, osinfo-db's own
    naming), read once per process: a few small files rather than the whole database on every inspect."""
    key = f"{db}\0{name}\0{versions}"
    if key not in _DB_CACHE:
        wanted = {f"{name}-{v}.xml" for v in versions}
        try:
            vendors = sorted(e.path for e in os.scandir(db) if e.is_dir(follow_symlinks=False))
            paths = [e.path for vendor in vendors for e in os.scandir(vendor) if e.name in wanted]
        except OSError:
            paths = []
        entries = []
        for path in sorted(paths)[:_DB_FILES_PER_RELEASE]:
            entries.extend(_db_file(path))
        _DB_CACHE[key] = entries
    return _DB_CACHE[key]


def _db_file(path: str) -> list[tuple[str, str, tuple[str, ...]]]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _DB_FILE_LIMIT:
            return []
        data = os.read(fd, _DB_FILE_LIMIT + 1)
    except OSError:
        return []
    finally:
        os.close(fd)
    import xml.etree.ElementTree as ET  # only when the host has osinfo-db and a release is looked up

    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return []
    return [
        (os_el.findtext("distro") or "", os_el.findtext("version") or "",
         tuple(s.text for s in os_el.findall("short-id") if s.text))
        for os_el in root.iter("os")
    ]  # fmt: skip


def osinfo_id(distro: str, major: int | None, minor: int | None, db: Path | None = None) -> str | None:
    """libosinfo's short id: libguestfs's rule, or the osinfo database's id for the same release where the
    database names it otherwise; the rule's id stands when the database is absent or older than the guest."""
    db = OSINFO_DB if db is None else db
    rule = osinfo_rule(distro, major, minor)
    if major is None or not db.is_dir():
        return rule
    # libguestfs says oraclelinux where libosinfo says ol: the database goes by its own name.
    name = "ol" if distro == "ol" else _OSINFO_DISTRO.get(distro, distro)
    versions = tuple(dict.fromkeys((f"{major}.{minor or 0}", f"{major}.{minor or 0:02d}", f"{major}")))
    entries = _db_entries(name, versions, db)
    if rule is not None and any(rule in ids for _, _, ids in entries):
        return rule
    for version in versions:
        for entry_distro, entry_version, ids in entries:
            if entry_distro == name and entry_version == version and ids:
                return ids[0]
    return rule


# --- together -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OsFacts:
    """What virt-inspector reports beyond distribution and product."""

    arch: str | None
    major_version: int | None
    minor_version: int | None
    point_release: str | None
    osinfo: str | None
    package_management: str | None


def os_facts(tree: GuestTree, distro: str, package_format: str | None, read: _Read) -> OsFacts:
    """The facts for the OS in `tree`, whose distribution was already found; `read` is the bounded text reader."""
    release = _release_numbers(read, distro)
    return OsFacts(
        arch=find_arch(tree),
        major_version=release.major,
        minor_version=release.minor,
        point_release=release.point,
        osinfo=osinfo_id(distro, release.major, release.minor),
        package_management=package_management(distro, release.major, package_format, tree),
    )
