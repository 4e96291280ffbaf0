"""Whether each kernel installed in a guest can boot on a target hypervisor and reach its root disk and network.

A kernel boots as a Xen PV guest only when built for it (CONFIG_XEN, and CONFIG_XEN_PV from 4.14), as PVH only with
CONFIG_XEN_PVH; it finds its root disk only when the block frontend (Xen's blkfront, or virtio_pci + virtio_blk /
virtio_scsi on KVM) is built in or in its initrd, since the root filesystem is where the other modules live; the
network driver may be any installed module. This is read from /boot/config-VERSION, modules.builtin, modules.dep
and the initrd itself; without a config the judgement rests on the version, the flavour and the initrd, and says so.

The 2.6.18-era "xenified" kernels (RHEL/CentOS 5 kernel-xen, Debian etch/lenny and SLES 10/11 -xen, Fedora Core
kernel-xen) boot only as Xen PV guests: their console is xvc0 and their NIC driver xennet.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from dom0.adapt.initrd import InitrdListing, initrd_files, module_name, modules_in
from dom0.adapt.target import Target
from dom0.errors import Dom0Error
from dom0.image.kernels import Kernel, find_kernels
from dom0.image.osinspect import OperatingSystem
from dom0.image.tree import GuestTree

# A distribution's config is ~250 KiB, modules.dep ~1 MiB; more is not a file the kernel's build wrote.
_MAX_CONFIG = 4 * 1024 * 1024
_MAX_MODLIST = 16 * 1024 * 1024
_CONFIG_LINE = re.compile(r"(CONFIG_[A-Za-z0-9_]+)=(.*)|# (CONFIG_[A-Za-z0-9_]+) is not set")


@dataclass(frozen=True)
class _Driver:
    config: str
    modules: tuple[str, ...]  # as modprobe names them; the xenified tree's names last
    name: str
    since: tuple[int, int, int]  # the first mainline release that had it


_XEN_BLK = _Driver("CONFIG_XEN_BLKDEV_FRONTEND", ("xen_blkfront", "xenblk"), "xen-blkfront", (2, 6, 24))
_XEN_NET = _Driver("CONFIG_XEN_NETDEV_FRONTEND", ("xen_netfront", "xennet"), "xen-netfront", (2, 6, 24))
_VIRTIO_PCI = _Driver("CONFIG_VIRTIO_PCI", ("virtio_pci",), "virtio_pci", (2, 6, 25))
_VIRTIO_BLK = _Driver("CONFIG_VIRTIO_BLK", ("virtio_blk",), "virtio_blk", (2, 6, 24))
_VIRTIO_SCSI = _Driver("CONFIG_SCSI_VIRTIO", ("virtio_scsi",), "virtio_scsi", (3, 4, 0))
_VIRTIO_NET = _Driver("CONFIG_VIRTIO_NET", ("virtio_net",), "virtio_net", (2, 6, 24))
# Every driver an initrd is asked about, whatever the target: once each is seen the rest of the initrd changes
# no verdict, and a distribution's initrd is 100+ MiB to decompress.
_ASKED = tuple(frozenset(d.modules) for d in (_XEN_BLK, _XEN_NET, _VIRTIO_PCI, _VIRTIO_BLK, _VIRTIO_SCSI, _VIRTIO_NET))


@dataclass(frozen=True)
class KernelVerdict:
    """One kernel on one target: whether it boots there and reaches its disk and network, and what is missing."""

    kernel: Kernel
    bootable: bool
    xenified: bool
    reasons: tuple[str, ...]
    pv_drivers: bool = True  # xen-hvm: the Xen disk and net frontends are there (else QEMU's emulated devices)

    @property
    def version(self) -> str:
        return self.kernel.version


@dataclass(frozen=True)
class BootCheck:
    """Every installed kernel judged for `target`, newest first, and the package to install when none boots."""

    target: Target
    verdicts: tuple[KernelVerdict, ...]
    install_hint: str | None

    @property
    def best(self) -> KernelVerdict | None:
        """The newest kernel that boots on the target, or None."""
        return next((v for v in self.verdicts if v.bootable), None)


def _release(version: str) -> tuple[int, int, int]:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    if not m:
        return (0, 0, 0)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def _xen_flavour(version: str) -> bool:
    """A -xen flavour: "2.6.18-128.el5xen", "2.6.16.60-0.21-xen", "2.6.18-6-xen-amd64"."""
    return version.endswith("xen") or "-xen-" in version


def parse_config(text: str) -> dict[str, str]:
    """CONFIG_X -> "y", "m", "n" (not set) or the quoted value, from a kernel's .config."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _CONFIG_LINE.match(line.strip())
        if m:
            if m.group(3):
                out[m.group(3)] = "n"
            else:
                out[m.group(1)] = m.group(2).strip()
    return out


