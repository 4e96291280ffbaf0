"""A guest's network configuration in its own formats: a static IPv4 address and new MACs, the rest kept as it is.

Formats: ifupdown (/etc/network/interfaces), Red Hat ifcfg, SUSE ifcfg, netplan, NetworkManager keyfiles and
systemd-networkd. Each editor changes only the lines that carry the address, prefix, gateway or method.
Netplan is YAML edited line by line (no YAML library reformats the administrator's file): block style only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass

from dom0.errors import Dom0Error, UsageError
from dom0.image.osinspect import OperatingSystem
from dom0.image.tree import MAX_CONFIG_READ, ResolvingTree

# The files that may name a NIC's MAC, by format; "link" and "udev" only ever get MAC rewrites.
IFUPDOWN, IFCFG, SUSE_IFCFG, NETPLAN, NM, NETWORKD, LINK, UDEV = (
    "ifupdown", "ifcfg", "suse-ifcfg", "netplan", "networkmanager", "networkd", "link", "udev",
)  # fmt: skip
PERSISTENT_NET_RULES = "/etc/udev/rules.d/70-persistent-net.rules"

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


def regular_text(tree: ResolvingTree, path: str, limit: int = MAX_CONFIG_READ) -> str | None:
    """The text of `path` when it is a regular file and not a symlink (a linked config is not read or followed),
    and holds at most `limit` bytes."""
    try:
        if tree.readlink(path) is not None or not tree.is_file(path):
            return None
        return tree.read_text(path, limit)
    except Dom0Error:
        return None


def _names(tree: ResolvingTree, directory: str) -> list[str]:
    try:
        return tree.listdir(directory) if tree.is_dir(directory) else []
    except Dom0Error:
        return []


def _candidates(tree: ResolvingTree) -> Iterator[tuple[str, str]]:
    yield "/etc/network/interfaces", IFUPDOWN
    for name in _names(tree, "/etc/network/interfaces.d"):
        if not name.startswith("."):
            yield f"/etc/network/interfaces.d/{name}", IFUPDOWN
    for directory, fmt in (("/etc/sysconfig/network-scripts", IFCFG), ("/etc/sysconfig/network", SUSE_IFCFG)):
        for name in _names(tree, directory):
            if name.startswith("ifcfg-") and name != "ifcfg-lo" and not name.endswith(("~", ".bak", ".orig")):
                yield f"{directory}/{name}", fmt
    for name in _names(tree, "/etc/netplan"):
        if name.endswith((".yaml", ".yml")):
            yield f"/etc/netplan/{name}", NETPLAN
    for name in _names(tree, "/etc/NetworkManager/system-connections"):
        if not name.startswith("."):
            yield f"/etc/NetworkManager/system-connections/{name}", NM
    for name in _names(tree, "/etc/systemd/network"):
        if name.endswith(".network"):
            yield f"/etc/systemd/network/{name}", NETWORKD
        elif name.endswith(".link"):
            yield f"/etc/systemd/network/{name}", LINK
    for name in _names(tree, "/etc/udev/rules.d"):
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


# --- ifupdown ------------------------------------------------------------------------------------------------------

_IFUPDOWN_IFACE = re.compile(r"^(\s*iface\s+(\S+)\s+inet\s+)(\S+)(.*)$")
_IFUPDOWN_STANZA = re.compile(r"^\s*(iface|auto|allow-\S+|mapping|source|source-directory|rename)\b")


def _ifupdown(text: str, st: Static | None) -> str | None:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if (m := _IFUPDOWN_IFACE.match(line)) and m.group(2) != "lo"), None)
    if start is None:
        return None
    if st is None:
        return text
    m = _IFUPDOWN_IFACE.match(lines[start])
    assert m is not None
    end = next((j for j in range(start + 1, len(lines)) if _IFUPDOWN_STANZA.match(lines[j])), len(lines))
    options = [j for j in range(start + 1, end) if lines[j].strip() and not lines[j].lstrip().startswith("#")]
    indent = re.match(r"\s*", lines[options[0]]).group(0) if options else "    "  # type: ignore[union-attr]
    at: dict[str, int] = {}
    for j in options:
        at.setdefault(lines[j].split()[0], j)
    lines[start] = f"{m.group(1)}static{m.group(4)}"
    cidr = "address" in at and "/" in lines[at["address"]] and "netmask" not in at
    values = {"address": st.cidr if cidr else st.ip}
    if not cidr:
        values["netmask"] = st.netmask
    if st.gateway is not None:
        values["gateway"] = str(st.gateway)
    if "broadcast" in at:
        values["broadcast"] = str(st.interface.network.broadcast_address)
    if "network" in at:
        values["network"] = str(st.interface.network.network_address)
    insert_at = (options[-1] if options else start) + 1
    new_lines: list[str] = []
    for key, value in values.items():
        if key in at:
            own = re.match(r"\s*", lines[at[key]]).group(0)  # type: ignore[union-attr]
            lines[at[key]] = f"{own}{key} {value}"
        else:
            new_lines.append(f"{indent}{key} {value}")
    lines[insert_at:insert_at] = new_lines
    return "\n".join(lines) + "\n"


# --- ifcfg (Red Hat and SUSE) --------------------------------------------------------------------------------------

_KV = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


class _KeyValues:
    """KEY=value lines, edited in place with each value's own quoting."""

    def __init__(self, text: str, quote: str) -> None:
        self.lines = text.splitlines()
        self.quote = quote
        self.at: dict[str, int] = {}
        for i, line in enumerate(self.lines):
            m = _KV.match(line)
            if m:
                self.at.setdefault(m.group(2), i)

    def get(self, key: str) -> str | None:
        if key not in self.at:
            return None
        m = _KV.match(self.lines[self.at[key]])
        assert m is not None
        return m.group(3).strip().strip("\"'")

    def set(self, key: str, value: str) -> None:
        if key in self.at:
            m = _KV.match(self.lines[self.at[key]])
            assert m is not None
            old = m.group(3).strip()
            q = old[0] if old[:1] in ("'", '"') else ""
            self.lines[self.at[key]] = f"{m.group(1)}{key}={q}{value}{q}"
        else:
            self.at[key] = len(self.lines)
            self.lines.append(f"{key}={self.quote}{value}{self.quote}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _ifcfg_is_nic(kv: _KeyValues) -> bool:
    return (
        kv.get("DEVICE") != "lo"
        and kv.get("MASTER") is None
        and kv.get("SLAVE") not in ("yes", "YES")
        and (kv.get("TYPE") or "Ethernet").lower() == "ethernet"
    )


def _ifcfg(text: str, st: Static | None, suse: bool) -> str | None:
    kv = _KeyValues(text, "'" if suse else "")
    if not _ifcfg_is_nic(kv):
        return None
    if st is None:
        return text
    # NetworkManager's ifcfg writer numbers the first address: IPADDR0, PREFIX0, GATEWAY0.
    n = "0" if "IPADDR0" in kv.at and "IPADDR" not in kv.at else ""
    kv.set("BOOTPROTO", "static" if suse else "none")
    if suse:
        if "NETMASK" in kv.at or "PREFIXLEN" in kv.at:
            kv.set("IPADDR", st.ip)
            kv.set("NETMASK" if "NETMASK" in kv.at else "PREFIXLEN", st.netmask if "NETMASK" in kv.at else st.prefix)
        else:
            kv.set("IPADDR", st.cidr)
    else:
        kv.set(f"IPADDR{n}", st.ip)
        if f"NETMASK{n}" in kv.at and f"PREFIX{n}" not in kv.at:
            kv.set(f"NETMASK{n}", st.netmask)
        else:
            kv.set(f"PREFIX{n}", st.prefix)
    for key, value in (("NETWORK", st.interface.network.network_address), ("BROADCAST",
                       st.interface.network.broadcast_address)):  # fmt: skip
        if key in kv.at:
            kv.set(key, str(value))
    return kv.text()


def rhel_gateway(ifcfg: str, network: str | None, gateway: str) -> tuple[str, str | None]:
    """(ifcfg text, /etc/sysconfig/network text) with the default gateway set where the guest keeps it."""
    kv = _KeyValues(ifcfg, "")
    n = "0" if "IPADDR0" in kv.at and "IPADDR" not in kv.at else ""
    net = _KeyValues(network, "") if network is not None else None
    if net is not None and "GATEWAY" in net.at:
        net.set("GATEWAY", gateway)
        if f"GATEWAY{n}" in kv.at:
            kv.set(f"GATEWAY{n}", gateway)
        return kv.text(), net.text()
    kv.set(f"GATEWAY{n}", gateway)
    return kv.text(), network


def suse_routes(routes: str | None, gateway: str) -> str:
    """SUSE's /etc/sysconfig/network/routes with its default route through `gateway`."""
    lines = (routes or "").splitlines()
    for i, line in enumerate(lines):
        fields = line.split()
        if fields and fields[0] == "default" and len(fields) > 1:
            lines[i] = line.replace(fields[1], gateway, 1)
            return "\n".join(lines) + "\n"
    lines.append(f"default {gateway} - -")
    return "\n".join(lines) + "\n"


# --- INI-like files: NetworkManager keyfiles, systemd-networkd --------------------------------------------------------

_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")
_INI_KEY = re.compile(r"^(\s*)([^=#;\s][^=]*?)\s*=\s*(.*)$")


class _Ini:
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


def _is_v4(value: str) -> bool:
    try:
        ipaddress.IPv4Interface(value.split(",", maxsplit=1)[0].strip())
    except ValueError:
        return False
    return True


def _nm(text: str, st: Static | None) -> str | None:
    ini = _Ini(text)
    kinds = [v for _, v in ini.keys("connection", "type")]
    if not kinds or kinds[0] not in ("ethernet", "802-3-ethernet"):
        return None
    if st is None:
        return text
    ini.set("ipv4", "method", "manual")
    addresses = ini.keys("ipv4", "address1") or ini.keys("ipv4", "addresses1")
    old_gw = addresses[0][1].split(",", 1)[1].strip() if addresses and "," in addresses[0][1] else ""
    gateway = str(st.gateway) if st.gateway is not None else old_gw
    has_gateway_key = bool(ini.keys("ipv4", "gateway"))
    value = f"{st.cidr},{gateway}" if old_gw and gateway and not has_gateway_key else st.cidr
    if addresses:
        key = "address1" if ini.keys("ipv4", "address1") else "addresses1"
        ini.replace(addresses[0][0], key, value)
    else:
        ini.add("ipv4", "address1", value)
    if st.gateway is not None and (has_gateway_key or not old_gw):
        ini.set("ipv4", "gateway", str(st.gateway))
    return ini.text()


def _networkd(text: str, st: Static | None) -> str | None:
    ini = _Ini(text)
    names = " ".join(v for _, v in ini.keys("Match", "Name")).split()
    if not ini.sections("Network") or names == ["lo"]:
        return None
    if st is None:
        return text
    for index, value in ini.keys("Network", "DHCP"):
        # DHCP=yes asked for both families: keep IPv6's, drop IPv4's.
        if value.lower() in ("yes", "true", "both", "1", "on"):
            ini.replace(index, "DHCP", "ipv6")
        elif value.lower() in ("ipv4", "v4"):
            ini.replace(index, "DHCP", "no")
    addresses = [(i, v) for i, v in ini.keys("Network", "Address") + ini.keys("Address", "Address") if _is_v4(v)]
    if addresses:
        ini.replace(addresses[0][0], "Address", st.cidr)
    else:
        ini.add("Network", "Address", st.cidr)
    if st.gateway is not None:
        gateways = [(i, v) for i, v in ini.keys("Network", "Gateway") + ini.keys("Route", "Gateway") if _is_v4(v)]
        if gateways:
            ini.replace(gateways[0][0], "Gateway", str(st.gateway))
        else:
            ini.add("Network", "Gateway", str(st.gateway))
    return ini.text()


# --- netplan -------------------------------------------------------------------------------------------------------

_YAML_KEY = re.compile(r"^(\s*)([A-Za-z0-9_.\-\"']+):\s*(.*?)\s*(#.*)?$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """The first line after `start` that is not blank or a comment and is indented at most `indent`."""
    for j in range(start + 1, len(lines)):
        stripped = lines[j].strip()
        if not stripped or stripped.startswith("#"):
            continue
        # YAML lets a key's sequence start at the key's own indentation ("routes:\n- to: ...").
        if _indent(lines[j]) < indent or (_indent(lines[j]) == indent and not stripped.startswith("- ")):
            return j
    return len(lines)


def _netplan_interface(lines: list[str], old_mac: str) -> tuple[int, int] | None:
    """(line of the interface key, end of its block) under `ethernets:`, the one naming `old_mac` first."""
    found: list[tuple[int, int]] = []
    for i, line in enumerate(lines):
        m = _YAML_KEY.match(line)
        if not m or m.group(2) != "ethernets":
            continue
        if m.group(3):
            raise Dom0Error("netplan: `ethernets:` in flow style ({...}) is not edited by dom0", "use block style")
        end = _block_end(lines, i, _indent(line))
        j = i + 1
        while j < end:
            km = _YAML_KEY.match(lines[j])
            if km and not lines[j].strip().startswith("#"):
                if km.group(3):
                    raise Dom0Error(f"netplan: interface {km.group(2)} is in flow style", "use block style")
                block_end = _block_end(lines, j, _indent(lines[j]))
                found.append((j, block_end))
                j = block_end
            else:
                j += 1
    if not found:
        return None
    for start, end in found:
        if old_mac and names_mac("\n".join(lines[start:end]), old_mac):
            return start, end
    return found[0]


def _netplan(text: str, st: Static | None, old_mac: str) -> str | None:
    lines = text.splitlines()
    where = _netplan_interface(lines, old_mac)
    if where is None:
        return None
    if st is None:
        return text
    start, end = where
    children = [j for j in range(start + 1, end) if lines[j].strip() and not lines[j].lstrip().startswith("#")]
    child = _indent(lines[children[0]]) if children else _indent(lines[start]) + 2
    pad = " " * child
    keys: dict[str, int] = {}
    for j in children:
        m = _YAML_KEY.match(lines[j])
        if m and _indent(lines[j]) == child:
            keys.setdefault(m.group(2), j)
    inserts: list[str] = []
    if "dhcp4" in keys:
        m = _YAML_KEY.match(lines[keys["dhcp4"]])
        assert m is not None
        value = {"yes": "no", "on": "off"}.get(m.group(3).lower(), "false")
        lines[keys["dhcp4"]] = f"{pad}dhcp4: {value}"
    if "addresses" in keys:
        _netplan_addresses(lines, keys["addresses"], end, child, st.cidr)
    else:
        inserts.append(f"{pad}addresses: [{st.cidr}]")
    if st.gateway is not None:
        gw = str(st.gateway)
        if "gateway4" in keys:
            lines[keys["gateway4"]] = f"{pad}gateway4: {gw}"
        elif "routes" in keys and _netplan_default_via(lines, keys["routes"], end, child, gw):
            pass
        elif "routes" in keys:
            item = _indent(lines[keys["routes"] + 1]) if keys["routes"] + 1 < end else child + 2
            lines[keys["routes"] + 1 : keys["routes"] + 1] = [
                " " * item + "- to: 0.0.0.0/0", " " * (item + 2) + f"via: {gw}",
            ]  # fmt: skip
        else:
            inserts += [f"{pad}routes:", f"{pad}  - to: 0.0.0.0/0", f"{pad}    via: {gw}"]
    lines[start + 1 : start + 1] = inserts
    return "\n".join(lines) + "\n"


def _netplan_addresses(lines: list[str], at: int, end: int, child: int, cidr: str) -> None:
    m = _YAML_KEY.match(lines[at])
    assert m is not None
    inline = m.group(3)
    if inline.startswith("["):
        items = [x.strip() for x in inline.strip("[]").split(",") if x.strip()]
        kept = [x for x in items if not _is_v4(x.strip("\"'"))]
        lines[at] = " " * child + f"addresses: [{', '.join([cidr, *kept])}]" + (f" {m.group(4)}" if m.group(4) else "")
        return
    first = True
    j = at + 1
    while j < end and (not lines[j].strip() or _indent(lines[j]) > child or lines[j].lstrip().startswith("- ")):
        item = lines[j].strip()
        if item.startswith("- ") and _is_v4(item[2:].strip().strip("\"'")):
            if first:
                quote = item[2:].strip()[0] if item[2:].strip()[:1] in ("'", '"') else ""
                lines[j] = lines[j][: _indent(lines[j])] + f"- {quote}{cidr}{quote}"
                first = False
            else:
                del lines[j]
                end -= 1
                continue
        j += 1
    if first:
        item_indent = (
            _indent(lines[at + 1]) if at + 1 < len(lines) and lines[at + 1].lstrip().startswith("-") else child + 2
        )
        lines.insert(at + 1, " " * item_indent + f"- {cidr}")


def _netplan_default_via(lines: list[str], at: int, end: int, child: int, gateway: str) -> bool:
    """Point the default route's `via:` under `routes:` at `gateway`; False when there is no default route."""
    block = _block_end(lines, at, child)
    is_default = False
    for j in range(at + 1, min(block, end)):
        stripped = lines[j].strip()
        if stripped.startswith("- "):
            is_default, stripped = False, stripped[2:]
        m = _YAML_KEY.match(stripped)
        if not m:
            continue
        if m.group(2) == "to":
            is_default = m.group(3).strip("\"'") in ("default", "0.0.0.0/0")
        elif m.group(2) == "via" and is_default and _is_v4(m.group(3).strip("\"'")):
            lines[j] = lines[j].replace(m.group(3), gateway, 1)
            return True
    return False


# --- choosing and writing ------------------------------------------------------------------------------------------


def set_static(config: NetConfig, st: Static | None, old_mac: str = "") -> str | None:
    """The config's text with `st` as its first NIC's address; None when the file configures no NIC.
    With `st` None: the text unchanged when it configures a NIC (a probe)."""
    if config.format == IFUPDOWN:
        return _ifupdown(config.text, st)
    if config.format in (IFCFG, SUSE_IFCFG):
        return _ifcfg(config.text, st, config.format == SUSE_IFCFG)
    if config.format == NETPLAN:
        return _netplan(config.text, st, old_mac)
    if config.format == NM:
        return _nm(config.text, st)
    if config.format == NETWORKD:
        return _networkd(config.text, st)
    return None


def _preference(system: OperatingSystem) -> tuple[str, ...]:
    # Netplan, where present, generates the NetworkManager or networkd files: it is what the admin edits.
    family = system.package_format
    if system.distro in ("sles", "sled", "opensuse", "opensuse-leap", "opensuse-tumbleweed"):
        return (NETPLAN, SUSE_IFCFG, NM, NETWORKD, IFUPDOWN, IFCFG)
    if family == "rpm":
        return (NETPLAN, NM, IFCFG, NETWORKD, IFUPDOWN, SUSE_IFCFG)
    if family in ("deb", "apk"):
        return (NETPLAN, IFUPDOWN, NM, NETWORKD, IFCFG, SUSE_IFCFG)
    return (NETPLAN, NETWORKD, NM, IFUPDOWN, IFCFG, SUSE_IFCFG)


def choose(configs: list[NetConfig], system: OperatingSystem, old_mac: str) -> NetConfig | None:
    """The file that configures the guest's first NIC: one naming its MAC, else the distribution's usual format."""
    order = _preference(system)
    nics = [c for c in configs if c.format in order and set_static(c, None, old_mac) is not None]
    nics.sort(key=lambda c: order.index(c.format))
    named = [c for c in nics if names_mac(c.text, old_mac)]
    best = named or nics
    return best[0] if best else None


def new_config(tree: ResolvingTree, system: OperatingSystem, st: Static, mac: str) -> NetConfig:
    """A configuration for the first NIC when the guest has none, in the format its distribution reads."""
    config = _new_config(tree, system, st, mac)
    directory = config.path.rsplit("/", 1)[0]
    if not tree.is_dir(directory):
        raise Dom0Error(
            f"the guest ({system.product_name}) has no network configuration, and no {directory} to write one in",
            "clone without --ip and set the address inside the clone after its first boot",
        )
    return config


def _new_config(tree: ResolvingTree, system: OperatingSystem, st: Static, mac: str) -> NetConfig:
    major = int(m.group(1)) if (m := re.match(r"(\d+)", system.version or "")) else 0
    gw = str(st.gateway) if st.gateway is not None else ""
    if tree.is_dir("/etc/netplan"):
        match = f"      match:\n        macaddress: {mac}\n" if mac else ""
        route = f"      routes:\n        - to: 0.0.0.0/0\n          via: {gw}\n" if gw else ""
        name = "clone0" if mac else "eth0"
        text = f"network:\n  version: 2\n  ethernets:\n    {name}:\n{match}      addresses: [{st.cidr}]\n{route}"
        return NetConfig("/etc/netplan/60-dom0-clone.yaml", NETPLAN, text)
    if system.distro in ("sles", "sled", "opensuse", "opensuse-leap"):
        text = f"BOOTPROTO='static'\nSTARTMODE='auto'\nIPADDR='{st.cidr}'\n"
        return NetConfig("/etc/sysconfig/network/ifcfg-eth0", SUSE_IFCFG, text)
    fedora = system.distro == "fedora"
    nm_first = (fedora and major >= 33) or (not fedora and system.package_format == "rpm" and major >= 9)
    if system.package_format == "rpm" and not nm_first:
        text = f"DEVICE=eth0\n{f'HWADDR={mac}' + chr(10) if mac else ''}BOOTPROTO=none\nONBOOT=yes\n"
        text += f"IPADDR={st.ip}\nPREFIX={st.prefix}\n" + (f"GATEWAY={gw}\n" if gw else "")
        return NetConfig("/etc/sysconfig/network-scripts/ifcfg-eth0", IFCFG, text)
    if nm_first or tree.is_dir("/etc/NetworkManager/system-connections"):
        text = "[connection]\nid=clone0\ntype=ethernet\n\n[ethernet]\n" + (f"mac-address={mac}\n" if mac else "")
        text += f"\n[ipv4]\nmethod=manual\naddress1={st.cidr}\n" + (f"gateway={gw}\n" if gw else "")
        return NetConfig("/etc/NetworkManager/system-connections/clone0.nmconnection", NM, text)
    if system.package_format in ("deb", "apk") or tree.is_file("/etc/network/interfaces"):
        old = regular_text(tree, "/etc/network/interfaces") or ""
        sep = "" if not old or old.endswith("\n\n") else ("\n" if old.endswith("\n") else "\n\n")
        stanza = f"auto eth0\niface eth0 inet static\n    address {st.ip}\n    netmask {st.netmask}\n"
        return NetConfig(
            "/etc/network/interfaces", IFUPDOWN, old + sep + stanza + (f"    gateway {gw}\n" if gw else "")
        )
    match = f"MACAddress={mac}" if mac else "Name=en* eth*"
    text = f"[Match]\n{match}\n\n[Network]\nAddress={st.cidr}\n" + (f"Gateway={gw}\n" if gw else "")
    return NetConfig("/etc/systemd/network/60-dom0-clone.network", NETWORKD, text)
