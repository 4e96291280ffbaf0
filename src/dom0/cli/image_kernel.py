"""`dom0 image kernel IMAGE -o DIR`: the guest's kernel and initrd copied out of its /boot, for direct kernel boot.

pygrub could not boot every layout, so admins copied the kernel out by hand after each guest upgrade. This does
that copy (from wherever the guest's fstab puts /boot), keeps DIR/vmlinuz and DIR/initrd.img pointing at the
newest copy so the guest's definition never has to change, and prints the lines that definition needs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dom0.cli.session import print_json
from dom0.errors import Dom0Error
from dom0.image.kernels import CopyResult, Kernel, choose_kernel, copy_out, point_link
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


def _open_guest(path: Path) -> tuple[_Guest, ImageSource | None]:
    """The guest's tree and inspection; the second value is the open image (to close), or None."""
    if path.is_dir():
        tree: GuestTree = DirectoryTree(path)
        system = inspect_tree(tree)
        if system is None:
            raise Dom0Error(
                f"{path}: no operating system in this directory (no /etc with release files)",
                "give the directory that is the guest's /",
            )
        return _Guest(tree, system), None
    from dom0.image.layout import scan
    from dom0.image.source import open_image

    source = open_image(path)
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


def _boot_lines(kernel: Path, initrd: Path | None, cmdline: str | None) -> tuple[str, str]:
    libvirt = [f"<kernel>{kernel}</kernel>"]
    xl = [f'kernel = "{kernel}"']
    if initrd is not None:
        libvirt.append(f"<initrd>{initrd}</initrd>")
        xl.append(f'ramdisk = "{initrd}"')
    if cmdline:
        libvirt.append(f"<cmdline>{cmdline}</cmdline>")
        xl.append(f'extra = "{cmdline}"')
    return "\n".join(libvirt), "\n".join(xl)


def _file_json(result: CopyResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {"guest": result.guest_path, "path": str(result.host_path), "copied": result.copied}


def cmd_kernel(args: argparse.Namespace) -> int:
    """Copy the newest (or --version) kernel and initrd out of the guest and print its boot lines."""
    image = Path(args.image)
    out = Path(args.output).absolute()
    if out.exists() and not out.is_dir():
        raise Dom0Error(f"{out} is not a directory", "give -o a directory for the kernel and initrd")
    guest, source = _open_guest(image)
    try:
        system = guest.system
        kernel: Kernel = choose_kernel(system.kernels, args.kernel_version)
        out.mkdir(parents=True, exist_ok=True)
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
    root = system.root_device
    cmdline = f"root={root} ro" if root else None
    libvirt, xl = _boot_lines(kernel_link, initrd_link if copied_initrd else None, cmdline)
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
                "libvirt": libvirt,
                "xl": xl,
            }
        )
        return 0
    if args.sync and not changed:
        print(f"up to date: kernel {kernel.version} in {out} already matches the guest's /boot ({boot_from})")
    else:
        print(f"kernel {kernel.version} from the guest's /boot ({boot_from}) into {out}:")
        for result in (copied_kernel, copied_initrd):
            if result is not None:
                word = "copied   " if result.copied else "unchanged"
                print(f"  {word} {result.guest_path} -> {result.host_path}")
        links = f"{kernel_link.name} -> {copied_kernel.host_path.name}"
        if copied_initrd is not None:
            links += f", {initrd_link.name} -> {copied_initrd.host_path.name}"
        print(f"  links     {links}")
    if not kernel.initrd:
        print(f"note: the guest has no initrd for {kernel.version}; it must boot without one")
    if root is None:
        print("note: the guest's fstab names no / device: add root=... to the kernel command line yourself")
    print("libvirt (in <os>):")
    print("\n".join("  " + line for line in libvirt.splitlines()))
    print("xl:")
    print("\n".join("  " + line for line in xl.splitlines()))
    return 0
