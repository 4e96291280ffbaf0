"""Netplan (/etc/netplan/*.yaml): an interface under `ethernets:`, edited line by line so no YAML library
reformats the administrator's file. Block style only: an `ethernets:` or interface in flow style is refused."""

from __future__ import annotations

import re

from dom0.errors import Dom0Error
from dom0.guest.net.common import NETPLAN, NetConfig, Static, is_v4, names_mac

DIRECTORY = "/etc/netplan"

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


def _interface(lines: list[str], old_mac: str) -> tuple[int, int] | None:
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


def set_static(text: str, st: Static | None, old_mac: str) -> str | None:
    """`text` with `st` on the interface naming `old_mac` (else the first under `ethernets:`): dhcp4 off, the
    first IPv4 address replaced (IPv6 ones kept), the default route through the gateway; None when the file has
    no ethernets; with `st` None, `text` itself when it has. Dom0Error for flow style."""
    lines = text.splitlines()
    where = _interface(lines, old_mac)
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
        _addresses(lines, keys["addresses"], end, child, st.cidr)
    else:
        inserts.append(f"{pad}addresses: [{st.cidr}]")
    if st.gateway is not None:
        gw = str(st.gateway)
        if "gateway4" in keys:
            lines[keys["gateway4"]] = f"{pad}gateway4: {gw}"
        elif "routes" in keys and _default_via(lines, keys["routes"], end, child, gw):
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


def _addresses(lines: list[str], at: int, end: int, child: int, cidr: str) -> None:
    m = _YAML_KEY.match(lines[at])
    assert m is not None
    inline = m.group(3)
    if inline.startswith("["):
        items = [x.strip() for x in inline.strip("[]").split(",") if x.strip()]
        kept = [x for x in items if not is_v4(x.strip("\"'"))]
        lines[at] = " " * child + f"addresses: [{', '.join([cidr, *kept])}]" + (f" {m.group(4)}" if m.group(4) else "")
        return
    first = True
    j = at + 1
    while j < end and (not lines[j].strip() or _indent(lines[j]) > child or lines[j].lstrip().startswith("- ")):
        item = lines[j].strip()
        if item.startswith("- ") and is_v4(item[2:].strip().strip("\"'")):
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


def _default_via(lines: list[str], at: int, end: int, child: int, gateway: str) -> bool:
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
        elif m.group(2) == "via" and is_default and is_v4(m.group(3).strip("\"'")):
            lines[j] = lines[j].replace(m.group(3), gateway, 1)
            return True
    return False


def new_config(st: Static, mac: str) -> NetConfig:
    """A netplan file for `st`: an interface matched by `mac` when one is given, else eth0."""
    gw = str(st.gateway) if st.gateway is not None else ""
    match = f"      match:\n        macaddress: {mac}\n" if mac else ""
    route = f"      routes:\n        - to: 0.0.0.0/0\n          via: {gw}\n" if gw else ""
    name = "clone0" if mac else "eth0"
    text = f"network:\n  version: 2\n  ethernets:\n    {name}:\n{match}      addresses: [{st.cidr}]\n{route}"
    return NetConfig(f"{DIRECTORY}/60-dom0-clone.yaml", NETPLAN, text)
