"""`dom0 image kernel IMAGE -o DIR`: the guest's kernel and initrd copied out of its /boot, for direct kernel boot.

pygrub could not boot every layout, so admins copied the kernel out by hand after each guest upgrade. This does
that copy (from wherever the guest's fstab puts /boot), keeps DIR/vmlinuz and DIR/initrd.img pointing at the
newest copy so the guest's definition never has to change, and prints the lines that definition needs.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from dom0.cli.session import print_json
from dom0.cli.table import terminal_safe
from dom0.errors import Dom0Error
from dom0.image.kernels import (
    CopyResult,
    Kernel,
    check_target,
    choose_kernel,
    copy_out,
    point_link,
    root_argument,
)
from dom0.image.osinspect import OperatingSystem, find_roots, inspect_tree
from dom0.image.tree import DirectoryTree, GuestTree

if TYPE_CHECKING:
    from dom0.image.source import ImageSource

KERNEL_LINK = "vmlinuz"
INITRD_LINK = "initrd.img"


@dataclass(frozen=True)
class _Guest:
    tree: GuestTree
    system: OperatingSystem


def _open_guest(path: Path, args: argparse.Namespace) -> tuple[_Guest, ImageSource | None]:
    """The guest's tree and inspection; the second value is the open image (to close), or None."""
    if path.is_dir() and args.image_format is None:
        tree: GuestTree = DirectoryTree(path)
        system = inspect_tree(tree)
        if system is None:
            raise Dom0Error(
                f"{path}: no operating system in this directory (no /etc with release files)",
                "give the directory that is the guest's /",
            )
        return _Guest(tree, system), None
    from dom0.cli.image import image_options
    from dom0.image.layout import scan
    from dom0.image.source import open_image

    source = open_image(path, **image_options(args))
    try:
        roots = find_roots(source, scan(source))
    except BaseException:
        source.close()
        raise
    if not roots:
        source.close()
        raise Dom0Error(
            f"{path}: no operating system found on any filesystem of this image",
            f"`dom0 image inspect {path}` shows the partitions and filesystems that were found",
        )
    _, tree, system = roots[0]
    return _Guest(tree, system), source


# Neither xl.cfg nor a kernel command line has one escaping rule every version reads alike: a value with a quote,
# a backslash or a control character is left out of the printed lines rather than quoted.
_UNPRINTABLE_VALUE = re.compile(r"[\"'\\\x00-\x1f\x7f-\x9f]")


def _boot_lines(kernel: Path, initrd: Path | None, cmdline: str | None) -> tuple[str, str, list[str]]:
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
        libvirt.append(f"<{element}>{escape(text)}</{element}>")
        xl.append(f'{key} = "{text}"')
    return "\n".join(libvirt), "\n".join(xl), notes


def _file_json(result: CopyResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {"guest": result.guest_path, "path": str(result.host_path), "copied": result.copied}


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


def cmd_kernel(args: argparse.Namespace) -> int:
    """Copy the newest (or --version) kernel and initrd out of the guest and print its boot lines."""
    image = Path(args.image)
    out = Path(args.output).absolute()
    if out.exists() and not out.is_dir():
        raise Dom0Error(f"{out} is not a directory", "give -o a directory for the kernel and initrd")
    guest, source = _open_guest(image, args)
    try:
        system = guest.system
        kernel: Kernel = choose_kernel(system.kernels, args.kernel_version)
        _prepare_output(out, kernel)
        copied_kernel = copy_out(guest.tree, kernel.kernel, out, sync=args.sync)
        copied_initrd = copy_out(guest.tree, kernel.initrd, out, sync=args.sync) if kernel.initrd else None
    finally:
        if source is not None:
            source.close()
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
    cmdline = f"root={root} ro" if root else None
    libvirt, xl, line_notes = _boot_lines(kernel_link, initrd_link if copied_initrd else None, cmdline)
    notes = ([root_note] if root_note else []) + line_notes
    boot_from = system.mountpoints.get("/boot", system.root)
    if args.json:
        print_json(
            {
                "image": str(image),
                "version": kernel.version,
                "boot": boot_from,
                "kernel": _file_json(copied_kernel),
                "initrd": _file_json(copied_initrd),
                "links": {"kernel": str(kernel_link), "initrd": str(initrd_link) if copied_initrd else None},
                "up_to_date": not changed,
                "root": root,
                "cmdline": cmdline,
                "notes": notes,
                "libvirt": libvirt,
                "xl": xl,
            }
        )
        return 0
    _print_result(args.sync and not changed, out, kernel, boot_from, (copied_kernel, copied_initrd), notes, libvirt, xl)
    return 0


def _print_result(  # noqa: PLR0917 (the pieces cmd_kernel computed, printed for a human)
    up_to_date: bool,
    out: Path,
    kernel: Kernel,
    boot_from: str,
    copied: tuple[CopyResult, CopyResult | None],
    notes: list[str],
    libvirt: str,
    xl: str,
) -> None:
    lines: list[str] = []
    if up_to_date:
        lines.append(f"up to date: kernel {kernel.version} in {out} already matches the guest's /boot ({boot_from})")
    else:
        lines.append(f"kernel {kernel.version} from the guest's /boot ({boot_from}) into {out}:")
        for result in copied:
            if result is not None:
                word = "copied   " if result.copied else "unchanged"
                lines.append(f"  {word} {result.guest_path} -> {result.host_path}")
        links = f"{KERNEL_LINK} -> {copied[0].host_path.name}"
        if copied[1] is not None:
            links += f", {INITRD_LINK} -> {copied[1].host_path.name}"
        lines.append(f"  links     {links}")
    if not kernel.initrd:
        lines.append(f"note: the guest has no initrd for {kernel.version}; it must boot without one")
    lines.extend(f"note: {note}" for note in notes)
    lines.append("libvirt (in <os>):")
    lines.extend("  " + line for line in libvirt.splitlines())
    lines.append("xl:")
    lines.extend("  " + line for line in xl.splitlines())
    # boot_from can be a device name from the guest's fstab: shown escaped, as every line here.
    print("\n".join(terminal_safe(line) for line in lines))
