"""Which operating system a guest's files hold, and the facts a Xen/KVM admin needs about it.

Distributions from before os-release (Fedora Core, CentOS 5, SLES 10, Debian etch) are recognised from their own
release files. Names are os-release IDs (debian, fedora, rhel, sles, opensuse-leap, ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dom0 import humanize
from dom0.errors import Dom0Error
from dom0.image.kernels import Kernel, find_kernels
from dom0.image.osfacts import first_line, os_facts, parse_keyvals
from dom0.image.tree import FILESYSTEM_TYPES, MAX_CONFIG_READ, GuestTree, ResolvingTree, open_tree

if TYPE_CHECKING:
    from dom0.image.layout import Filesystem, Layout
    from dom0.image.source import ImageSource

__all__ = [
    "Console",
    "FstabEntry",
    "Kernel",
    "Network",
    "OperatingSystem",
    "find_roots",
    "inspect_operating_systems",
    "inspect_tree",
    "is_os_root",
]

RELEASE_FILES = (
    "/etc/os-release",
    "/usr/lib/os-release",
    "/etc/lsb-release",
    "/etc/redhat-release",
    "/etc/fedora-release",
    "/etc/SuSE-release",
    "/etc/gentoo-release",
    "/etc/alpine-release",
    "/etc/arch-release",
    "/etc/debian_version",
)

# Filesystems in an fstab that are not on a disk of the guest.
_VIRTUAL_FS = {
    "swap", "proc", "sysfs", "tmpfs", "devpts", "devtmpfs", "usbfs", "usbdevfs", "none", "nfs", "nfs4", "cifs",
    "smbfs", "cgroup", "cgroup2", "debugfs", "securityfs", "mqueue", "hugetlbfs", "binfmt_misc", "efivarfs",
    "fuse", "autofs", "rpc_pipefs", "configfs", "pstore", "bpf", "tracefs", "ramfs",
}  # fmt: skip

_XEN_CONSOLES = ("hvc0", "xvc0")
_PARAVIRT_NIC_DRIVERS = {"xennet", "xen-netfront", "xen_netfront", "virtio_net", "virtio-net"}


@dataclass(frozen=True)
class FstabEntry:
    """One line of the guest's /etc/fstab."""

    device: str
    mountpoint: str
    fstype: str
    options: str


@dataclass(frozen=True)
class Console:
    """Where the guest runs login prompts, and whether root may log in on Xen's console."""

    gettys: tuple[str, ...]
    hvc0: bool
    xvc0: bool
    securetty: tuple[str, ...] | None
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "gettys": list(self.gettys),
            "hvc0": self.hvc0,
            "xvc0": self.xvc0,
            "securetty": None if self.securetty is None else list(self.securetty),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Network:
    """Network driver aliases from modprobe configuration ("alias eth0 tg3") and what they mean under Xen."""

    driver_aliases: dict[str, str]
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON view."""
        return {"driver_aliases": dict(self.driver_aliases), "notes": list(self.notes)}


@dataclass(frozen=True)
class OperatingSystem:
    """An operating system found in an image or directory; `root` is where its / lies ("partition 1")."""

    root: str
    distro: str
    version: str | None
    product_name: str
    package_format: str | None
    package_tools: tuple[str, ...]
    package_hint: str
    hostname: str | None
    mountpoints: dict[str, str]
    kernels: tuple[Kernel, ...]
    console: Console
    network: Network
    fstab: tuple[FstabEntry, ...] = field(default=(), repr=False)
    notes: tuple[str, ...] = ()
    # What virt-inspector reports besides (see image/osfacts.py): "x86_64"; 12 and 15 for "12.15"; "debian12"; "apt".
    arch: str | None = None
    major_version: int | None = None
    minor_version: int | None = None
    point_release: str | None = None
    osinfo: str | None = None
    package_management: str | None = None

    @property
    def root_device(self) -> str | None:
        """The device the guest's fstab mounts at / (for a root= kernel argument), if it says."""
        return next((e.device for e in self.fstab if e.mountpoint == "/"), None)

    def to_json(self) -> dict[str, Any]:
        """The issue's JSON keys for one operating system, plus root, package_hint, console and network."""
        return {
            "root": self.root,
            "distro": self.distro,
            "version": self.version,
            "product_name": self.product_name,
            "package_format": self.package_format,
            "package_tools": list(self.package_tools),
            "package_hint": self.package_hint,
            "hostname": self.hostname,
            "mountpoints": dict(self.mountpoints),
            "kernels": [k.to_json() for k in self.kernels],
            "console": self.console.to_json(),
            "network": self.network.to_json(),
            "notes": list(self.notes),
            "arch": self.arch,
            "major_version": self.major_version,
            "minor_version": self.minor_version,
            "point_release": self.point_release,
            "osinfo": self.osinfo,
            "package_management": self.package_management,
        }


