"""`dom0 publish list | apply | check | proxy`: the publish table acted on (its edits are in dom0.cli.publish)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dom0.cli.session import check_seconds, hypervisor, print_json, print_notes
from dom0.cli.table import render, terminal_safe
from dom0.errors import Dom0Error, HypervisorUnavailable
from dom0.publish.addresses import Target, needs_hypervisor, resolve
from dom0.publish.apply import Change, EntryChange, apply, describe_libvirt, plan_apply
from dom0.publish.ruleset import Live, read_live
from dom0.publish.table import DEFAULT_PATH, PublishTable, load_table


def _table(args: argparse.Namespace) -> PublishTable:
    return load_table(Path(args.file) if args.file else DEFAULT_PATH)


def _targets(args: argparse.Namespace, table: PublishTable, *, missing_ok: bool) -> tuple[Target, ...]:
    """Each entry's address now, and every guest named checked on the hypervisor; a table of pinned (`to`)
    addresses only is still applied when no hypervisor answers (a host booting before libvirtd)."""
    if not table.entries:
        return ()
    try:
        with hypervisor(args) as hv:
            return resolve(hv, table, missing_ok=missing_ok)
    except HypervisorUnavailable:
        if needs_hypervisor(table):
            raise
        return resolve(None, table)


def _guest(t: Target) -> str:
    return f"{t.entry.guest}:{t.entry.guest_ports}"


# -- list ----------------------------------------------------------------------------------------------------------


def _state(t: Target, live: Live | None) -> str:
    if live is None:
        return "unknown"
    applied = live.applied.get(t.entry.key)
    if t.address is None:
        return "no address"
    if applied is None:
        return "not applied"
    return "live" if applied == t.destination else "stale"


def cmd_list(args: argparse.Namespace) -> int:
    """The table with each entry's address now and what is applied: stale when the guest's address moved."""
    table = _table(args)
    targets = _targets(args, table, missing_ok=True)
    notes: list[str] = []
    try:
        live: Live | None = read_live()
    except Dom0Error as exc:
        live = None
        notes.append(f"the applied rules cannot be read: {exc.message}")
    rows: list[dict[str, Any]] = []
    for t in targets:
        rows.append(
            {
                "public": t.entry.key,
                "guest": t.entry.guest,
                "guest_ports": str(t.entry.guest_ports),
                "address": None if t.address is None else str(t.address),
                "source": t.source or None,
                "applied": None if live is None else live.applied.get(t.entry.key),
                "state": _state(t, live),
                "note": t.note or None,
                "line": t.entry.line,
            }
        )
    in_table = {t.entry.key for t in targets}
    for key, applied in (live.applied if live else {}).items():
        if key not in in_table:
            rows.append(
                {
                    "public": key,
                    "guest": None,
                    "guest_ports": None,
                    "address": None,
                    "source": None,
                    "applied": applied,
                    "state": "not in table",
                    "note": "removed from the table: `dom0 publish apply` takes its rule away",
                    "line": None,
                }
            )
    if args.json:
        print_json(rows)
        print_notes(notes)
        return 0
    if not rows:
        print(f"nothing published in {terminal_safe(table.path)}; `dom0 publish add` adds an entry")
    else:
        lines = []
        for r in rows:
            now = f"{r['address']} ({r['source']})" if r["address"] else "-"
            guest = f"{r['guest']}:{r['guest_ports']}" if r["guest"] else "-"
            lines.append((r["public"], guest, now, r["applied"] or "-", r["state"]))
        print(render(("Public", "Guest", "Address now", "Applied", "State"), lines))
        for r in rows:
            if r["note"]:
                print(terminal_safe(f"{r['public']}: {r['note']}"))
        if any(r["state"] in ("stale", "not applied", "not in table") for r in rows):
            print("`dom0 publish apply` brings the rules in line with the table")
    print_notes(notes)
    return 0


# -- apply ---------------------------------------------------------------------------------------------------------


def _change_line(c: EntryChange) -> str:
    guest = f" ({c.guest})" if c.guest else ""
    if c.change is Change.ADDED:
        return f"added    {c.key} -> {c.after}{guest}"
    if c.change is Change.CHANGED:
        moved = f"{c.before} -> {c.after}" if c.before != c.after else f"{c.after} (hairpin subnet)"
        return f"changed  {c.key}: {moved}{guest}"
    if c.change is Change.REMOVED:
        return f"removed  {c.key} (was -> {c.before})"
    if c.change is Change.LEFT_OUT:
        return f"left out {c.key}{guest}" + (f" (was -> {c.before})" if c.before else "")
    return f"same     {c.key} -> {c.after}{guest}"


def cmd_apply(args: argparse.Namespace) -> int:
    """Make table inet dom0 match publish.toml in one nft transaction; --dry-run prints it and changes nothing."""
    table = _table(args)
    live = read_live()  # nft missing or unreadable: stop here, before anything is asked or changed
    targets = _targets(args, table, missing_ok=False)
    plan = plan_apply(targets, live)
    done: tuple[str, ...] = ()
    if not args.dry_run:
        done = apply(plan)
    libvirt = [describe_libvirt(c, done=not args.dry_run) for c in plan.libvirt]
    if args.json:
        print_json(
            {
                "dry_run": bool(args.dry_run),
                "changed": plan.changed,
                "ruleset": plan.ruleset,
                "changes": [
                    {
                        "public": c.key,
                        "guest": c.guest or None,
                        "change": str(c.change),
                        "before": c.before or None,
                        "after": c.after or None,
                    }
                    for c in plan.changes
                ],
                "warnings": list(plan.warnings),
                "libvirt": libvirt,
                "done": list(done),
            }
        )
        return 0
    if args.dry_run:
        print(plan.ruleset, end="")
        print()
    for c in plan.changes:
        if c.change is not Change.UNCHANGED:
            print(terminal_safe(_change_line(c)))
    for line in libvirt:
        print(terminal_safe(line))
    source = terminal_safe(table.path)
    if not plan.changed:
        count = len(plan.changes)
        print(f"no change: table inet dom0 already matches {source} ({count} entr{'y' if count == 1 else 'ies'})")
    elif args.dry_run:
        print(f"dry run: nothing was changed; `dom0 publish apply -f {source}` applies it")
    else:
        print(f"applied {source}: table inet dom0 replaced in one transaction")
    print_notes(terminal_safe(w) for w in plan.warnings)
    return 0


# -- check ---------------------------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    """Connect to each entry's guest port and public port from this host; exit 1 when any does not answer."""
    from dom0.publish.check import bridge_netfilter_on, bridge_netfilter_warning, check

    timeout = check_seconds("--timeout", args.timeout, "2", least=0.05)
    table = _table(args)
    results = check(_targets(args, table, missing_ok=True), timeout)
    families = sorted({"ip" if e.public.version == 4 else "ip6" for e in table.entries})
    print_notes(bridge_netfilter_warning(f) for f in families if bridge_netfilter_on(f))
    if args.json:
        print_json(
            [
                {
                    "public": r.target.entry.key,
                    "guest": r.target.entry.guest,
                    "address": r.target.destination or None,
                    "guest_result": r.guest.result,
                    "guest_detail": r.guest.detail or None,
                    "public_result": r.public.result,
                    "public_detail": r.public.detail or None,
                    "failed": r.failed,
                }
                for r in results
            ]
        )
    elif not results:
        print(f"nothing published in {terminal_safe(table.path)}")
    else:
        rows = [
            (r.target.entry.key, _guest(r.target), r.target.destination or "-", r.guest.result, r.public.result)
            for r in results
        ]
        print(render(("Public", "Guest", "Address", "Guest answers", "Public answers"), rows))
        for r in results:
            details = [d for d in (r.guest.detail, r.public.detail) if d]
            if r.failed or r.guest.result == "not checked":
                print(terminal_safe(f"{r.target.entry.key}: {'; '.join(dict.fromkeys(details))}"))
        failed = [r for r in results if r.failed]
        if failed:
            print(f"{len(failed)} of {len(results)} entries do not answer")
    return 1 if any(r.failed for r in results) else 0


# -- proxy ---------------------------------------------------------------------------------------------------------


def cmd_proxy(args: argparse.Namespace) -> int:
    """Print haproxy or Squid configuration that does what the table does, for a proxy in dom0 instead of DNAT."""
    from dom0.publish.proxy import render as render_proxy

    table = _table(args)
    print(render_proxy(_targets(args, table, missing_ok=True), args.proxy_format), end="")
    return 0
