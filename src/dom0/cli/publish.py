"""`dom0 publish add` and `dom0 publish remove`: edit publish.toml. Neither touches the live rules: `dom0 publish
apply` makes the table live, so a batch of edits goes in as one change, after the administrator has looked."""

from __future__ import annotations

import argparse
from pathlib import Path

from dom0.cli.session import hypervisor, print_json
from dom0.cli.table import terminal_safe
from dom0.publish.table import DEFAULT_PATH, PublishEntry, add_entry, entry_json, load_table, make_entry, remove_entries

LIVE = "`dom0 publish apply` makes it live"


def _path(args: argparse.Namespace) -> Path:
    return Path(args.file) if args.file is not None else DEFAULT_PATH


def _describe(entry: PublishEntry) -> str:
    to = f" (at {entry.to})" if entry.to is not None else ""
    return terminal_safe(f"{entry.key} -> {entry.target}{to}")


def cmd_add(args: argparse.Namespace) -> int:
    path = _path(args)
    entry = make_entry(args.public, args.guest, args.to)
    # The file's own faults and a taken port are found before the hypervisor is asked anything.
    if not any(entry.collides(other) for other in load_table(path).entries):
        with hypervisor(args) as hv:
            hv.guest(entry.guest)  # GuestNotFound: one line, and the hint to list the guests
    # stored as the administrator named it: a name they chose reads better in the file than the UUID behind it
    table = add_entry(path, entry)
    added = table.entries[-1]
    if args.json:
        print_json(entry_json(added))
    else:
        print(f"published {_describe(added)} in {terminal_safe(path)}; {LIVE}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    path = _path(args)
    removed = remove_entries(path, args.what)
    if args.json:
        print_json([entry_json(e) for e in removed])
    else:
        for entry in removed:
            print(f"removed {_describe(entry)} from {terminal_safe(path)}")
        print("`dom0 publish apply` makes the change live; until then the rules in force still publish it")
    return 0
