"""`dom0 image kernel IMAGE -o DIR`: the guest's kernel and initrd copied out of its /boot, and its boot lines."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dom0.cli.session import image_options, print_json
from dom0.cli.table import terminal_safe
from dom0.image.bootcopy import INITRD_LINK, KERNEL_LINK, CopyResult, KernelCopy, copy_kernel


def _file_json(result: CopyResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {"guest": result.guest_path, "path": str(result.host_path), "copied": result.copied}


def cmd_kernel(args: argparse.Namespace) -> int:
    """Copy the newest (or --version) kernel and initrd out of the guest and print its boot lines."""
    image = Path(args.image)
    done = copy_kernel(image, Path(args.output), version=args.kernel_version, sync=args.sync, **image_options(args))
    if args.json:
        print_json(
            {
                "image": str(image),
                "version": done.kernel.version,
                "boot": done.boot_from,
                "kernel": _file_json(done.copied_kernel),
                "initrd": _file_json(done.copied_initrd),
                "links": {
                    "kernel": str(done.kernel_link),
                    "initrd": str(done.initrd_link) if done.initrd_link else None,
                },
                "up_to_date": not done.changed,
                "root": done.root,
                "cmdline": done.cmdline,
                "notes": list(done.notes),
                "libvirt": done.libvirt,
                "xl": done.xl,
            }
        )
        return 0
    _print_result(done, up_to_date=args.sync and not done.changed)
    return 0


def _print_result(done: KernelCopy, *, up_to_date: bool) -> None:
    kernel, out = done.kernel, done.out
    lines: list[str] = []
    if up_to_date:
        lines.append(
            f"up to date: kernel {kernel.version} in {out} already matches the guest's /boot ({done.boot_from})"
        )
    else:
        lines.append(f"kernel {kernel.version} from the guest's /boot ({done.boot_from}) into {out}:")
        for result in (done.copied_kernel, done.copied_initrd):
            if result is not None:
                word = "copied   " if result.copied else "unchanged"
                lines.append(f"  {word} {result.guest_path} -> {result.host_path}")
        links = f"{KERNEL_LINK} -> {done.copied_kernel.host_path.name}"
        if done.copied_initrd is not None:
            links += f", {INITRD_LINK} -> {done.copied_initrd.host_path.name}"
        lines.append(f"  links     {links}")
    if not kernel.initrd:
        lines.append(f"note: the guest has no initrd for {kernel.version}; it must boot without one")
    lines.extend(f"note: {note}" for note in done.notes)
    lines.append("libvirt (in <os>):")
    lines.extend("  " + line for line in done.libvirt.splitlines())
    lines.append("xl:")
    lines.extend("  " + line for line in done.xl.splitlines())
    # boot_from can be a device name from the guest's fstab: shown escaped, as every line here.
    print("\n".join(terminal_safe(line) for line in lines))