# --- small readers --------------------------------------------------------------------------------------------------


def _read(tree: GuestTree, path: str) -> str | None:
    try:
        if not tree.is_file(path):
            return None
        return tree.read_text(path)
    except Dom0Error:
        return None


# --- distribution ---------------------------------------------------------------------------------------------------

_REDHAT_NAMES = (
    ("fedora", "fedora"),
    ("centos", "centos"),
    ("red hat", "rhel"),
    ("rocky", "rocky"),
    ("almalinux", "almalinux"),
    ("scientific", "scientific"),
    ("oracle", "ol"),
)


def _from_redhat_release(line: str) -> tuple[str, str | None] | None:
    m = re.match(r"(?P<name>.+?)\s+release\s+(?P<ver>\d[\w.]*)(?P<rest>.*)", line)
    if not m:
        return None
    name = m.group("name").lower()
    distro = next((d for key, d in _REDHAT_NAMES if name.startswith(key)), None)
    if distro is None:
        return None
    version = m.group("ver")
    # RHEL 4 said "release 4 (Nahant Update 8)": the update is the minor version.
    update = re.search(r"Update (\d+)", m.group("rest"))
    if update and "." not in version:
        version = f"{version}.{update.group(1)}"
    return distro, version


def _from_suse_release(text: str) -> tuple[str, str | None, str]:
    product = first_line(text)
    keys = parse_keyvals(text)
    version = keys.get("VERSION")
    patchlevel = keys.get("PATCHLEVEL")
    if version and patchlevel and patchlevel != "0":
        version = f"{version}.{patchlevel}"
    lower = product.lower()
    if "enterprise server" in lower:
        distro = "sles"
    elif "enterprise desktop" in lower:
        distro = "sled"
    else:
        # openSUSE Leap 42.x still shipped SuSE-release; earlier openSUSE (and "SUSE LINUX 10.0") had no Leap.
        major = _major(version) or 0
        distro = "opensuse-leap" if major >= 42 else "opensuse"
    return distro, version, product


# Release numbers are short ("12.15", "2.6.32", "20240101"); a longer one is a damaged or hostile release file, and
# every reader after this one (package hints, adapt's kernel choice) would otherwise have to guard against it.
_MAX_VERSION = 32


def detect_distro(tree: GuestTree) -> tuple[str, str | None, str] | None:
    """(distro ID, version, product name) from os-release or the older release files; None if none is there."""
    found = _detect_distro(tree)
    if found is not None and found[1] is not None and len(found[1]) > _MAX_VERSION:
        return found[0], None, found[2]
    return found


def _detect_distro(tree: GuestTree) -> tuple[str, str | None, str] | None:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        text = _read(tree, path)
        if text:
            keys = parse_keyvals(text)
            if keys.get("ID"):
                distro = keys["ID"].lower()
                version = keys.get("VERSION_ID") or None
                product = keys.get("PRETTY_NAME") or keys.get("NAME") or distro
                return distro, version, product
    lsb = parse_keyvals(_read(tree, "/etc/lsb-release") or "")
    if lsb.get("DISTRIB_ID"):
        distro = lsb["DISTRIB_ID"].lower().replace(" ", "")
        version = lsb.get("DISTRIB_RELEASE") or None
        return distro, version, lsb.get("DISTRIB_DESCRIPTION") or f"{lsb['DISTRIB_ID']} {version or ''}".strip()
    for path in ("/etc/fedora-release", "/etc/redhat-release"):
        line = first_line(_read(tree, path))
        found = _from_redhat_release(line) if line else None
        if found:
            return found[0], found[1], line
    suse = _read(tree, "/etc/SuSE-release")
    if suse:
        return _from_suse_release(suse)
    line = first_line(_read(tree, "/etc/gentoo-release"))
    if line:
        m = re.search(r"release\s+(\S+)", line)
        return "gentoo", m.group(1) if m else None, line
    line = first_line(_read(tree, "/etc/alpine-release"))
    if line:
        return "alpine", line, f"Alpine Linux {line}"
    if tree.is_file("/etc/arch-release"):
        return "arch", None, "Arch Linux"
    line = first_line(_read(tree, "/etc/debian_version"))
    if line:
        return "debian", line, f"Debian GNU/Linux {line}"
    return None


