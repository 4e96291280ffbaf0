"""`dom0 host stop` / `dom0 host start`: every guest saved at host shutdown and brought back at boot."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from dom0.cli.progress import board
from dom0.cli.session import hypervisor, lock_wait, print_error, print_json, print_notes, say_waiting
from dom0.cli.table import render
from dom0.hypervisor import Hypervisor
from dom0.model import BarFactory
from dom0.saves import batch, fifo, hostconfig
from dom0.saves import host as hostpower
from dom0.saves.batch import Locks
from dom0.saves.host import Step
from dom0.saves.hostconfig import HostConfig

P = TypeVar("P")  # what one guest's save or restore was planned as


def _config(args: argparse.Namespace) -> HostConfig:
    config = hostconfig.load(Path(args.config) if args.config else None)
    if args.dir:
        config = replace(config, directory=Path(args.dir))
    return config


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
        print_error(s.error or f"{s.name} {s.result}")
    return 1 if failed else 0


def cmd_host_stop(args: argparse.Namespace) -> int:
    """Save every running guest in parallel; shut down those that cannot be saved; never destroy."""
    return _run(args, "host stop", "into", hostpower.plan_stop, hostpower.apply_stop)


def cmd_host_start(args: argparse.Namespace) -> int:
    """Restore every saved guest in parallel, then start the guests marked to start at boot."""
    return _run(args, "host start", "from", hostpower.plan_start, hostpower.apply_start)


def _run(
    args: argparse.Namespace,
    title: str,
    images: str,
    plan: Callable[[Hypervisor, HostConfig, Sequence[str], Locks | None], tuple[list[P], list[Step]]],
    apply: Callable[[Hypervisor, HostConfig, list[P], list[Step], BarFactory], list[Step]],
) -> int:
    """Plan every guest's step (and stop there with --dry-run), apply them, print each guest's result.

    Each guest's lock is held from its plan to its result; a guest another dom0 run holds is reported as skipped,
    and this run neither waits for it (without --wait-lock) nor undoes what the other run does to it."""
    config = _config(args)
    locks = Locks(
        title, every=True, wait=lock_wait(args), waiting=lambda key, holder: say_waiting(key.name, holder.words())
    )
    print_notes(fifo.sweep_leftovers(config.directory, dry_run=args.dry_run))
    with hypervisor(args) as hv:
        if args.dry_run:  # changes nothing: takes no lock
            plans, steps = plan(hv, config, args.guests, None)
            return _print(args, steps, f"{title} would do (images {images} {config.directory})", None)
        with locks:
            plans, steps = plan(hv, config, args.guests, locks)
            print_notes(batch.serial_notes(hv, len(plans)))
            started = time.monotonic()
            with board(not args.json) as progress:
                results = apply(hv, config, plans, steps, progress.bar)
            return _print(args, results, title, time.monotonic() - started)
