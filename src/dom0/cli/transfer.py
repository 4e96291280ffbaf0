"""`dom0 export GUEST DIR` and `dom0 import DIR`: a guest moved to another host through a directory."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dom0.cli.progress import board
from dom0.cli.session import hypervisor, print_json
from dom0.cli.table import render
from dom0.humanize import size


def cmd_export(args: argparse.Namespace) -> int:
    """Write the guest's definition and compressed disks, with checksums, into DIR/NAME/."""
    from dom0.clone.transfer import export_guest

    with hypervisor(args) as hv:
        started = time.monotonic()
        with board(not args.json) as progress:
            out, manifest = export_guest(hv, args.guest, Path(args.dir), pause=args.pause, bar=progress.bar)
        seconds = time.monotonic() - started
    if args.json:
        print_json({"directory": str(out), "seconds": round(seconds, 3), **manifest.to_json()})
        return 0
    rows = [
        (d.target, size(d.size_bytes), size(d.stored_bytes) if d.file else "-", d.file or "swap: made afresh on import")
        for d in manifest.disks
    ]
    print(render(("Disk", "Size", "Stored", "File"), rows))
    print(f"exported {manifest.name} to {out} in {seconds:.1f} s; on the other host: dom0 import {out}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Check an export, write its disks here (files or LVs), define the guest."""
    from dom0.clone.transfer import apply_import, plan_import

    with hypervisor(args) as hv:
        plan = plan_import(
            hv,
            Path(args.dir),
            name=args.name or "",
            storage_at=args.storage or "",
            boot_dirs=[Path(d) for d in args.boot_dir],
        )
        if args.dry_run or not args.json:
            rows = [(d.target, size(d.size_bytes), dest) for d, dest in plan.destinations]
            print(f"import {plan.manifest.name} as {plan.name} (UUID {plan.uuid}):")
            print(render(("Disk", "Size", "To"), rows))
            for note in plan.notes:
                print(f"  note: {note}")
        if args.dry_run:
            return 0
        started = time.monotonic()
        with board(not args.json) as progress:
            name = apply_import(hv, plan, progress.bar)
        seconds = time.monotonic() - started
    if args.json:
        print_json(
            {
                "name": name,
                "uuid": plan.uuid,
                "disks": [dest for _, dest in plan.destinations],
                "notes": list(plan.notes),
                "seconds": seconds,
            }
        )
    else:
        print(f"imported {name} in {seconds:.1f} s; start it with `dom0 start {name}`")
    return 0