_DEB = {"debian", "ubuntu", "linuxmint", "raspbian", "devuan", "kali", "pop"}
_RPM_REDHAT = {"fedora", "centos", "rhel", "rocky", "almalinux", "scientific", "ol", "amzn"}
_RPM_SUSE = {"sles", "sled", "opensuse", "opensuse-leap", "opensuse-tumbleweed", "suse"}

_HUMAN = {
    "debian": "Debian",
    "ubuntu": "Ubuntu",
    "fedora": "Fedora",
    "centos": "CentOS",
    "rhel": "Red Hat Enterprise Linux",
    "rocky": "Rocky Linux",
    "almalinux": "AlmaLinux",
    "sles": "SUSE Linux Enterprise Server",
    "opensuse": "openSUSE",
    "opensuse-leap": "openSUSE Leap",
    "alpine": "Alpine Linux",
    "arch": "Arch Linux",
    "gentoo": "Gentoo",
}


def _major(version: str | None) -> int | None:
    # At most 9 digits: a hostile release file's 60000-digit "version" is no number (nor a 60000-digit int).
    m = re.match(r"(\d{1,9})(?!\d)", version or "")
    return int(m.group(1)) if m else None


def _family(distro: str, tree: GuestTree) -> str | None:
    if distro in _DEB:
        return "deb"
    if distro in _RPM_REDHAT:
        return "rpm-redhat"
    if distro in _RPM_SUSE:
        return "rpm-suse"
    if distro == "alpine":
        return "apk"
    if distro in ("arch", "manjaro", "endeavouros"):
        return "pacman"
    if distro == "gentoo":
        return "ebuild"
    like = parse_keyvals(_read(tree, "/etc/os-release") or _read(tree, "/usr/lib/os-release") or "").get("ID_LIKE")
    for other in (like or "").split():
        if other != distro and (found := _family(other, tree)) is not None:
            return found
    # Last resort: the package database on disk says which tools manage this system.
    for path, family in (("/var/lib/dpkg", "deb"), ("/var/lib/rpm", "rpm-redhat"), ("/lib/apk/db", "apk")):
        if tree.is_dir(path):
            return family
    return None


def package_info(
    distro: str, version: str | None, product: str, tree: GuestTree
) -> tuple[str | None, tuple[str, ...], str]:
    """(package format, tools, sentence for humans) for a distribution and version."""
    family = _family(distro, tree)
    major = _major(version)
    human = _HUMAN.get(distro)
    if distro == "fedora" and major is not None and major <= 6:
        human = "Fedora Core"
    name = f"{human} {version}" if human and version else (human or product)
    tools: tuple[str, ...]
    if family == "deb":
        fmt, avoid = "deb", "rpm/yum"
        new_apt = (distro == "debian" and (major or 0) >= 8) or (distro == "ubuntu" and (major or 0) >= 14)
        tools = ("dpkg", "apt-get", "apt") if new_apt else ("dpkg", "apt-get")
    elif family == "rpm-redhat":
        fmt, avoid = "rpm", "dpkg/apt-get"
        dnf_from = 22 if distro == "fedora" else 8
        tools = ("rpm", "dnf") if major is not None and major >= dnf_from else ("rpm", "yum")
    elif family == "rpm-suse":
        fmt, avoid, tools = "rpm", "dpkg/apt-get/yum", ("rpm", "zypper")
    elif family == "apk":
        fmt, avoid, tools = "apk", "apt-get/yum", ("apk",)
    elif family == "pacman":
        fmt, avoid, tools = "pacman", "apt-get/yum", ("pacman",)
    elif family == "ebuild":
        fmt, avoid, tools = "ebuild", "apt-get/yum", ("emerge",)
    else:
        return None, (), f"this is {name}: its package tools are not known to dom0"
    return fmt, tools, f"this is {name}: use {'/'.join(tools)}, not {avoid}"


