"""Kernels installed in a guest's /boot: finding them, ordering them by version, choosing one, and its root=.

Copying one out for direct kernel boot is `image/bootcopy.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dom0.errors import Dom0Error
from dom0.image.tree import GuestTree

# Kernel image names in /boot. "kernel-" is Gentoo's genkernel naming; vmlinux is what some arches boot uncompressed.
_KERNEL_PREFIXES = ("vmlinuz-", "vmlinux-", "kernel-")
_INITRD_PATTERNS = ("initrd.img-{}", "initrd-{}.img", "initramfs-{}.img", "initrd-{}", "initramfs-{}")
_NOT_KERNELS = re.compile(r"\.(hmac|sig|old|bak|cfg|config)$")

# Kernel and initrd file names, and releases, as distributions write them ("vmlinuz-6.1.0-10-amd64",
# "initramfs-5.14.0-362.8.1.el9_3.x86_64.img"). These names end up in the boot lines an admin pastes into a guest's
# definition, so a name with quotes, spaces, markup or control characters is not taken for a kernel.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]*\Z")

# The root= a kernel or initramfs understands, as an fstab names it: a device path, or a UUID, label or partition
# UUID. Anything else read from the guest's fstab is left out of the printed command line.
_ROOT_DEVICE = re.compile(
    r"(?:/dev/[A-Za-z0-9/_.:+-]+"
    r"|UUID=[0-9A-Fa-f-]+"
    r"|PARTUUID=[0-9A-Fa-f-]+(?:/PARTNROFF=[0-9]+)?"
    r"|(?:LABEL|PARTLABEL)=[A-Za-z0-9/_.:+-]+)\Z"  # Red Hat labelled its / "/"
)


@dataclass(frozen=True)
class Kernel:
    """A kernel in the guest: its release (uname -r), and the guest paths of its image and initrd (or None)."""

    version: str
    kernel: str
    initrd: str | None

    def to_json(self) -> dict[str, str | None]:
        """The JSON shape `image inspect --json` shows for each kernel: version, kernel, initrd."""
        return {"version": self.version, "kernel": self.kernel, "initrd": self.initrd}


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key that orders releases as package managers do: 2.6.18-128.el5 after 2.6.18-92.el5, 6.1.0-10 after 9.

    The text is cut into runs of digits and runs of letters; digits compare as numbers and a digit run is newer than
    a letter run in the same place (as rpm's rpmvercmp does), so "-rc" builds and flavour names sort below numbers.
    """
    key: list[tuple[int, int | str]] = []
    for digits, letters in re.findall(r"(\d+)|([A-Za-z]+)", version):
        key.append((1, int(digits)) if digits else (0, letters))
    return tuple(key)


def _release_of(suffix: str) -> str:
    # Gentoo's genkernel writes kernel-genkernel-x86_64-6.1.67-gentoo: the release is what follows the arch.
    m = re.match(r"genkernel-[^-]+-(.+)$", suffix)
    return m.group(1) if m else suffix


def _flavour_release(tree: GuestTree, flavour: str) -> str | None:
    """Alpine's vmlinuz-virt and Arch's vmlinuz-linux name a flavour; /lib/modules knows the release behind it."""
    for moddir in ("/lib/modules", "/usr/lib/modules"):
        if not tree.is_dir(moddir):
            continue
        matches: list[str] = []
        for release in tree.listdir(moddir):
            if not _PLAIN_NAME.match(release):
                continue
            pkgbase = f"{moddir}/{release}/pkgbase"
            if release.endswith("-" + flavour) or (
                tree.is_file(pkgbase) and tree.read_text(pkgbase).strip() == flavour
            ):
                matches.append(release)
        if matches:
            return max(matches, key=version_key)
    return None


