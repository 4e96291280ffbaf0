"""`dom0 memlock run|status|check`: the support login path kept in RAM (memlockd's config format)."""

from __future__ import annotations

import argparse


def cmd_run(args: argparse.Namespace) -> int:
    """The daemon in the foreground: lock the configured files, follow replaced ones, until SIGTERM."""
    import logging
    import sys
    from pathlib import Path

    from dom0.cli.session import check_seconds
    from dom0.errors import UsageError
    from dom0.memlock import daemon, state

    if not 0 < args.max_share <= 1:
        raise UsageError(
            f"--max-share must be a fraction of RAM above 0 and at most 1, not {args.max_share:g}",
            "e.g. --max-share 0.05 (5% of RAM)",
        )
    poll = check_seconds("--poll", args.poll, "2", least=0.05)
    log = logging.getLogger("dom0.memlock")
    if not log.handlers:
        # one line per event on stderr: journald stamps and tags them under systemd
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.DEBUG if args.debug else logging.INFO)
    config = Path(args.config) if args.config else None
    return daemon.run(config, args.max_share, poll, Path(args.state) if args.state else state.DEFAULT_STATE)


def cmd_status(args: argparse.Namespace) -> int:
    """What the running daemon holds: per file size, locked, resident (mincore, now) and stale; totals."""
    from pathlib import Path

    from dom0 import humanize
    from dom0.cli.session import print_error, print_json, print_notes
    from dom0.cli.table import render, terminal_safe
    from dom0.memlock import state

    path = Path(args.state) if args.state else state.DEFAULT_STATE
    doc = state.with_residency(state.read(path))
    if args.json:
        print_json(doc)
    else:
        rows = [
            [
                terminal_safe(f["path"]),
                humanize.size(int(f["size"])),
                humanize.size(int(f["locked_bytes"])) if f["locked_bytes"] else "-",
                humanize.size(int(f["resident"])),
                "stale" if f["stale"] else "",
            ]
            for f in doc["files"]
        ]
        if rows:
            print(render(["Path", "Size", "Locked", "Resident", "Stale"], rows, right=(1, 2, 3)))
        t = doc["totals"]
        print(
            f"{t['locked_files']} of {t['files']} files locked: {humanize.size(t['locked_bytes'])} of the budget "
            f"{humanize.size(int(doc['budget_bytes']))} ({terminal_safe(doc.get('budget', ''))}); "
            f"{humanize.size(t['resident_bytes'])} resident; {t['stale']} stale; {t['left_out']} left out"
        )
        for f in doc["files"]:
            if not f["locked_bytes"]:
                print(f"left out {terminal_safe(f['path'])}: {terminal_safe(f['left_out_reason'] or 'not locked')}")
        print_notes(terminal_safe(p) for p in doc.get("problems") or [])
    if not doc["running"]:
        print_error(
            f"dom0 memlock is not running: process {doc['pid']} that wrote {path} is gone, nothing is locked",
            "start it again: systemctl start dom0-memlock, or dom0 memlock run",
        )
        return 1
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """`dom0 memlock check`: the config expanded (includes, `+` libraries) and what locking it would cost, against
    the daemon's budget, without locking anything; exit 1 when any line of the config has a problem."""
    from pathlib import Path

    from dom0 import humanize
    from dom0.cli.session import print_json, print_notes
    from dom0.cli.table import render
    from dom0.memlock.config import expand
    from dom0.memlock.daemon import budget, pages

    expansion = expand(Path(args.config) if args.config else None)
    total = expansion.total_bytes
    if args.json:
        print_json(
            {
                "files": [{"path": str(f.path), "size": f.size, "reason": f.reason} for f in expansion.files],
                "total_bytes": total,
                "problems": list(expansion.problems),
                "notes": list(expansion.notes),
                "sources": list(expansion.sources),
            }
        )
        return 1 if expansion.problems else 0
    rows = [(str(f.path), humanize.size(f.size), f.reason) for f in expansion.files]
    if rows:
        print(render(("PATH", "SIZE", "WHY"), rows, right=(1,)))
    # The kernel charges whole pages against RLIMIT_MEMLOCK, so the budget is compared with the paged total.
    charged = sum(pages(f.size) for f in expansion.files)
    limit = budget(0.05)  # what `dom0 memlock run` would allow this process with its default --max-share
    print(f"\n{len(expansion.files)} files, {humanize.size(total)} ({humanize.size(charged)} in whole pages)")
    verdict = "fits" if charged <= limit.limit else f"OVER by {humanize.size(charged - limit.limit)}"
    print(f"budget ({limit.words}): {verdict}")
    print(f"read from: {', '.join(expansion.sources) or 'nothing'}")
    print_notes(expansion.notes)
    print_notes(expansion.problems)
    return 1 if expansion.problems else 0