# --- hostname, fstab, console, network ------------------------------------------------------------------------------


def detect_hostname(tree: GuestTree) -> str | None:
    """From /etc/hostname, /etc/HOSTNAME (SUSE), /etc/sysconfig/network (Red Hat) or /etc/conf.d/hostname (Gentoo)."""
    for path in ("/etc/hostname", "/etc/HOSTNAME"):
        for raw in (_read(tree, path) or "").splitlines():
            line = raw.split("#", 1)[0].strip()
            if line:
                return line
    for path, key in (("/etc/sysconfig/network", "HOSTNAME"), ("/etc/conf.d/hostname", "hostname")):
        value = parse_keyvals(_read(tree, path) or "").get(key)
        if value:
            return value
    return None


def _unescape_fstab(field_text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_text)


def parse_fstab(text: str) -> tuple[FstabEntry, ...]:
    """The entries of an fstab, comments and malformed lines skipped."""
    entries = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 3:
            continue
        options = fields[3] if len(fields) > 3 else "defaults"
        entries.append(FstabEntry(_unescape_fstab(fields[0]), _unescape_fstab(fields[1]), fields[2], options))
    return tuple(entries)


def _disk_mounts(fstab: tuple[FstabEntry, ...]) -> Iterator[FstabEntry]:
    for entry in fstab:
        if entry.mountpoint.startswith("/") and entry.fstype not in _VIRTUAL_FS and ":" not in entry.device:
            yield entry


_INITTAB_GETTY = re.compile(r"\b(?:a|min|m|f)?getty\b")
_TTY = re.compile(r"^(tty\w*|hvc\d+|xvc\d+|console|ttyS\d+)$")


def _getty_ttys(text: str) -> list[str]:
    ttys: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            continue
        fields = line.split(":", 3)
        if len(fields) < 4 or "respawn" not in fields[2] or not _INITTAB_GETTY.search(fields[3]):
            continue
        ttys.extend(w for w in fields[3].split()[1:] if _TTY.match(w))
    return ttys


def detect_console(tree: GuestTree) -> Console:
    """Gettys from inittab, upstart jobs and systemd links; securetty; notes on what Xen's console will show."""
    ttys: list[str] = []
    inittab = _read(tree, "/etc/inittab")
    if inittab:
        ttys.extend(_getty_ttys(inittab))
    if tree.is_dir("/etc/init"):
        for name in tree.listdir("/etc/init"):
            job = _read(tree, f"/etc/init/{name}") if name.endswith(".conf") else None
            if job and _INITTAB_GETTY.search(job):
                for line in job.splitlines():
                    if line.strip().startswith("exec") and _INITTAB_GETTY.search(line):
                        ttys.extend(w for w in line.split() if _TTY.match(w))
    systemd = (
        tree.is_dir("/etc/systemd/system")
        or tree.exists("/lib/systemd/systemd")
        or tree.exists("/usr/lib/systemd/systemd")
    )
    for wants in ("getty.target.wants", "multi-user.target.wants"):
        where = f"/etc/systemd/system/{wants}"
        if tree.is_dir(where):
            for name in tree.listdir(where):
                m = re.match(r"(?:serial-)?getty@(.+)\.service$", name)
                if m:
                    ttys.append(m.group(1))
    unique = tuple(dict.fromkeys(ttys))
    securetty_text = _read(tree, "/etc/securetty")
    securetty = None
    if securetty_text is not None:
        securetty = tuple(
            line.strip() for line in securetty_text.splitlines() if line.strip() and not line.startswith("#")
        )
    hvc0, xvc0 = "hvc0" in unique, "xvc0" in unique
    notes: list[str] = []
    if not (hvc0 or xvc0):
        if systemd and not inittab:
            notes.append(
                "no getty configured on hvc0, but systemd starts one on the kernel's console: boot it with console=hvc0"
            )
        else:
            notes.append(
                "no getty on hvc0 or xvc0: the Xen console shows boot messages but no login prompt; add one, e.g. "
                "'h0:2345:respawn:/sbin/getty 38400 hvc0' in /etc/inittab"
            )
    for tty in _XEN_CONSOLES:
        if tty in unique and securetty is not None and tty not in securetty:
            notes.append(f"root cannot log in on {tty}: /etc/securetty does not list it")
    return Console(unique, hvc0, xvc0, securetty, tuple(notes))


