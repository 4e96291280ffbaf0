"""What every network-config format shares: the files a guest may keep its configuration in, the address to set,
the MACs inside those files, and the INI-like syntax of NetworkManager keyfiles and systemd-networkd units.

Only regular files are read: a configuration that is a symlink is neither read nor followed, so nothing outside
the guest's own files ever becomes content written back into it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass

from dom0.errors import Dom0Error, UsageError
from dom0.image.tree import MAX_CONFIG_READ, ResolvingTree

# The files that may name a NIC's MAC, by format; "link" and "udev" only ever get MAC rewrites.
IFUPDOWN, IFCFG, SUSE_IFCFG, NETPLAN, NM, NETWORKD, LINK, UDEV = (
    "ifupdown", "ifcfg", "suse-ifcfg", "netplan", "networkmanager", "networkd", "link", "udev",
)  # fmt: skip
PERSISTENT_NET_RULES = "/etc/udev/rules.d/70-persistent-net.rules"
SUSE_DISTROS = ("sles", "sled", "opensuse", "opensuse-leap", "opensuse-tumbleweed")

_FILE_MODE = {NETPLAN: 0o600, NM: 0o600}


@dataclass(frozen=True)
class NetConfig:
    """One network configuration file of the guest, with its text."""

    path: str
    format: str
    text: str

    @property
    def mode(self) -> int:
        """The mode the file is written with (netplan and NetworkManager want their files private)."""
        return _FILE_MODE.get(self.format, 0o644)


@dataclass(frozen=True)
class Static:
    """The address to give the guest's first NIC."""

    interface: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Address | None

    @property
    def ip(self) -> str:
        """The address alone."""
        return str(self.interface.ip)

    @property
    def cidr(self) -> str:
        """ADDR/PREFIX."""
        return f"{self.interface.ip}/{self.interface.network.prefixlen}"

    @property
    def prefix(self) -> str:
        """The prefix length."""
        return str(self.interface.network.prefixlen)

    @property
    def netmask(self) -> str:
        """The dotted netmask."""
        return str(self.interface.network.netmask)


def static_address(address: str, gateway: str = "") -> Static | None:
    """The static address asked for with `dom0 clone --ip ADDR/PREFIX [--gateway GW]`, or None when none is;
    UsageError when the address has no prefix length, is not IPv4, or the gateway is not IPv4 on its subnet.

    IPv4 only, because that is what the formats' editors set: ifupdown's `inet` stanza, ifcfg's IPADDR,
    NetworkManager's [ipv4], netplan's dhcp4 and IPv4 addresses, networkd's IPv4 Address= (DHCP for IPv6 kept).
    A clone keeps the source's IPv6 configuration; its autoconfigured IPv6 addresses follow its new MAC and
    machine-id by themselves. This is the one check of the address and gateway: the CLI and the clone plan call it
    (through identity.check_request) before anything is read, as the values end up in the guest's own files.
    """
    if gateway and not address:
        raise UsageError("a gateway was given without an address", "give --ip ADDR/PREFIX with --gateway")
    if not address:
        return None
    if "/" not in address:
        raise UsageError(f"{address!r} has no prefix length", f"write it as ADDR/PREFIX, e.g. {address}/24")
    try:
        iface = ipaddress.IPv4Interface(address)
    except ValueError as exc:
        _refuse_ipv6(address, "address")
        raise UsageError(f"{address!r} is not an IPv4 address with a prefix ({exc})", "e.g. 10.0.0.5/24") from exc
    try:
        router = ipaddress.IPv4Address(gateway) if gateway else None
    except ValueError as exc:
        _refuse_ipv6(gateway, "gateway")
        raise UsageError(f"gateway {gateway!r} is not an IPv4 address ({exc})", "e.g. 10.0.0.1") from exc
    if router is not None and router not in iface.network:
        raise UsageError(f"gateway {router} is not in {iface.network}", "give a gateway on the clone's subnet")
    return Static(iface, router)


def _refuse_ipv6(value: str, what: str) -> None:
    try:
        ipaddress.IPv6Interface(value)
    except ValueError:
        return
    raise UsageError(
        f"{what} {value} is IPv6: dom0 sets a clone's static IPv4 address only",
        "the clone keeps the source's IPv6 configuration; set a static IPv6 address inside it after its first boot",
    )


def regular_text(tree: ResolvingTree, path: str, limit: int = MAX_CONFIG_READ) -> str | None:
    """The text of `path` when it is a regular file and not a symlink (a linked config is not read or followed),
    and holds at most `limit` bytes."""
    try:
        if tree.readlink(path) is not None or not tree.is_file(path):
            return None
        return tree.read_text(path, limit)
    except Dom0Error:
        return None


def names_in(tree: ResolvingTree, directory: str) -> list[str]:
    """The names in the guest's `directory`; none when it is no directory or cannot be read (a directory that is a
    symlink is followed inside the guest only, as the tree resolves every path)."""
    try:
        return tree.listdir(directory) if tree.is_dir(directory) else []
    except (Dom0Error, OSError):
        return []


