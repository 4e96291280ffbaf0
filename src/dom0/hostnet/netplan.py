"""Netplan (/etc/netplan/*.yaml), read for bonds, bridges and MTUs.

No YAML library is a dependency of dom0, so this reads the part of YAML netplan files are written in: block
mappings and sequences, `[a, b]` and `{}` / `{k: v}` flow collections on one line, plain and quoted scalars, and
comments. Anchors, aliases, tags and multi-line scalars are refused with the file and line (the file is then not
read at all: half a file would give wrong findings). Files are merged in name order, a later file's keys winning,
as netplan merges them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from dom0.hostnet.model import Bond, Bridge, Link, Source, bond_mode
from dom0.hostnet.networkd import time_ms
from dom0.hostnet.rootfiles import HostFiles

DIRECTORY = "/etc/netplan"
# Netplan files nest five or six levels; a file nested deeper than this is not a network configuration.
MAX_NESTING = 32


class YamlSubsetError(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


class Mapping(dict[str, Any]):
    """A YAML mapping that remembers the line of each key."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[str, int] = {}


@dataclass(frozen=True)
class _Line:
    number: int
    indent: int
    text: str


_KEY = re.compile(
    r"""^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s"'#:\[\]{},&*!|>-][^:#]*?|-[^\s:#][^:#]*?)\s*:(?:\s+(.*))?$"""
)


def _strip_comment(text: str) -> str:
    quote = ""
    for i, c in enumerate(text):
        if quote:
            if c == quote:
                quote = ""
        elif c in "\"'" and (i == 0 or text[i - 1] in " [{,:-"):
            quote = c
        elif c == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
    return text.rstrip()


def _lines(text: str) -> list[_Line]:
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        body = _strip_comment(raw)
        if not body.strip():
            continue
        if body.lstrip(" ").startswith("\t") or "\t" in body[: len(body) - len(body.lstrip())]:
            raise YamlSubsetError(number, "a tab in the indentation (YAML allows only spaces)")
        stripped = body.strip()
        if stripped in ("---", "...") or stripped.startswith("%"):
            continue
        out.append(_Line(number, len(body) - len(body.lstrip(" ")), stripped))
    return out


def _scalar(text: str, number: int) -> Any:
    text = text.strip()
    if text[:1] in "&*!|>" and text:
        raise YamlSubsetError(number, f"YAML dom0 does not read here ({text[:1]}: anchors, tags, block scalars)")
    if text.startswith("["):
        if not text.endswith("]") or "[" in text[1:-1] or "{" in text[1:-1]:
            raise YamlSubsetError(number, "a flow sequence dom0 does not read (nested or spanning lines)")
        return [_scalar(v, number) for v in text[1:-1].split(",") if v.strip()]
    if text.startswith("{"):
        if not text.endswith("}") or "{" in text[1:-1] or "[" in text[1:-1]:
            raise YamlSubsetError(number, "a flow mapping dom0 does not read (nested or spanning lines)")
        m = Mapping()
        for item in (v for v in text[1:-1].split(",") if v.strip()):
            key, _, value = item.partition(":")
            m[_unquote(key.strip())] = _scalar(value, number) if value.strip() else None
            m.lines[_unquote(key.strip())] = number
        return m
    return _unquote(text)


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    return text


