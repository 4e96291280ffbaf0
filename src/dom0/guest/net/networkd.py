"""systemd-networkd (/etc/systemd/network/*.network): the [Network] section's IPv4 address, gateway and DHCP."""

from __future__ import annotations

from dom0.guest.net.common import NETWORKD, Ini, NetConfig, Static, is_v4


def set_static(text: str, st: Static | None) -> str | None:
    """`text` with `st` as its first IPv4 Address= and Gateway= and DHCP for IPv4 off; None when it configures no
    [Network] or only the loopback; with `st` None, `text` itself when it configures a NIC."""
    ini = Ini(text)
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
    addresses = [(i, v) for i, v in ini.keys("Network", "Address") + ini.keys("Address", "Address") if is_v4(v)]
    if addresses:
        ini.replace(addresses[0][0], "Address", st.cidr)
    else:
        ini.add("Network", "Address", st.cidr)
    if st.gateway is not None:
        gateways = [(i, v) for i, v in ini.keys("Network", "Gateway") + ini.keys("Route", "Gateway") if is_v4(v)]
        if gateways:
            ini.replace(gateways[0][0], "Gateway", str(st.gateway))
        else:
            ini.add("Network", "Gateway", str(st.gateway))
    return ini.text()


def new_config(st: Static, mac: str) -> NetConfig:
    """A .network file for `st`, matching `mac` when one is given (else every en*/eth* NIC)."""
    gw = f"Gateway={st.gateway}\n" if st.gateway is not None else ""
    match = f"MACAddress={mac}" if mac else "Name=en* eth*"
    text = f"[Match]\n{match}\n\n[Network]\nAddress={st.cidr}\n" + gw
    return NetConfig("/etc/systemd/network/60-dom0-clone.network", NETWORKD, text)
