"""Debian's ifupdown: /etc/network/interfaces and the files it sources, read for bonds, bridges and MTUs.

ifupdown turns each option into an environment variable (`bond-mode` and `bond_mode` both become IF_BOND_MODE),
so `_` and `-` in option names are the same here too. Several `iface` stanzas for one name (inet and inet6) are one
interface. Nothing is run and nothing is followed outside --root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dom0.hostnet.model import Bond, Bridge, Link, Source, bond_mode
from dom0.hostnet.rootfiles import HostFiles

PATH = "/etc/network/interfaces"
# `source` inside a sourced file inside ...: Debian's own setup is two deep; more is a loop or a mistake.
MAX_DEPTH = 8
# run-parts names: what `source-directory` reads (so editor backups such as foo~ or foo.dpkg-old are skipped).
_RUN_PARTS = re.compile(r"^[A-Za-z0-9_-]+$")
_STANZAS = ("iface", "mapping", "auto", "source", "source-directory", "rename", "no-auto-down", "no-scripts")


@dataclass
class _Iface:
    name: str
    where: str
    options: dict[str, tuple[str, str]] = field(default_factory=dict)  # option -> (value, file:line)
    addresses: list[str] = field(default_factory=list)


@dataclass
class IfupdownConfig:
    """What the interfaces files say, and which files were read."""

    sources: list[Source] = field(default_factory=list)
    bonds: list[Bond] = field(default_factory=list)
    bridges: list[Bridge] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    auto: set[str] = field(default_factory=set)


class _Reader:
    def __init__(self, files: HostFiles) -> None:
        self.files = files
        self.ifaces: dict[str, _Iface] = {}
        self.order: list[str] = []
        self.sources: list[Source] = []
        self.auto: set[str] = set()
        self.seen: set[str] = set()
        self.current: _Iface | None = None

    def read_file(self, path: str, depth: int) -> None:
        real = self.files.realpath(path) or path
        if real in self.seen:
            self.files.note(path, "sourced again (a loop of source lines): read once")
            return
        if depth > MAX_DEPTH:
            self.files.note(path, f"sourced more than {MAX_DEPTH} files deep: not read")
            return
        text = self.files.read(path)
        if text is None:
            return
        self.seen.add(real)
        self.sources.append(Source(path, "ifupdown"))
        self.current = None
        for number, line in _logical_lines(text):
            self._line(path, number, line, depth)
        self.current = None

    def _line(self, path: str, number: int, line: str, depth: int) -> None:
        words = line.split()
        head = words[0]
        where = f"{path}:{number}"
        if head == "iface" and len(words) >= 2:
            name = words[1]
            if name not in self.ifaces:
                self.ifaces[name] = _Iface(name, where)
                self.order.append(name)
            self.current = self.ifaces[name]
        elif head == "auto" or head.startswith("allow-"):
            self.auto.update(words[1:])
            self.current = None
        elif head in ("source", "source-directory"):
            self.current = None
            for pattern in words[1:]:
                self._include(path, head, pattern, depth)
        elif head in _STANZAS:
            self.current = None
        elif self.current is not None:
            key = head.replace("_", "-")
            value = " ".join(words[1:])
            if key == "address":
                self.current.addresses.append(value)
            self.current.options.setdefault(key, (value, where))

    def _include(self, path: str, how: str, pattern: str, depth: int) -> None:
        if not pattern.startswith("/"):  # relative to the directory of the file that names it
            pattern = path.rsplit("/", 1)[0] + "/" + pattern
        if how == "source":
            for found in self.files.glob(pattern):
                if not self.files.is_dir(found):
                    self.read_file(found, depth + 1)
            return
        for directory in self.files.glob(pattern):
            real = self.files.realpath(directory) or directory
            if real in self.seen:
                self.files.note(directory, "a source-directory loop: read once")
                continue
            self.seen.add(real)
            for name in self.files.listdir(directory):
                if _RUN_PARTS.match(name):
                    self.read_file(f"{directory.rstrip('/')}/{name}", depth + 1)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each non-comment line, backslash continuations joined."""
    out: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
            if raw.lstrip().startswith("#"):
                continue
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        if line:
            out.append((start, line))
    if pending.strip():
        out.append((start, pending.strip()))
    return out


def _ms(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return max(0, int(value))
    except ValueError:
        return None


def _list(value: str | None) -> tuple[str, ...]:
    if value is None or value.strip().lower() == "none":
        return ()
    return tuple(v for v in re.split(r"[\s,]+", value) if v)


def _opt(iface: _Iface, *keys: str) -> str | None:
    for key in keys:
        if key in iface.options:
            return iface.options[key][0]
    return None


def _mtu(iface: _Iface) -> int | None:
    value = _opt(iface, "mtu")
    return int(value) if value and value.isdigit() else None


def read(files: HostFiles) -> IfupdownConfig:
    """The bonds, bridges and links /etc/network/interfaces (and what it sources) configure."""
    reader = _Reader(files)
    reader.read_file(PATH, 0)
    out = IfupdownConfig(sources=reader.sources, auto=reader.auto)
    # A slave may name its bond instead (`bond-master bond0` with `bond-slaves none` on the bond).
    by_master: dict[str, list[str]] = {}
    for name in reader.order:
        master = _opt(reader.ifaces[name], "bond-master")
        if master:
            by_master.setdefault(master, []).append(name)
    for name in reader.order:
        iface = reader.ifaces[name]
        slaves_opt = _opt(iface, "bond-slaves", "slaves")
        is_bond = slaves_opt is not None or name in by_master or any(k.startswith("bond-") for k in iface.options)
        is_bond = is_bond and "bond-master" not in iface.options
        ports_opt = _opt(iface, "bridge-ports")
        if ports_opt is not None:
            stp = _opt(iface, "bridge-stp")
            out.bridges.append(
                Bridge(
                    name=name,
                    ports=_list(ports_opt),
                    stp=None if stp is None else stp.lower() in ("on", "yes", "true", "1"),
                    mtu=_mtu(iface),
                    addresses=tuple(iface.addresses),
                    where=iface.where,
                )
            )
        elif is_bond:
            mode = _opt(iface, "bond-mode")
            out.bonds.append(
                Bond(
                    name=name,
                    slaves=tuple(dict.fromkeys(_list(slaves_opt) + tuple(by_master.get(name, ())))),
                    mode=bond_mode(mode) if mode else None,
                    miimon_ms=_ms(_opt(iface, "bond-miimon", "miimon")),
                    arp_interval_ms=_ms(_opt(iface, "bond-arp-interval", "arp-interval")),
                    arp_targets=_list(_opt(iface, "bond-arp-ip-target", "arp-ip-target")),
                    mtu=_mtu(iface),
                    addresses=tuple(iface.addresses),
                    where=iface.where,
                )
            )
        elif name != "lo":
            out.links.append(Link(name, _mtu(iface), tuple(iface.addresses), iface.where))
    return out