K = TypeVar("K")
V = TypeVar("V")

# What was read, per tree: `image inspect` judges four targets, and each would otherwise read every kernel's config,
# module lists and initrd again.
_READ: weakref.WeakKeyDictionary[Any, dict[tuple[str, object], Any]] = weakref.WeakKeyDictionary()


def _once(tree: GuestTree, kind: str, key: K, make: Callable[[], V]) -> V:
    """`make()` once per tree, kind and key; a tree that cannot be referenced weakly is read each time."""
    try:
        cache = _READ.setdefault(tree, {})
    except TypeError:
        return make()
    if (kind, key) not in cache:
        cache[(kind, key)] = make()
    return cast(V, cache[(kind, key)])


def _listing(tree: GuestTree, path: str) -> InitrdListing:
    return _once(tree, "initrd", path, lambda: initrd_files(tree, path, _ASKED))


class _Facts:
    """What the guest's files say about one kernel, each read on first use."""

    def __init__(self, tree: GuestTree, kernel: Kernel) -> None:
        self.tree = tree
        self.kernel = kernel
        self.release = _release(kernel.version)
        self.notes: list[str] = []
        self.config_path = f"/boot/config-{kernel.version}"
        self.config = self._config()
        self.moddir = next(
            (d for d in (f"/lib/modules/{kernel.version}", f"/usr/lib/modules/{kernel.version}") if self._is(d, "dir")),
            None,
        )
        self.builtin = self._modlist("modules.builtin")
        self._installed: frozenset[str] | None = None
        self._initrd: InitrdListing | None = None
        self._initrd_modules: frozenset[str] = frozenset()
        self.xenified = _xen_flavour(kernel.version) or (
            (2, 6, 16) <= self.release < (2, 6, 19) and (self.config or {}).get("CONFIG_XEN") == "y"
        )

    def _is(self, path: str, kind: str) -> bool:
        """Whether `path` is a file or dir in the guest; a symlink loop there is a note, not an error."""
        try:
            return self.tree.is_dir(path) if kind == "dir" else self.tree.is_file(path)
        except Dom0Error as e:
            self.notes.append(f"{path} not read: {e.message}")
            return False

    def _config(self) -> dict[str, str] | None:
        if not self._is(self.config_path, "file"):
            return None
        try:
            return parse_config(self.tree.read_text(self.config_path, _MAX_CONFIG))
        except Dom0Error as e:
            self.notes.append(f"{self.config_path} not read: {e.message}")
            return None

    def _modlist(self, name: str) -> frozenset[str] | None:
        if self.moddir is None or not self._is(f"{self.moddir}/{name}", "file"):
            return None
        try:
            text = self.tree.read_text(f"{self.moddir}/{name}", _MAX_MODLIST)
        except Dom0Error as e:
            self.notes.append(f"{self.moddir}/{name} not read: {e.message}")
            return None
        found = (module_name(line.split(":", 1)[0].strip()) for line in text.splitlines())
        return frozenset(m for m in found if m)

    @property
    def installed(self) -> frozenset[str]:
        """Modules installed for this kernel: from modules.dep, else the places the network drivers live."""
        if self._installed is None:
            listed = self._modlist("modules.dep")
            if listed is None:
                listed = frozenset(
                    m
                    for d in ("kernel/drivers/net", "kernel/drivers/xen/netfront", "kernel/drivers/virtio")
                    if self.moddir is not None and self._is(f"{self.moddir}/{d}", "dir")
                    for f in self.tree.listdir(f"{self.moddir}/{d}")
                    if (m := module_name(f))
                )
            self._installed = listed
        return self._installed

    @property
    def initrd(self) -> InitrdListing | None:
        if self._initrd is None and self.kernel.initrd is not None:
            self._initrd = _listing(self.tree, self.kernel.initrd)
            # the module names once: each driver of each target asks, and an initrd lists thousands of files
            self._initrd_modules = modules_in(self._initrd)
            self.notes.extend(self._initrd.notes)
        return self._initrd

    def state(self, driver: _Driver) -> str:
        """ "y" built in, "m" a module, "n" not built, or "?" when the guest's files do not say."""
        if self.config is not None:
            value = self.config.get(driver.config, "n")
            return value if value in ("y", "m") else "n"
        if self.builtin is not None and self.builtin.intersection(driver.modules):
            return "y"
        if self.builtin is not None or self.installed.intersection(driver.modules):
            return "m"
        return "?"

    def in_initrd(self, driver: _Driver) -> bool:
        return self.initrd is not None and bool(self._initrd_modules.intersection(driver.modules))

    def label(self, driver: _Driver) -> str:
        # xenified trees name their frontends xenblk and xennet
        return driver.modules[-1] if self.xenified and driver.name.startswith("xen-") else driver.name

    def missing_for_root(self, driver: _Driver) -> str | None:
        """Why `driver` cannot be loaded before the root filesystem, or None when it can."""
        state = self.state(driver)
        if state == "y" or self.in_initrd(driver):
            return None
        if state == "?":
            if self.release < driver.since and not (self.xenified and driver.name.startswith("xen-")):
                return f"{self.label(driver)} did not exist yet in Linux {'.'.join(map(str, self.release))}"
            if self.initrd is None or not self.initrd.complete or not self._initrd_modules:
                # no sign of it being a module the initrd lacks (a cut initrd says so in the notes): presumed built in
                return None
        if self.kernel.initrd is None:
            return f"{self.label(driver)} is not built in and {self.kernel.version} has no initrd"
        return f"{self.label(driver)} is neither built in nor in {self.kernel.initrd}"

    def missing_installed(self, driver: _Driver) -> str | None:
        """Why `driver` cannot be loaded once the root filesystem is up, or None when it can."""
        state = self.state(driver)
        if state == "y" or (state == "m" and self.installed.intersection(driver.modules)) or self.in_initrd(driver):
            return None
        if state == "?" and not (self.release < driver.since and not self.xenified):
            return None
        where = self.moddir or f"/lib/modules/{self.kernel.version}"
        return f"{self.label(driver)} is neither built in nor installed in {where}"