def _block(lines: list[_Line], i: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_NESTING:
        raise YamlSubsetError(lines[i].number, f"nested more than {MAX_NESTING} levels")
    if _is_item(lines[i].text):
        return _sequence(lines, i, lines[i].indent, depth)
    return _mapping(lines, i, lines[i].indent, depth)


def _is_item(text: str) -> bool:
    return text == "-" or text.startswith("- ")


def _child(lines: list[_Line], i: int, indent: int, depth: int, *, same: bool) -> tuple[Any, int]:
    """The value of a key (`same`: its sequence may line up with it) or item whose text ended on line i-1."""
    if i < len(lines) and (
        lines[i].indent > indent or (same and lines[i].indent == indent and _is_item(lines[i].text))
    ):
        return _block(lines, i, depth + 1)
    return None, i


def _mapping(lines: list[_Line], i: int, indent: int, depth: int) -> tuple[Mapping, int]:
    out = Mapping()
    while i < len(lines) and lines[i].indent == indent and not _is_item(lines[i].text):
        line = lines[i]
        m = _KEY.match(line.text)
        if not m:
            raise YamlSubsetError(line.number, "not a `key: value` line")
        key = _unquote(m.group(1).strip())
        rest = m.group(2)
        if rest:
            value, i = _scalar(rest, line.number), i + 1
        else:
            value, i = _child(lines, i + 1, indent, depth, same=True)
        if key in out:
            raise YamlSubsetError(line.number, f"the key {key} twice in one mapping")
        out[key] = value
        out.lines[key] = line.number
    if i < len(lines) and lines[i].indent > indent:
        raise YamlSubsetError(lines[i].number, "indented more than the lines before it")
    return out, i


def _sequence(lines: list[_Line], i: int, indent: int, depth: int) -> tuple[list[Any], int]:
    out: list[Any] = []
    while i < len(lines) and lines[i].indent == indent and _is_item(lines[i].text):
        line = lines[i]
        rest = line.text[1:].strip()
        if not rest:
            value, i = _child(lines, i + 1, indent, depth, same=False)
        elif _KEY.match(rest):
            # "- key: value" starts a mapping whose keys line up with `key`.
            inner = indent + (len(line.text) - len(rest))
            lines[i] = _Line(line.number, inner, rest)
            value, i = _mapping(lines, i, inner, depth + 1)
        else:
            value, i = _scalar(rest, line.number), i + 1
        out.append(value)
    return out, i


def parse(text: str) -> Any:
    """The document in `text` (the subset above); YamlSubsetError with a line number for anything else."""
    lines = _lines(text)
    if not lines:
        return None
    value, i = _block(lines, 0, 0)
    if i < len(lines):
        raise YamlSubsetError(lines[i].number, "a line outside the document's structure")
    return value


def _merge(into: Mapping, new: Mapping) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), Mapping):
            _merge(into[key], value)
        else:
            into[key] = value
            into.lines[key] = new.lines[key]


@dataclass
class NetplanConfig:
    sources: list[Source] = field(default_factory=list)
    bonds: list[Bond] = field(default_factory=list)
    bridges: list[Bridge] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)


def _map(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else Mapping()


def _strs(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v) for v in value if isinstance(v, str))
    return (value,) if isinstance(value, str) else ()


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _ms(value: Any) -> int | None:
    # netplan: "If no time suffix is specified, the value will be interpreted as milliseconds."
    return time_ms(value, "ms") if isinstance(value, str) else None


def read(files: HostFiles) -> NetplanConfig:
    """The bonds and bridges of /etc/netplan/*.yaml, merged in file name order."""
    out = NetplanConfig()
    merged = Mapping()
    origin: dict[tuple[str, str], str] = {}
    for name in files.listdir(DIRECTORY):
        if not name.endswith(".yaml"):
            continue
        path = f"{DIRECTORY}/{name}"
        text = files.read(path)
        if text is None:
            continue
        try:
            doc = parse(text)
        except YamlSubsetError as exc:
            files.note(path, f"line {exc.line}: {exc.reason}: not read")
            continue
        out.sources.append(Source(path, "netplan"))
        network = _map(_map(doc).get("network"))
        for section in ("ethernets", "bonds", "bridges", "vlans"):
            devices = _map(network.get(section))
            for dev in devices:
                origin[(section, dev)] = f"{path}:{devices.lines[dev]}"
        _merge(merged, _map(doc))
    network = _map(merged.get("network"))
    for section in ("ethernets", "vlans"):
        for dev, conf in _map(network.get(section)).items():
            c = _map(conf)
            out.links.append(Link(dev, _int(c.get("mtu")), _strs(c.get("addresses")), origin[(section, dev)]))
    for dev, conf in _map(network.get("bonds")).items():
        c = _map(conf)
        p = _map(c.get("parameters"))
        mode = p.get("mode")
        out.bonds.append(
            Bond(
                name=dev,
                slaves=_strs(c.get("interfaces")),
                mode=bond_mode(mode) if isinstance(mode, str) else None,
                miimon_ms=_ms(p.get("mii-monitor-interval")),
                arp_interval_ms=_ms(p.get("arp-interval")),
                arp_targets=_strs(p.get("arp-ip-targets")),
                mtu=_int(c.get("mtu")),
                addresses=_strs(c.get("addresses")),
                where=origin[("bonds", dev)],
            )
        )
    for dev, conf in _map(network.get("bridges")).items():
        c = _map(conf)
        stp = _map(c.get("parameters")).get("stp")
        out.bridges.append(
            Bridge(
                name=dev,
                ports=_strs(c.get("interfaces")),
                # netplan turns STP on unless told otherwise
                stp=stp.lower() in ("true", "yes", "on") if isinstance(stp, str) else True,
                mtu=_int(c.get("mtu")),
                addresses=_strs(c.get("addresses")),
                where=origin[("bridges", dev)],
            )
        )
    return out
