"""A guest's kernel and initrd copied out of its /boot for direct kernel boot (`dom0 image kernel IMAGE -o DIR`).

pygrub could not boot every layout, so admins copied the kernel out by hand after each guest upgrade. This does
that copy (from wherever the guest's fstab puts /boot), keeps DIR/vmlinuz and DIR/initrd.img pointing at the
newest copy so the guest's definition never has to change, and writes the lines that definition needs.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import BinaryIO

from dom0 import humanize
from dom0.errors import Dom0Error
from dom0.filedata import kind_of
from dom0.image.kernels import Kernel, boot_arguments, choose_kernel, root_argument
from dom0.image.layout import scan
from dom0.image.osinspect import OperatingSystem, find_roots, inspect_tree
from dom0.image.source import open_image
from dom0.image.tree import DirectoryTree, GuestTree

# The names in DIR a guest's definition points at; each run moves them to the newest copy.
KERNEL_LINK = "vmlinuz"
INITRD_LINK = "initrd.img"

# A kernel or initrd larger than this is not one (distribution initrds with every firmware stay well below
# 256 MiB): a damaged or hostile image could otherwise fill the host's /boot directory.
MAX_BOOT_FILE = 512 * 1024 * 1024
_CHUNK = 1 << 20


@dataclass(frozen=True)
class CopyResult:
    """One file copied out of the guest: where it came from and went, and whether the bytes changed."""

    guest_path: str
    host_path: Path
    copied: bool


def _too_big(guest_path: str, size: int) -> Dom0Error:
    return Dom0Error(
        f"{guest_path} in the guest is {humanize.size(size)}, more than the {humanize.size(MAX_BOOT_FILE)} a kernel "
        "or initrd can be",
        "the image may be damaged or not what it claims; look at the file yourself before copying it by hand",
    )


def _same_bytes(path: Path, src: BinaryIO, size: int) -> bool:
    """Whether the regular file at `path` (not followed if a symlink) holds exactly the `size` bytes `src` reads.

    Compared chunk by chunk, not hashed: a cron job's --sync over every guest reads each kernel once from each side
    and stops at the first difference. Bounded: at most `size` bytes, and one chunk more, are read from the guest.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return False
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return False
        while True:
            mine = fh.read(_CHUNK)
            if mine != src.read(_CHUNK):
                return False
            if not mine:
                return True


def check_target(path: Path, *, link: bool = False) -> None:
    """Refuse to write `path` when something other than a file dom0 could have written there (a directory, a
    FIFO, a device; for a link name, anything but a symlink or regular file) has that name."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise Dom0Error(f"cannot look at {path}: {exc.strerror}") from exc
    if stat.S_ISREG(mode) or (link and stat.S_ISLNK(mode)):
        return
    what = kind_of(mode)
    raise Dom0Error(
        f"{path} is {what}: dom0 would replace it with the guest's file",
        "move it out of the way, or give -o another directory",
    )


def copy_out(tree: GuestTree, guest_path: str, dest_dir: Path, *, sync: bool) -> CopyResult:
    """Copy a guest file into dest_dir under its own name, atomically (a temporary file renamed into place).

    With `sync`, a file whose size and SHA-256 already match is left alone (copied=False).
    """
    target = dest_dir / guest_path.rsplit("/", 1)[-1]
    check_target(target)
    size = tree.size(guest_path)
    if size > MAX_BOOT_FILE:
        raise _too_big(guest_path, size)
    if sync:
        with tree.open(guest_path) as src:
            if _same_bytes(target, src, size):
                return CopyResult(guest_path, target, copied=False)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=dest_dir)
    except OSError as exc:
        raise Dom0Error(f"cannot write in {dest_dir}: {exc.strerror}", "give -o a directory dom0 can write") from exc
    try:
        with os.fdopen(fd, "wb") as out, tree.open(guest_path) as src:
            # Bounded by the cap, not by the size the guest's inode claims: a file that grows is not copied on.
            copied = 0
            while chunk := src.read(min(_CHUNK, MAX_BOOT_FILE + 1 - copied)):
                copied += len(chunk)
                if copied > MAX_BOOT_FILE:
                    raise _too_big(guest_path, copied)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise Dom0Error(f"cannot write {target}: {exc.strerror}", "check the -o directory") from exc
        raise
    return CopyResult(guest_path, target, copied=True)


def point_link(link: Path, target_name: str) -> bool:
    """Make `link` a symlink to `target_name` (a name in the same directory), atomically; True if it changed."""
    try:
        if os.readlink(link) == target_name:
            return False
    except OSError:
        pass
    check_target(link, link=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        os.symlink(target_name, tmp)
        os.replace(tmp, link)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise Dom0Error(f"cannot point {link} at {target_name}: {exc.strerror}", "check the -o directory") from exc
    return True


@dataclass(frozen=True)
class KernelCopy:
    """What one run copied and linked, and the boot lines the guest's definition needs for it."""

    out: Path
    kernel: Kernel
    boot_from: str  # where the guest's /boot lies ("partition 1", or its fstab's device for a directory)
    copied_kernel: CopyResult
    copied_initrd: CopyResult | None
    kernel_link: Path
    initrd_link: Path | None  # None when the guest has no initrd for this kernel
    changed: bool  # a file's bytes or a link changed
    root: str | None
    cmdline: str | None
    libvirt: str
    xl: str
    notes: tuple[str, ...]


