"""`dom0 clone SOURCE NEW`: a working twin of a guest, with its own name, UUID, MACs, disks and identity."""

from __future__ import annotations

import argparse
import contextlib
import time

from dom0.cli.progress import board
from dom0.cli.session import guests_locked, hypervisor, print_json
from dom0.cli.table import render
from dom0.clone.plan import CloneMode, CloneOptions, ClonePlan
from dom0.errors import UsageError
from dom0.humanize import size


def _options(args: argparse.Namespace) -> CloneOptions:
    if args.pause and args.offline:
        raise UsageError("give --pause or --offline, not both")
    # --hostname, --ip and --gateway are checked by CloneOptions itself, before the hypervisor is asked anything.
    for number, flag in ((args.memory, "--memory"), (args.vcpus, "--vcpus")):
        if number is not None and number < 1:
            raise UsageError(f"{flag} must be at least 1")
    return CloneOptions(
        new_name=args.new,
        hostname=args.hostname or "",
        address=args.ip or "",
        gateway=args.gateway or "",
        macs=tuple(args.mac or ()),
        memory_mib=args.memory or 0,
        vcpus=args.vcpus or 0,
        mode=CloneMode(args.mode),
        pause=args.pause,
        offline=args.offline,
    )


def _plan_json(plan: ClonePlan) -> dict[str, object]:
    return {
        "source": plan.source.name,
        "name": plan.name,
        "uuid": plan.uuid,
        "macs": list(plan.macs),
        "pause": plan.pause,
        "disks": [
            {
                "target": d.target,
                "method": str(d.method),
                "source": d.source,
                "dest": d.dest,
                "size_bytes": d.size_bytes,
            }
            for d in plan.disks
        ],
        "files": dict(plan.files),
        "identity": {
            "hostname": plan.identity.hostname,
            "address": plan.identity.address,
            "gateway": plan.identity.gateway,
        },
        "edits": list(plan.edits),
        "notes": list(plan.notes),
    }


def _print_plan(plan: ClonePlan) -> None:
    print(f"clone {plan.source.name} ({plan.source.state}) as {plan.name}, UUID {plan.uuid}")
    rows = [
        (d.target, str(d.method), size(d.size_bytes) if d.size_bytes else "-", d.source, d.dest) for d in plan.disks
    ]
    print(render(("Disk", "How", "Size", "From", "To"), rows))
    for old, new in zip((m for m, _ in plan.identity.macs), plan.macs, strict=False):
        print(f"  NIC {old} -> {new}")
    for old, new in plan.files:
        print(f"  file {old} -> {new}")
    change = plan.identity
    wanted = [
        f"hostname {change.hostname}" if change.hostname else "",
        f"IP {change.address}" if change.address else "",
    ]
    wanted += [f"gateway {change.gateway}" if change.gateway else ""]
    shown = ", ".join(w for w in wanted if w)
    print(f"  inside the copy: {shown + '; ' if shown else ''}new machine-id, SSH host keys regenerated at first boot")
    for edit in plan.edits:
        print(f"  edit: {edit}")
    if plan.pause:
        print(f"  {plan.source.name} is paused while its disks are copied, then resumed")
    for note in plan.notes:
        print(f"  note: {note}")


def cmd_clone(args: argparse.Namespace) -> int:
    """Plan the clone, print the plan, carry it out (unless --dry-run)."""
    from dom0.clone.apply import apply_clone
    from dom0.clone.plan import plan_clone

    options = _options(args)
    with hypervisor(args) as hv, contextlib.ExitStack() as locked:
        if not args.dry_run:  # the source, from the plan's reading of it to the end of the copy
            locked.enter_context(guests_locked(args, hv, [args.source], "clone"))
        plan = plan_clone(hv, args.source, options)
        if args.dry_run:
            if args.json:
                print_json({"dry_run": True, **_plan_json(plan)})
            else:
                _print_plan(plan)
            return 0
        if not args.json:
            _print_plan(plan)
        started = time.monotonic()
        with board(not args.json) as progress:
            result = apply_clone(hv, plan, progress.bar)
        seconds = time.monotonic() - started
        if args.json:
            print_json({**_plan_json(plan), "seconds": round(seconds, 3), "edits": list(result.edits)})
        else:
            for edit in result.edits:
                print(f"  edited: {edit}")
            print(f"cloned {plan.source.name} as {plan.name} ({size(plan.written_bytes)} of disks) in {seconds:.1f} s")
            print(f"start it with `dom0 start {plan.name}`")
    return 0