def _candidates(tree: ResolvingTree) -> Iterator[tuple[str, str]]:
    yield "/etc/network/interfaces", IFUPDOWN
    for name in names_in(tree, "/etc/network/interfaces.d"):
        if not name.startswith("."):
            yield f"/etc/network/interfaces.d/{name}", IFUPDOWN
    for directory, fmt in (("/etc/sysconfig/network-scripts", IFCFG), ("/etc/sysconfig/network", SUSE_IFCFG)):
        for name in names_in(tree, directory):
            if name.startswith("ifcfg-") and name != "ifcfg-lo" and not name.endswith(("~", ".bak", ".orig")):
                yield f"{directory}/{name}", fmt
    for name in names_in(tree, "/etc/netplan"):
        if name.endswith((".yaml", ".yml")):
            yield f"/etc/netplan/{name}", NETPLAN
    for name in names_in(tree, "/etc/NetworkManager/system-connections"):
        if not name.startswith("."):
            yield f"/etc/NetworkManager/system-connections/{name}", NM
    for name in names_in(tree, "/etc/systemd/network"):
        if name.endswith(".network"):
            yield f"/etc/systemd/network/{name}", NETWORKD
        elif name.endswith(".link"):
            yield f"/etc/systemd/network/{name}", LINK
    for name in names_in(tree, "/etc/udev/rules.d"):
        path = f"/etc/udev/rules.d/{name}"
        if name.endswith(".rules") and path != PERSISTENT_NET_RULES:
            yield path, UDEV


def find_configs(tree: ResolvingTree) -> list[NetConfig]:
    """Every network configuration file of the guest that is a regular file."""
    found = []
    for path, fmt in _candidates(tree):
        text = regular_text(tree, path)
        if text is not None:
            found.append(NetConfig(path, fmt, text))
    return found


def is_v4(value: str) -> bool:
    """Whether `value` (up to a first comma, as NetworkManager writes "ADDR/PREFIX,GATEWAY") is an IPv4 address."""
    try:
        ipaddress.IPv4Interface(value.split(",", maxsplit=1)[0].strip())
    except ValueError:
        return False
    return True


# --- MACs ----------------------------------------------------------------------------------------------------------

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$", re.IGNORECASE)


def check_mac(mac: str) -> str:
    """`mac` in lower case, or Dom0Error when it is not six colon-separated hex bytes."""
    if not _MAC.match(mac):
        raise UsageError(f"{mac!r} is not a MAC address", "write it as six hex bytes: 52:54:00:12:34:56")
    return mac.lower()


def replace_macs(text: str, macs: dict[str, str]) -> str:
    """`text` with each old MAC (any case) replaced by its new one, in the case the file used."""
    if not macs:
        return text
    wanted = {old.lower(): new.lower() for old, new in macs.items()}
    alternatives = "|".join(re.escape(old) for old in wanted)
    pattern = re.compile(rf"(?<![0-9A-Fa-f:])(?:{alternatives})(?![0-9A-Fa-f:])", re.IGNORECASE)

    def swap(m: re.Match[str]) -> str:
        new = wanted[m.group(0).lower()]
        return new.upper() if m.group(0).isupper() else new

    return pattern.sub(swap, text)


def names_mac(text: str, mac: str) -> bool:
    """Whether `text` names `mac` (any case)."""
    return replace_macs(text, {mac: "00:00:00:00:00:00"}) != text if mac else False


# --- INI-like files: NetworkManager keyfiles, systemd-networkd -----------------------------------------------------

_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")
_INI_KEY = re.compile(r"^(\s*)([^=#;\s][^=]*?)\s*=\s*(.*)$")


class Ini:
    """Sections and keys of an INI file, found and changed line by line."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def sections(self, name: str) -> list[tuple[int, int]]:
        """(header line, end line) of each section called `name`."""
        heads = [(i, m.group(1)) for i, line in enumerate(self.lines) if (m := _SECTION.match(line))]
        out = []
        for k, (i, found) in enumerate(heads):
            if found == name:
                out.append((i, heads[k + 1][0] if k + 1 < len(heads) else len(self.lines)))
        return out

    def keys(self, name: str, key: str) -> list[tuple[int, str]]:
        """(line, value) of every `key` in sections called `name`."""
        out = []
        for start, end in self.sections(name):
            for i in range(start + 1, end):
                m = _INI_KEY.match(self.lines[i])
                if m and m.group(2) == key:
                    out.append((i, m.group(3).strip()))
        return out

    def replace(self, index: int, key: str, value: str) -> None:
        m = _INI_KEY.match(self.lines[index])
        indent = m.group(1) if m else ""
        self.lines[index] = f"{indent}{key}={value}"

    def add(self, name: str, key: str, value: str) -> None:
        """`key=value` at the end of the first section `name` (after its last non-blank line), or a new section."""
        found = self.sections(name)
        if not found:
            if self.lines and self.lines[-1].strip():
                self.lines.append("")
            self.lines += [f"[{name}]", f"{key}={value}"]
            return
        start, end = found[0]
        last = start
        for i in range(start + 1, end):
            if self.lines[i].strip():
                last = i
        self.lines.insert(last + 1, f"{key}={value}")

    def set(self, name: str, key: str, value: str) -> None:
        found = self.keys(name, key)
        if found:
            self.replace(found[0][0], key, value)
        else:
            self.add(name, key, value)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"
