"""Debian's ifupdown (/etc/network/interfaces, interfaces.d/): the first non-loopback `iface ... inet` stanza."""

from __future__ import annotations

import re

from dom0.guest.net.common import IFUPDOWN, NetConfig, Static

PATH = "/etc/network/interfaces"

_IFACE = re.compile(r"^(\s*iface\s+(\S+)\s+inet\s+)(\S+)(.*)$")
_STANZA = re.compile(r"^\s*(iface|auto|allow-\S+|mapping|source|source-directory|rename)\b")


def set_static(text: str, st: Static | None) -> str | None:
    """`text` with its first NIC's stanza made static with `st`, each option rewritten where it stands; None when
    it has no such stanza; with `st` None, `text` itself when it has one."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if (m := _IFACE.match(line)) and m.group(2) != "lo"), None)
    if start is None:
        return None
    if st is None:
        return text
    m = _IFACE.match(lines[start])
    assert m is not None
    end = next((j for j in range(start + 1, len(lines)) if _STANZA.match(lines[j])), len(lines))
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


def new_config(old: str, st: Static) -> NetConfig:
    """/etc/network/interfaces with an eth0 stanza for `st` added after `old` (its present text, or "")."""
    gw = f"    gateway {st.gateway}\n" if st.gateway is not None else ""
    sep = "" if not old or old.endswith("\n\n") else ("\n" if old.endswith("\n") else "\n\n")
    stanza = f"auto eth0\niface eth0 inet static\n    address {st.ip}\n    netmask {st.netmask}\n"
    return NetConfig(PATH, IFUPDOWN, old + sep + stanza + gw)
