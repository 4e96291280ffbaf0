"""NetworkManager keyfiles (/etc/NetworkManager/system-connections/*.nmconnection): the [ipv4] section of an
Ethernet connection."""

from __future__ import annotations

from dom0.guest.net.common import NM, Ini, NetConfig, Static

DIRECTORY = "/etc/NetworkManager/system-connections"


def set_static(text: str, st: Static | None) -> str | None:
    """`text` with a manual [ipv4] method and `st` as address1 (the gateway kept where the file had it: a `gateway`
    key or after the address's comma); None when the connection is not Ethernet; with `st` None, `text` itself
    when it is."""
    ini = Ini(text)
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


def new_config(st: Static, mac: str) -> NetConfig:
    """A keyfile `clone0` for `st`, tied to `mac` when one is given."""
    gw = f"gateway={st.gateway}\n" if st.gateway is not None else ""
    text = "[connection]\nid=clone0\ntype=ethernet\n\n[ethernet]\n" + (f"mac-address={mac}\n" if mac else "")
    text += f"\n[ipv4]\nmethod=manual\naddress1={st.cidr}\n" + gw
    return NetConfig(f"{DIRECTORY}/clone0.nmconnection", NM, text)