def _judge_kernel(facts: _Facts, target: Target) -> KernelVerdict:
    reasons: list[str] = []
    blockers = 0
    pv_drivers = True
    cfg = facts.config
    version = facts.kernel.version
    if facts.xenified and target is not Target.XEN_PV:
        reasons.append(f"{version} is a xenified Xen kernel (2.6.18 era): it boots only as a Xen PV guest")
        return KernelVerdict(facts.kernel, False, True, tuple(reasons))
    if target is Target.XEN_PV:
        option = "CONFIG_XEN_PV" if facts.release >= (4, 14, 0) else "CONFIG_XEN"
        if cfg is not None and cfg.get(option) != "y":
            reasons.append(f"{option} is not =y in {facts.config_path}: no Xen PV support")
            blockers += 1
        elif cfg is None and not facts.xenified and facts.release < (2, 6, 32):
            reasons.append(f"{version} is neither a -xen flavour nor 2.6.32 or later: not built for Xen PV")
            blockers += 1
    if target is Target.XEN_PVH:
        if cfg is not None and cfg.get("CONFIG_XEN_PVH") != "y":
            reasons.append(f"CONFIG_XEN_PVH is not =y in {facts.config_path}: no PVH support")
            blockers += 1
        elif cfg is None and facts.release < (4, 19, 0):
            reasons.append(f"{version} is older than 4.19 and has no {facts.config_path} to show PVH support")
            blockers += 1
    if target.is_xen:
        disk = facts.missing_for_root(_XEN_BLK)
        net = facts.missing_installed(_XEN_NET)
        if target is Target.XEN_HVM:
            pv = [why for why in (disk, net) if why]
            if pv:
                reasons.append("runs on the emulated disk and NIC only: " + "; ".join(pv))
                pv_drivers = False
        else:
            reasons.extend(why for why in (disk, net) if why)
            blockers += sum(1 for why in (disk, net) if why)
    else:
        pci = facts.missing_for_root(_VIRTIO_PCI)
        blk = facts.missing_for_root(_VIRTIO_BLK)
        scsi = facts.missing_for_root(_VIRTIO_SCSI)
        net = facts.missing_installed(_VIRTIO_NET)
        if blk and scsi:
            blk += " (nor is virtio_scsi)"
        problems = [why for why in (pci, blk if scsi else None, net) if why]
        reasons.extend(problems)
        blockers += len(problems)
    if cfg is None:
        reasons.append(f"no {facts.config_path}: judged from the version, flavour and initrd only")
    reasons.extend(facts.notes)
    return KernelVerdict(facts.kernel, blockers == 0, facts.xenified, tuple(reasons), pv_drivers)


