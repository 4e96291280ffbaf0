"""Red Hat's ifcfg files (/etc/sysconfig/network-scripts) and SUSE's (/etc/sysconfig/network): KEY=value lines,
plus where each keeps the default gateway when it is not in the interface's own file."""

from __future__ import annotations

import re

from dom0.guest.net.common import IFCFG, SUSE_IFCFG, NetConfig, Static

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


def _is_nic(kv: _KeyValues) -> bool:
    return (
        kv.get("DEVICE") != "lo"
        and kv.get("MASTER") is None
        and kv.get("SLAVE") not in ("yes", "YES")
        and (kv.get("TYPE") or "Ethernet").lower() == "ethernet"
    )


def set_static(text: str, st: Static | None, suse: bool) -> str | None:
    """`text` with `st` as the interface's address (SUSE's quoting and keys when `suse`); None when the file is
    not an Ethernet NIC's (loopback, bond or bridge member); with `st` None, `text` itself when it is."""
    kv = _KeyValues(text, "'" if suse else "")
    if not _is_nic(kv):
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


def new_suse_config(st: Static) -> NetConfig:
    """SUSE's ifcfg-eth0 for `st` (wicked takes the prefix with the address; the gateway goes in `routes`)."""
    text = f"BOOTPROTO='static'\nSTARTMODE='auto'\nIPADDR='{st.cidr}'\n"
    return NetConfig("/etc/sysconfig/network/ifcfg-eth0", SUSE_IFCFG, text)


def new_rhel_config(st: Static, mac: str) -> NetConfig:
    """Red Hat's ifcfg-eth0 for `st`, tied to `mac` when one is given."""
    gw = str(st.gateway) if st.gateway is not None else ""
    text = f"DEVICE=eth0\n{f'HWADDR={mac}' + chr(10) if mac else ''}BOOTPROTO=none\nONBOOT=yes\n"
    text += f"IPADDR={st.ip}\nPREFIX={st.prefix}\n" + (f"GATEWAY={gw}\n" if gw else "")
    return NetConfig("/etc/sysconfig/network-scripts/ifcfg-eth0", IFCFG, text)
