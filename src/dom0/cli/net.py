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


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def cmd_check(args: argparse.Namespace) -> int:
    """Read the host's network files (and, unless --no-live, the running bonds and bridges) and flag the
    combinations known to fail; exit 1 when any finding is a problem."""
    from dataclasses import asdict

    from dom0.cli.session import print_notes
    from dom0.cli.table import render, terminal_safe
    from dom0.hostnet.checks import check
    from dom0.hostnet.config import read_config
    from dom0.hostnet.live import read_live

    config = read_config(args.root)
    live = None if args.no_live else read_live()
    findings = check(config, live)
    failed = any(f.severity == "problem" for f in findings)
    counted: list[tuple[str, str, int, int]] = []
    for s in config.sources:
        bonds = sum(1 for b in config.bonds if b.where.rpartition(":")[0] == s.path)
        bridges = sum(1 for b in config.bridges if b.where.rpartition(":")[0] == s.path)
        counted.append((s.path, s.format, bonds, bridges))
    notes = list(config.notes) + (list(live.notes) if live else [])
    if args.json:
        print_json(
            {
                "root": config.root,
                "sources": [{"path": p, "format": f, "bonds": n, "bridges": m} for p, f, n, m in counted],
                "bonds": [asdict(b) for b in config.bonds],
                "bridges": [asdict(b) for b in config.bridges],
                "live": None
                if live is None
                else {"bonds": [asdict(b) for b in live.bonds], "bridges": [asdict(b) for b in live.bridges]},
                "findings": [f.as_json() for f in findings],
                "notes": notes,
            }
        )
        return 1 if failed else 0
    rows: list[tuple[str, str, str]] = []
    for f in findings:
        rows.append((f.severity, f.subject, f.what))
        rows += [
            ("", "", f"{label}: {text}") for label, text in (("why", f.why), ("fix", f.fix), ("at", f.where)) if text
        ]
    if rows:
        print(render(("Severity", "Subject", "Finding"), rows))
    else:
        print("no bonds or bridges found")
    read = ", ".join(
        p + (f" ({_plural(n, 'bond')}, {_plural(m, 'bridge')})" if n or m else "") for p, _, n, m in counted
    )
    where = "" if config.root.rstrip("/") == "" else f" under {config.root}"
    summary = f"read{where} {read}" if read else f"read no network configuration{where} (ifupdown, networkd, netplan)"
    if live is None:
        summary += "; live: not read (--no-live)"
    else:
        running = [f"{b.name} ({b.mode or '?'}, {_monitor(b.miimon_ms, b.arp_interval_ms)})" for b in live.bonds]
        running += [
            f"{br.name} ({_plural(len(br.ports), 'port')}, STP {'on' if br.stp else 'off'})" for br in live.bridges
        ]
        summary += "; live: " + (", ".join(running) or "no bonds or bridges")
    print(terminal_safe(summary))
    print_notes(terminal_safe(n) for n in notes)
    return 1 if failed else 0


def _monitor(miimon: int, arp: int) -> str:
    parts = ([f"miimon {miimon} ms"] if miimon else []) + ([f"arp {arp} ms"] if arp else [])
    return " and ".join(parts) or "no link monitor"