def _facts(tree: GuestTree, kernel: Kernel) -> _Facts:
    return _once(tree, "kernel", kernel, lambda: _Facts(tree, kernel))


def judge(tree: GuestTree, system: OperatingSystem, target: Target) -> BootCheck:
    """Every kernel in the guest's /boot judged for `target`, newest first, with the package to install if none
    boots there."""
    kernels = system.kernels or find_kernels(tree)
    verdicts = tuple(_judge_kernel(_facts(tree, k), target) for k in kernels)
    hint = None
    if not any(v.bootable for v in verdicts):
        hint = install_hint(system, target, kernels)
    return BootCheck(target, verdicts, hint)


def _package(system: OperatingSystem, target: Target, kernels: tuple[Kernel, ...]) -> str | None:
    distro = system.distro
    tools = system.package_tools
    m = re.match(r"(\d+)", system.version or "")
    major = int(m.group(1)) if m else None
    xen_pv = target is Target.XEN_PV
    if "dpkg" in tools:
        if distro == "ubuntu":
            return "linux-image-generic"
        i386 = bool(kernels) and all(re.search(r"-(?:486|686|686-pae|686-bigmem|k7)$", k.version) for k in kernels)
        arch = "686" if i386 else "amd64"
        if distro == "debian" and major is not None and major < 6:
            return f"linux-image-2.6-xen-{arch}" if xen_pv else f"linux-image-2.6-{arch}"
        return "linux-image-686-pae" if i386 else "linux-image-amd64"
    if "zypper" in tools:
        old_sle = distro in ("sles", "sled") and major in (10, 11)
        old_opensuse = distro.startswith("opensuse") and major is not None and major < 42
        return "kernel-xen" if xen_pv and (old_sle or old_opensuse) else "kernel-default"
    if "rpm" in tools:
        if xen_pv and distro == "fedora" and major is not None and major <= 8:
            return "kernel-xen"  # Fedora Core 5-8 shipped a separate xenified kernel
        if xen_pv and major == 5:
            return "kernel-xen"
        if xen_pv and major == 4:
            return "kernel-xenU"
        return "kernel"
    if "apk" in tools:
        return "linux-virt"
    if "pacman" in tools:
        return "linux"
    if "emerge" in tools:
        return "sys-kernel/gentoo-kernel-bin"
    return None


def install_hint(system: OperatingSystem, target: Target, kernels: tuple[Kernel, ...]) -> str | None:
    """The sentence naming the package that gives the guest a kernel for `target`, or None when dom0 cannot tell."""
    package = _package(system, target, kernels)
    if package is None:
        return None
    have = ", ".join(k.version for k in kernels) if kernels else "no kernel in /boot"
    return f"install {package} in the guest (it has {have}{' only' if kernels else ''})"