def _modprobe_files(tree: GuestTree) -> Iterator[str]:
    for path in ("/etc/modprobe.conf", "/etc/modules.conf"):
        if tree.is_file(path):
            yield path
    if tree.is_dir("/etc/modprobe.d"):
        for name in tree.listdir("/etc/modprobe.d"):
            yield f"/etc/modprobe.d/{name}"


def detect_network(tree: GuestTree) -> Network:
    """Network interface -> driver aliases, with a note for each that is a physical NIC's driver."""
    aliases: dict[str, str] = {}
    where: dict[str, str] = {}
    for path in _modprobe_files(tree):
        for line in (_read(tree, path) or "").splitlines():
            fields = line.split("#", 1)[0].split()
            if len(fields) == 3 and fields[0] == "alias" and re.match(r"^(eth|net|en|wlan)\w*$", fields[1]):
                aliases[fields[1]] = fields[2]
                where[fields[1]] = path
    notes = [
        f"{nic} is tied to the {driver} driver in {where[nic]}: a Xen guest's NIC needs xennet (2.6.18 Xen kernels) "
        "or xen-netfront; change the alias or the guest boots without network"
        for nic, driver in sorted(aliases.items())
        if driver not in _PARAVIRT_NIC_DRIVERS
    ]
    return Network(aliases, tuple(notes))


# --- putting it together --------------------------------------------------------------------------------------------


def is_os_root(tree: GuestTree) -> bool:
    """Whether this filesystem is an operating system's /: it has /etc and a release file or /bin or /usr/bin."""
    try:
        if not tree.is_dir("/etc"):
            return False
        lexists = getattr(tree, "lexists", tree.exists)
        return any(lexists(p) for p in RELEASE_FILES) or tree.is_dir("/bin") or tree.is_dir("/usr/bin")
    except Dom0Error:
        return False


def read_fstab(tree: GuestTree) -> tuple[FstabEntry, ...]:
    """The guest's fstab, or () if it has none."""
    return parse_fstab(_read(tree, "/etc/fstab") or "")


def inspect_tree(
    tree: GuestTree, *, root: str = "directory", locate: Callable[[FstabEntry], str | None] | None = None
) -> OperatingSystem | None:
    """What operating system `tree` holds, or None if it is not an OS root.

    `locate` maps an fstab entry to where that filesystem lies in the image ("partition 2"); without it (a
    directory) the mountpoints show the fstab's own device names.
    """
    if not is_os_root(tree):
        return None
    found = detect_distro(tree)
    distro, version, product = found if found else ("unknown", None, "an unrecognised Linux")
    fmt, tools, hint = package_info(distro, version, product, tree)
    fstab = read_fstab(tree)
    mountpoints: dict[str, str] = {}
    for entry in _disk_mounts(fstab):
        if entry.mountpoint == "/" and locate is not None:
            mountpoints["/"] = root
            continue
        located = locate(entry) if locate else None
        mountpoints[entry.mountpoint] = located or entry.device
    if locate is not None and "/" not in mountpoints:
        mountpoints["/"] = root
    hostname = detect_hostname(tree)
    kernels = find_kernels(tree)
    console = detect_console(tree)
    network = detect_network(tree)
    facts = os_facts(tree, distro, fmt, lambda path: _read(tree, path))
    too_large: dict[str, int] = getattr(tree, "too_large", {})
    notes = tuple(
        f"{path} not read: {humanize.size(size)}, more than the {humanize.size(MAX_CONFIG_READ)} a config file "
        "can be (the image may be damaged or hostile)"
        for path, size in sorted(too_large.items())
    )
    return OperatingSystem(
        root=root,
        distro=distro,
        version=version,
        product_name=product,
        package_format=fmt,
        package_tools=tools,
        package_hint=hint,
        hostname=hostname,
        mountpoints=mountpoints,
        kernels=kernels,
        console=console,
        network=network,
        fstab=fstab,
        notes=notes,
        arch=facts.arch,
        major_version=facts.major_version,
        minor_version=facts.minor_version,
        point_release=facts.point_release,
        osinfo=facts.osinfo,
        package_management=facts.package_management,
    )


