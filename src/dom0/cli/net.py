"""`dom0 net check` and `dom0 net plan`: the host's bridges and bonds, checked against what is known to fail, and a
working bridge (over a bond) planned in the host's own format."""

from __future__ import annotations

import argparse
from pathlib import Path

from dom0.cli.session import print_json


def cmd_plan(args: argparse.Namespace) -> int:
    """Print (and with --write install) a bridge over a bond of the uplinks, in the host's format."""
    from dom0.hostnet import plan as netplan

    root = Path(args.root).absolute()
    uplinks = netplan.parse_uplinks(args.uplink)
    fmt, why = (args.net_format, "") if args.net_format else netplan.default_format(root)
    plan = netplan.plan_bridge(
        args.bridge,
        uplinks,
        bond_mode=args.bond_mode,
        bond_name=args.bond,
        address=args.address,
        gateway=args.gateway,
        format=fmt,
        root=root,
    )
    notes = ([f"format: {fmt}: {why}"] if why else []) + list(plan.notes)
    replaces = netplan.replaced(plan, root)
    written = netplan.write_plan(plan, root) if args.write else None
    if args.json:
        doc: dict[str, object] = {
            "format": plan.format,
            "files": [
                {"path": f.path, "content": f.content, "replaces": r} for f, r in zip(plan.files, replaces, strict=True)
            ],
            "command": plan.command,
            "notes": notes,
        }
        if written is not None:
            doc["written"] = [str(p) for p in written.written]
            doc["unchanged"] = [str(p) for p in written.unchanged]
            doc["backups"] = [{"path": str(p), "backup": str(b)} for p, b in written.backups]
        print_json(doc)
        return 0
    if written is None:
        for f, r in zip(plan.files, replaces, strict=True):
            print(f"===== {f.path}" + (" (replaces the file there)" if r else " (new)") + " =====")
            print(f.content, end="" if f.content.endswith("\n") else "\n")
            print()
    for note in notes:
        print(f"note: {note}")
    if written is None:
        print("\nnothing written: review the files, then `dom0 net plan ... --write` installs them (with backups)")
        return 0
    print()
    for path in written.written:
        print(f"wrote {path}")
    for path in written.unchanged:
        print(f"unchanged {path} (already as planned)")
    for path, backup in written.backups:
        print(f"kept the previous {path.name} as {backup}")
    print(f"\nnext, from the console (not over SSH through {', '.join(uplinks)}): {plan.command}")
    print("warning: doing it over the link you are logged in through can cut you off")
    return 0
