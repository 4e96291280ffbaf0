"""Kernels installed in a guest's /boot: finding them, ordering them by version, and copying them out for dom0."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dom0.errors import Dom0Error
from dom0.image.tree import GuestTree

# Kernel image names in /boot. "kernel-" is Gentoo's genkernel naming; vmlinux is what some arches boot uncompressed.
_KERNEL_PREFIXES = ("vmlinuz-", "vmlinux-", "kernel-")
_INITRD_PATTERNS = ("initrd.img-{}", "initrd-{}.img", "initramfs-{}.img", "initrd-{}", "initramfs-{}")
_NOT_KERNELS = re.compile(r"\.(hmac|sig|old|bak|cfg|config)$")


@dataclass(frozen=True)
class Kernel:
    """A kernel in the guest: its release (uname -r), and the guest paths of its image and initrd (or None)."""

    version: str
    kernel: str
    initrd: str | None

    def to_json(self) -> dict[str, str | None]:
        """The issue's JSON shape: version, kernel, initrd."""
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
        if prefix is None or _NOT_KERNELS.search(name):
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


@dataclass(frozen=True)
class CopyResult:
    """One file copied out of the guest: where it came from and went, and whether the bytes changed."""

    guest_path: str
    host_path: Path
    copied: bool


def _sha256(fh: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := fh.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def _digest_of_file(path: Path) -> tuple[int, str] | None:
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            return size, _sha256(fh)
    except FileNotFoundError:
        return None


def copy_out(tree: GuestTree, guest_path: str, dest_dir: Path, *, sync: bool) -> CopyResult:
    """Copy a guest file into dest_dir under its own name, atomically (a temporary file renamed into place).

    With `sync`, a file whose size and SHA-256 already match is left alone (copied=False).
    """
    target = dest_dir / guest_path.rsplit("/", 1)[-1]
    if sync:
        existing = _digest_of_file(target)
        if existing is not None and existing[0] == tree.size(guest_path):
            with tree.open(guest_path) as src:
                if _sha256(src) == existing[1]:
                    return CopyResult(guest_path, target, copied=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as out, tree.open(guest_path) as src:
            while chunk := src.read(1 << 20):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return CopyResult(guest_path, target, copied=True)


def point_link(link: Path, target_name: str) -> bool:
    """Make `link` a symlink to `target_name` (a name in the same directory), atomically; True if it changed."""
    try:
        if os.readlink(link) == target_name:
            return False
    except OSError:
        pass
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target_name, tmp)
    os.replace(tmp, link)
    return True