def match_filesystem(entry: FstabEntry, filesystems: tuple[Filesystem, ...] | list[Filesystem]) -> Filesystem | None:
    """The filesystem of the image an fstab entry names: by UUID=, LABEL=, /dev/disk/by-*, partition or LV path."""
    spec = entry.device
    for prefix, attr in (("UUID=", "uuid"), ("/dev/disk/by-uuid/", "uuid"), ("LABEL=", "label"),
                         ("/dev/disk/by-label/", "label")):  # fmt: skip
        if spec.startswith(prefix):
            wanted = spec[len(prefix) :].strip("\"'")
            for fs in filesystems:
                value = getattr(fs, attr) or ""
                if value and (value == wanted or (attr == "uuid" and value.lower() == wanted.lower())):
                    return fs
            return None
    m = re.match(r"^/dev/(?:[shv]d|xvd)a(\d+)$|^/dev/(?:nvme0n1|mmcblk0)p(\d+)$", spec)
    if m:
        location = f"partition {m.group(1) or m.group(2)}"
        return next((fs for fs in filesystems if fs.location == location), None)
    lv = _lv_of(spec)
    if lv:
        location = f"logical volume {lv}"
        return next((fs for fs in filesystems if fs.location == location), None)
    return None


def _lv_of(spec: str) -> str | None:
    m = re.match(r"^/dev/mapper/(.+)$", spec)
    if m:
        # device-mapper doubles a dash inside a VG or LV name: vg--data-root is vg-data/root.
        parts = re.split(r"(?<!-)-(?!-)", m.group(1), maxsplit=1)
        if len(parts) == 2:
            return "/".join(p.replace("--", "-") for p in parts)
        return None
    m = re.match(r"^/dev/([^/]+)/([^/]+)$", spec)
    if m and m.group(1) not in ("disk", "mapper", "md", "cciss", "ida", "rd"):
        return f"{m.group(1)}/{m.group(2)}"
    return None


def find_roots(source: ImageSource, layout: Layout) -> list[tuple[Filesystem, ResolvingTree, OperatingSystem]]:
    """Every operating system in the image: its root filesystem, its tree (with /boot, /usr, /var mounted where
    its fstab says) and what was found in it."""
    from dom0.image.layout import open_filesystem_source

    readable = [fs for fs in layout.filesystems if fs.type in FILESYSTEM_TYPES]
    trees: dict[str, ResolvingTree] = {}

    def tree_of(fs: Filesystem) -> ResolvingTree | None:
        if fs.location not in trees:
            try:
                trees[fs.location] = open_tree(open_filesystem_source(source, layout, fs), fs)
            except Dom0Error:
                return None
        return trees[fs.location]

    found = []
    for fs in readable:
        tree = tree_of(fs)
        if tree is None or not is_os_root(tree):
            continue
        fstab = read_fstab(tree)
        mounts: dict[str, ResolvingTree] = {}
        for entry in _disk_mounts(fstab):
            if entry.mountpoint == "/":
                continue
            other = match_filesystem(entry, readable)
            if other is not None and other.location != fs.location and (sub := tree_of(other)) is not None:
                mounts[entry.mountpoint] = sub
        merged = tree.with_mounts(mounts) if mounts else tree

        def locate(entry: FstabEntry) -> str | None:
            match = match_filesystem(entry, layout.filesystems)
            return match.location if match else None

        system = inspect_tree(merged, root=fs.location, locate=locate)
        if system is not None:
            found.append((fs, merged, system))
    return found


def inspect_operating_systems(source: ImageSource, layout: Layout) -> list[OperatingSystem]:
    """The operating systems found on the filesystems of an image, in the layout's order."""
    return [system for _, _, system in find_roots(source, layout)]
