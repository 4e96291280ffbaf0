"""NIC driver aliases: `alias eth0 tg3` in /etc/modprobe.conf (Red Hat 5 and before), /etc/modules.conf (2.4
kernels) or /etc/modprobe.d/ ties the interface to the physical host's driver, so the guest boots without network.
Each such line becomes the target's driver, the old one kept as a comment above it."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from dom0.adapt.target import Devices
from dom0.guest.net import names_in

if TYPE_CHECKING:
    from dom0.adapt.files import Draft

MODPROBE_FILES = ("/etc/modprobe.conf", "/etc/modules.conf")
MODPROBE_DIR = "/etc/modprobe.d"
MARK = "# dom0 adapt:"

# Drivers of real NICs (and of the other hypervisors' NICs) an alias may name; modprobe takes - and _ as one.
PHYSICAL = frozenset({
    "tg3", "e100", "e1000", "e1000e", "8139too", "8139cp", "r8169", "r8168", "bnx2", "bnx2x", "igb", "igbvf", "ixgb",
    "ixgbe", "ixgbevf", "pcnet32", "ne2k_pci", "forcedeth", "sky2", "skge", "via_rhine", "tulip", "b44", "atl1",
    "atl1c", "atl1e", "alx", "sis900", "natsemi", "dl2k", "myri10ge", "netxen_nic", "be2net", "mlx4_en", "vmxnet",
    "vmxnet3", "hv_netvsc",
})  # fmt: skip
PARAVIRT = frozenset({"xennet", "xen_netfront", "virtio_net"})

_ALIAS = re.compile(r"^(\s*)alias(\s+)(eth\d+|en\w+)(\s+)(\S+)(\s*(?:#.*)?)$")


def _norm(driver: str) -> str:
    return driver.replace("-", "_")


def plan(draft: Draft, devices: Devices) -> None:
    """Change every alias naming a driver the target's NIC does not use."""
    for path in _files(draft):
        text = draft.read(path)
        if text is None:
            continue
        lines = text.splitlines(keepends=True)
        out: list[str] = []
        changed: list[str] = []
        for line in lines:
            body = line.rstrip("\r\n")
            m = _ALIAS.match(body)
            driver = m.group(5) if m else ""
            if not m or _norm(driver) == _norm(devices.nic_driver):
                out.append(line)
                continue
            if _norm(driver) not in PHYSICAL | PARAVIRT:
                draft.note(f"{path}: {m.group(3)} is tied to {driver}, a driver dom0 does not know: left alone")
                out.append(line)
                continue
            ending = line[len(body) :] or "\n"
            new = f"{m.group(1)}alias{m.group(2)}{m.group(3)}{m.group(4)}{devices.nic_driver}{ending}"
            out += [f"{MARK} {driver} is not the NIC's driver here, was:{ending}", f"#{body}{ending}", new]
            changed.append(f"{m.group(3)} {driver} -> {devices.nic_driver}")
        if changed:
            draft.update(path, "".join(out), "network driver: " + ", ".join(changed))


def _files(draft: Draft) -> list[str]:
    paths = [p for p in MODPROBE_FILES if draft.lexists(p)]
    if draft.lexists(MODPROBE_DIR) and not draft.is_dir(MODPROBE_DIR):
        draft.note(f"{MODPROBE_DIR} left alone: it is not a directory")
    elif draft.is_dir(MODPROBE_DIR):
        names = names_in(draft.tree, MODPROBE_DIR)
        # Old module-init-tools read every file here (Debian etch's arch-aliases), newer kmod only *.conf.
        paths += [
            f"{MODPROBE_DIR}/{n}" for n in names if not n.startswith(".") and not n.endswith(("~", ".bak", ".dpkg-old"))
        ]
    return paths