def find_kernels(tree: GuestTree) -> tuple[Kernel, ...]:
    """The kernels in the guest's /boot with their initrds, newest first by version order."""
    if not tree.is_dir("/boot"):
        return ()
    names = tree.listdir("/boot")
    present = set(names)
    found: list[Kernel] = []
    for name in names:
        prefix = next((p for p in _KERNEL_PREFIXES if name.startswith(p)), None)
        if prefix is None or _NOT_KERNELS.search(name) or not _PLAIN_NAME.match(name):
            continue
        path = f"/boot/{name}"
        # SUSE's vmlinuz-xen -> vmlinuz-2.6.16-xen style links would list one kernel twice.
        if _is_link(tree, path) or not tree.is_file(path):
            continue
        suffix = name[len(prefix) :]
        if prefix == "kernel-" and not (suffix.startswith("genkernel-") or suffix[:1].isdigit()):
            continue
        initrd = None
        for pattern in _INITRD_PATTERNS:
            candidate = pattern.format(suffix)
            if candidate in present and tree.is_file(f"/boot/{candidate}"):
                initrd = f"/boot/{candidate}"
                break
        release = _release_of(suffix)
        if not release[:1].isdigit():
            release = _flavour_release(tree, release) or release
        found.append(Kernel(release, path, initrd))
    found.sort(key=lambda k: (version_key(k.version), k.kernel), reverse=True)
    return tuple(found)


def root_argument(device: str | None) -> tuple[str | None, str | None]:
    """(the root= value for the kernel command line, None) from the device the guest's fstab mounts at /, or
    (None, a note saying why there is none) when the fstab names none or names something that is not a device."""
    if device is None:
        return None, "the guest's fstab names no / device: add root=... to the kernel command line yourself"
    if _ROOT_DEVICE.match(device) and "/../" not in f"{device}/":
        return device, None
    return None, (
        f"the guest's fstab names {device!r} as its / device, which is not a device name dom0 puts on a kernel "
        "command line: add root=... yourself"
    )


def _is_link(tree: GuestTree, path: str) -> bool:
    readlink = getattr(tree, "readlink", None)
    return readlink is not None and readlink(path) is not None


def choose_kernel(kernels: tuple[Kernel, ...], version: str | None) -> Kernel:
    """The newest kernel, or the one whose release is `version`."""
    if not kernels:
        raise Dom0Error(
            "no kernel found in the guest's /boot",
            "is /boot on a filesystem that is not in this image? `dom0 image inspect` shows what was found",
        )
    if version is None:
        return kernels[0]
    for kernel in kernels:
        if version in (kernel.version, kernel.kernel.rsplit("/", 1)[-1]):
            return kernel
    raise Dom0Error(
        f"no kernel {version} in the guest's /boot",
        "installed: " + ", ".join(k.version for k in kernels),
    )


# Where a guest's boot loader keeps each kernel's command line (grub 2, then grub legacy); /etc/default/grub only
# feeds grub.cfg when update-grub runs, so grub.cfg is what the guest really boots with.
_BOOT_CONFIGS = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg", "/boot/grub/menu.lst", "/boot/grub/grub.conf")
_KERNEL_COMMANDS = ("linux", "linux16", "linuxefi", "kernel")
# Arguments copied into printed boot lines: plain words only (console=ttyS0,115200, quiet, net.ifnames=0), so a
# guest's boot config cannot put quotes or markup into the lines an administrator pastes into a definition.
_PLAIN_ARGUMENT = re.compile(r"[A-Za-z0-9_.,:=/+@-]+\Z")
_NOT_COPIED = ("root=", "BOOT_IMAGE=", "initrd=")
MAX_BOOT_CONFIG = 1 << 20


def boot_arguments(tree: GuestTree, kernel: Kernel) -> tuple[str, ...]:
    """The arguments the guest's own boot loader gives `kernel` (console=, quiet, ...), but root= (which comes from
    its fstab), ro and the loader's own; () when no boot config names that kernel."""
    name = kernel.kernel.rsplit("/", 1)[-1]
    for path in _BOOT_CONFIGS:
        try:
            text = tree.read_text(path, MAX_BOOT_CONFIG) if tree.is_file(path) else ""
        except Dom0Error:
            continue
        for line in text.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in _KERNEL_COMMANDS and words[1].rsplit("/", 1)[-1] == name:
                return tuple(
                    w for w in words[2:] if w != "ro" and not w.startswith(_NOT_COPIED) and _PLAIN_ARGUMENT.match(w)
                )
    return ()
