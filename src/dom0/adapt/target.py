"""What each hypervisor a guest can be adapted for gives the guest: its console device, NIC driver and disk names.

Xen's paravirtual console is `hvc0` for every pv_ops kernel (mainline since 2.6.26), `xvc0` for the older
"xenified" 2.6.18-era kernels (RHEL/CentOS 5 `kernel-xen`, Debian etch/lenny `-xen`, SLES 10/11 `-xen`), whose
network driver is also named `xennet` rather than `xen-netfront`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Target(StrEnum):
    XEN_PV = "xen-pv"
    XEN_PVH = "xen-pvh"
    XEN_HVM = "xen-hvm"
    KVM = "kvm"

    @property
    def is_xen(self) -> bool:
        return self is not Target.KVM


@dataclass(frozen=True, slots=True)
class Devices:
    """The names a guest sees on one target, for one kind of guest kernel."""

    console: str  # hvc0, xvc0, ttyS0
    nic_driver: str  # xen-netfront, xennet, virtio_net
    disk_prefix: str  # xvd, vd; "" where the guest keeps its own disk names (emulated)


def devices(target: Target, *, xenified: bool = False, emulated: bool = False) -> Devices:
    """The console, NIC driver and disk prefix `target` gives a guest; `xenified`: its kernel is a 2.6.18-era
    Xen kernel (console xvc0, driver xennet) rather than pv_ops; `emulated`: an HVM guest whose kernel has no Xen
    PV drivers, so it sees QEMU's emulated NIC (xl's default model, rtl8139) and disks under their old names."""
    if target is Target.KVM:
        return Devices("ttyS0", "virtio_net", "vd")
    if target is Target.XEN_HVM and emulated:
        return Devices("ttyS0", "8139too", "")
    if target is Target.XEN_HVM:
        # HVM's console is the emulated UART; with the PV drivers loaded its disks and NICs are the PV ones
        return Devices("ttyS0", "xennet" if xenified else "xen-netfront", "xvd")
    return Devices("xvc0" if xenified else "hvc0", "xennet" if xenified else "xen-netfront", "xvd")
