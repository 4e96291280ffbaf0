"""Netplan (/etc/netplan/*.yaml), read for bonds, bridges and MTUs.

Read with PyYAML's safe composer, keeping each key's line for the findings; scalars stay the text the file has
(netplan gives them meaning per key). Files are merged in name order, a later file's keys winning, as netplan
merges them. A file that is not YAML is named with its line and not read at all: half a file would give wrong
findings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from dom0.hostnet.model import Bond, Bridge, Link, Source, bond_mode
from dom0.hostnet.networkd import time_ms
from dom0.hostnet.rootfiles import HostFiles

DIRECTORY = "/etc/netplan"
# A netplan file has tens of nodes; aliases can make a small file expand without end ("billion laughs").
MAX_NODES = 100_000


class YamlError(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


class Mapping(dict[str, Any]):
    """A YAML mapping that remembers the line of each key."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[str, int] = {}


def _value(node: yaml.Node, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise YamlError(node.start_mark.line + 1, f"more than {MAX_NODES} values (aliases expanding?)")
    if isinstance(node, yaml.MappingNode):
        out = Mapping()
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else ""
            if key in out:
                raise YamlError(key_node.start_mark.line + 1, f"the key {key} twice in one mapping")
            out[key] = _value(value_node, budget)
            out.lines[key] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_value(v, budget) for v in node.value]
    value = node.value
    return None if node.tag == "tag:yaml.org,2002:null" else str(value)


def parse(text: str) -> Any:
    """The document in `text`, mappings as `Mapping`s and every scalar as its text; YamlError with a line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlError(mark.line + 1 if mark else 0, str(exc.problem or exc.context or "not YAML")) from None
    except yaml.YAMLError as exc:
        raise YamlError(0, str(exc).splitlines()[0]) from None
    return None if node is None else _value(node, [MAX_NODES])


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
        except YamlError as exc:
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
