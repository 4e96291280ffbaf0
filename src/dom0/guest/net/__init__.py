"""A guest's network configuration in its own formats: a static IPv4 address and new MACs, the rest kept as it is.

One module a format, as cloud-init's `net/` has them: `ifupdown` (Debian), `ifcfg` (Red Hat and SUSE), `netplan`,
`networkmanager` (keyfiles) and `networkd` (systemd-networkd); `common` holds what they share (finding the files,
the address, MACs, INI syntax). Each format changes only the lines that carry the address, prefix, gateway or
method. This module chooses which file configures the first NIC, and which format a new file is written in.
"""

from __future__ import annotations

import re

from dom0.errors import Dom0Error
from dom0.guest.net import ifcfg, ifupdown, netplan, networkd, networkmanager
from dom0.guest.net.common import (
    IFCFG,
    IFUPDOWN,
    LINK,
    NETPLAN,
    NETWORKD,
    NM,
    PERSISTENT_NET_RULES,
    SUSE_DISTROS,
    SUSE_IFCFG,
    UDEV,
    NetConfig,
    Static,
    check_mac,
    find_configs,
    names_in,
    names_mac,
    regular_text,
    replace_macs,
    static_address,
)
from dom0.guest.net.ifcfg import rhel_gateway, suse_routes
from dom0.image.osinspect import OperatingSystem
from dom0.image.tree import ResolvingTree

__all__ = [
    "IFCFG",
    "IFUPDOWN",
    "LINK",
    "NETPLAN",
    "NETWORKD",
    "NM",
    "PERSISTENT_NET_RULES",
    "SUSE_DISTROS",
    "SUSE_IFCFG",
    "UDEV",
    "NetConfig",
    "Static",
    "check_mac",
    "choose",
    "find_configs",
    "names_in",
    "new_config",
    "regular_text",
    "replace_macs",
    "rhel_gateway",
    "set_static",
    "static_address",
    "suse_routes",
]


def set_static(config: NetConfig, st: Static | None, old_mac: str = "") -> str | None:
    """The config's text with `st` as its first NIC's address; None when the file configures no NIC.
    With `st` None: the text unchanged when it configures a NIC (a probe)."""
    if config.format == IFUPDOWN:
        return ifupdown.set_static(config.text, st)
    if config.format in (IFCFG, SUSE_IFCFG):
        return ifcfg.set_static(config.text, st, config.format == SUSE_IFCFG)
    if config.format == NETPLAN:
        return netplan.set_static(config.text, st, old_mac)
    if config.format == NM:
        return networkmanager.set_static(config.text, st)
    if config.format == NETWORKD:
        return networkd.set_static(config.text, st)
    return None


def _preference(system: OperatingSystem) -> tuple[str, ...]:
    # Netplan, where present, generates the NetworkManager or networkd files: it is what the admin edits.
    family = system.package_format
    if system.distro in SUSE_DISTROS:
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
    if tree.is_dir(netplan.DIRECTORY):
        return netplan.new_config(st, mac)
    # Releases configured by wicked get its ifcfg; Tumbleweed, whose newer installs use NetworkManager, does not.
    if system.distro in ("sles", "sled", "opensuse", "opensuse-leap"):
        return ifcfg.new_suse_config(st)
    fedora = system.distro == "fedora"
    nm_first = (fedora and major >= 33) or (not fedora and system.package_format == "rpm" and major >= 9)
    if system.package_format == "rpm" and not nm_first:
        return ifcfg.new_rhel_config(st, mac)
    if nm_first or tree.is_dir(networkmanager.DIRECTORY):
        return networkmanager.new_config(st, mac)
    if system.package_format in ("deb", "apk") or tree.is_file(ifupdown.PATH):
        return ifupdown.new_config(regular_text(tree, ifupdown.PATH) or "", st)
    return networkd.new_config(st, mac)