@contextmanager
def _guest(
    path: Path, image_format: str | None, backing_dirs: Sequence[str | Path]
) -> Iterator[tuple[GuestTree, OperatingSystem]]:
    """The guest's tree and what was found in it, from a directory (its /) or an image (closed afterwards)."""
    if path.is_dir() and image_format is None:
        tree = DirectoryTree(path)
        system = inspect_tree(tree)
        if system is None:
            raise Dom0Error(
                f"{path}: no operating system in this directory (no /etc with release files)",
                "give the directory that is the guest's /",
            )
        yield tree, system
        return
    with open_image(path, format=image_format, backing_dirs=backing_dirs) as source:
        roots = find_roots(source, scan(source))
        if not roots:
            raise Dom0Error(
                f"{path}: no operating system found on any filesystem of this image",
                f"`dom0 image inspect {path}` shows the partitions and filesystems that were found",
            )
        _, image_tree, image_system = roots[0]
        yield image_tree, image_system


# Neither xl.cfg nor a kernel command line has one escaping rule every version reads alike: a value with a quote,
# a backslash or a control character is left out of the printed lines rather than quoted.
_UNPRINTABLE_VALUE = re.compile(r"[\"'\\\x00-\x1f\x7f-\x9f]")


def boot_lines(kernel: Path, initrd: Path | None, cmdline: str | None) -> tuple[str, str, list[str]]:
    """The libvirt <os> elements and the xl.cfg settings for this kernel, and notes on any value left out."""
    libvirt: list[str] = []
    xl: list[str] = []
    notes: list[str] = []
    settings = (("kernel", "kernel", kernel), ("initrd", "ramdisk", initrd), ("cmdline", "extra", cmdline))
    for element, key, value in settings:
        if value is None:
            continue
        text = str(value)
        if _UNPRINTABLE_VALUE.search(text):
            notes.append(f"{key} left out of the lines below: {text!r} holds a quote, backslash or control character")
            continue
        libvirt.append(f"<{element}>{escape(text, quote=False)}</{element}>")
        xl.append(f'{key} = "{text}"')
    return "\n".join(libvirt), "\n".join(xl), notes


def _prepare_output(out: Path, kernel: Kernel) -> None:
    """Check every name this run writes, then make `out`: a directory in the way stops it before any copy."""
    for guest_path in (kernel.kernel, kernel.initrd):
        if guest_path is not None:
            check_target(out / guest_path.rsplit("/", 1)[-1])
    check_target(out / KERNEL_LINK, link=True)
    check_target(out / INITRD_LINK, link=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Dom0Error(f"cannot make {out}: {exc.strerror}", "give -o a directory dom0 can create") from exc


def copy_kernel(
    image: Path,
    output: Path,
    *,
    version: str | None = None,
    sync: bool = False,
    format: str | None = None,
    backing_dirs: Sequence[str | Path] = (),
) -> KernelCopy:
    """Copy the newest (or `version`) kernel and its initrd out of the guest at `image` (an image or a directory)
    into `output`, point the links there at them, and work out the boot lines.

    With `sync`, files whose bytes already match are left alone, so a run after each guest upgrade copies only what
    changed. `format` and `backing_dirs` are open_image's: what the image is, and where its bases may lie.
    """
    out = output.absolute()
    if out.exists() and not out.is_dir():
        raise Dom0Error(f"{out} is not a directory", "give -o a directory for the kernel and initrd")
    with _guest(image, format, backing_dirs) as (tree, system):
        kernel = choose_kernel(system.kernels, version)
        arguments = boot_arguments(tree, kernel)
        _prepare_output(out, kernel)
        copied_kernel = copy_out(tree, kernel.kernel, out, sync=sync)
        copied_initrd = copy_out(tree, kernel.initrd, out, sync=sync) if kernel.initrd else None
    kernel_link = out / KERNEL_LINK
    initrd_link = out / INITRD_LINK
    relinked = point_link(kernel_link, copied_kernel.host_path.name)
    if copied_initrd is not None:
        relinked = point_link(initrd_link, copied_initrd.host_path.name) or relinked
    elif initrd_link.is_symlink():
        # An initrd left from an older kernel would not match this one.
        initrd_link.unlink()
        relinked = True
    changed = copied_kernel.copied or (copied_initrd is not None and copied_initrd.copied) or relinked
    root, root_note = root_argument(system.root_device)
    cmdline = " ".join((f"root={root}", "ro", *arguments)) if root else None
    shown_initrd = initrd_link if copied_initrd else None
    libvirt, xl, line_notes = boot_lines(kernel_link, shown_initrd, cmdline)
    return KernelCopy(
        out=out,
        kernel=kernel,
        boot_from=system.mountpoints.get("/boot", system.root),
        copied_kernel=copied_kernel,
        copied_initrd=copied_initrd,
        kernel_link=kernel_link,
        initrd_link=shown_initrd,
        changed=changed,
        root=root,
        cmdline=cmdline,
        libvirt=libvirt,
        xl=xl,
        notes=((root_note,) if root_note else ()) + tuple(line_notes),
    )
