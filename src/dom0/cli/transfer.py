"""`dom0 export GUEST DIR` and `dom0 import DIR`: a guest moved to another host through a directory."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dom0.cli.progress import board
from dom0.cli.session import guests_locked, hypervisor, lock_wait, print_json, say_waiting
from dom0.cli.table import render
from dom0.humanize import size

if TYPE_CHECKING:
    from dom0.clone.transfer import ImportPlan
    from dom0.hypervisor import Hypervisor
    from dom0.locks import Held


def cmd_export(args: argparse.Namespace) -> int:
    """Write the guest's definition and compressed disks, with checksums, into DIR/NAME/."""
    from dom0.clone.transfer import export_guest

    with hypervisor(args) as hv, guests_locked(args, hv, [args.guest], "export"):
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
    from dom0.clone.transfer import plan_import

    with hypervisor(args) as hv:

        def planned() -> ImportPlan:
            return plan_import(
                hv,
                Path(args.dir),
                name=args.name or "",
                storage_at=args.storage or "",
                boot_dirs=[Path(d) for d in args.boot_dir],
            )

        plan = planned()
        held = None
        if not args.dry_run:
            held, plan = _import_locked(args, plan, planned)
        try:
            return _import(args, hv, plan)
        finally:
            if held is not None:
                held.release()


def _import_locked(
    args: argparse.Namespace, plan: ImportPlan, planned: Callable[[], ImportPlan]
) -> tuple[Held | None, ImportPlan]:
    """The lock of the UUID an import keeps (none for a renamed copy: its UUID is fresh), and the plan to carry out.

    Two imports of one export would write the same disks and define the same guest: the second is refused at once,
    or with --wait-lock waits and plans again, since the first one changed this host meanwhile."""
    from dom0.locks import GuestBusy, LockKey, hold

    if plan.uuid != plan.manifest.uuid:
        return None, plan
    key = LockKey(plan.uuid, plan.name)
    try:
        return hold([key], "import"), plan
    except GuestBusy:
        if lock_wait(args) is None:
            raise
    held = hold([key], "import", wait=lock_wait(args), waiting=lambda k, holder: say_waiting(k.name, holder.words()))
    try:
        return held, planned()
    except BaseException:
        held.release()
        raise


def _import(args: argparse.Namespace, hv: Hypervisor, plan: ImportPlan) -> int:
    from dom0.clone.transfer import apply_import

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
