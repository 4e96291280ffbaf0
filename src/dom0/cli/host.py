"""`dom0 host stop` / `dom0 host start`: every guest saved at host shutdown and brought back at boot."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from dom0.cli.progress import board
from dom0.cli.session import hypervisor, print_json
from dom0.cli.table import render
from dom0.saves import fifo, hostconfig
from dom0.saves import host as hostpower
from dom0.saves.host import Step


def _config(args: argparse.Namespace) -> hostconfig.HostConfig:
    config = hostconfig.load(Path(args.config) if args.config else None)
    if args.dir:
        config = replace(config, directory=Path(args.dir))
    return config


def _sweep(directory: Path, dry_run: bool) -> None:
    """Finish or clear what interrupted runs left in the image directory, saying so on stderr; before connecting."""
    for note in fifo.sweep_leftovers(directory, dry_run=dry_run):
        print(f"dom0: {note}", file=sys.stderr)


def _print(args: argparse.Namespace, steps: list[Step], title: str, seconds: float | None) -> int:
    failed = [s for s in steps if not s.ok]
    if args.json:
        doc = {
            "dry_run": seconds is None,
            "guests": [
                {"name": s.name, "action": s.action, "detail": s.detail, "result": s.result and str(s.result)}
                | ({"error": s.error} if s.error else {})
                for s in steps
            ],
        }
        if seconds is not None:
            doc["seconds"] = round(seconds, 3)
        print_json(doc)
        return 1 if failed else 0
    if not steps:
        print(f"{title}: no guests")
        return 0
    print(f"{title}:")
    rows = [(s.name, s.action, str(s.result or "-"), s.detail) for s in steps]
    print(render(("Guest", "Action", "Result", "Detail"), rows))
    if seconds is not None:
        print(f"done in {seconds:.1f} s")
    for s in failed:
        print(f"dom0: error: {s.error or s.name + ' ' + str(s.result)}", file=sys.stderr)
    return 1 if failed else 0


def cmd_host_stop(args: argparse.Namespace) -> int:
    """Save every running guest in parallel; shut down those that cannot be saved; never destroy."""
    config = _config(args)
    _sweep(config.directory, args.dry_run)
    with hypervisor(args) as hv:
        saves, steps = hostpower.plan_stop(hv, config, args.guests)
        if args.dry_run:
            return _print(args, steps, f"host stop would do (images into {config.directory})", None)
        started = time.monotonic()
        with board(not args.json) as progress:
            results = hostpower.apply_stop(hv, config, saves, steps, progress.bar)
        return _print(args, results, "host stop", time.monotonic() - started)


def cmd_host_start(args: argparse.Namespace) -> int:
    """Restore every saved guest in parallel, then start the guests marked to start at boot."""
    config = _config(args)
    _sweep(config.directory, args.dry_run)
    with hypervisor(args) as hv:
        plans, steps = hostpower.plan_start(hv, config, args.guests)
        if args.dry_run:
            return _print(args, steps, f"host start would do (images from {config.directory})", None)
        started = time.monotonic()
        with board(not args.json) as progress:
            results = hostpower.apply_start(hv, config, plans, steps, progress.bar)
        return _print(args, results, "host start", time.monotonic() - started)
