"""`dom0 save` and `dom0 restore`: guests to compressed images and back, in parallel."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from dom0.cli.progress import board
from dom0.cli.session import hypervisor, lock_wait, print_error, print_json, print_notes, say_waiting
from dom0.cli.table import render
from dom0.errors import UsageError
from dom0.humanize import size as size_iec
from dom0.model import Guest
from dom0.saves import batch, fifo, manifest, stream
from dom0.saves.batch import Locks, Outcome
from dom0.saves.codec import Compression
from dom0.saves.manifest import Manifest
from dom0.saves.stream import RestorePlan


def _check_jobs(args: argparse.Namespace) -> None:
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1", "leave it out to run two per core")


def _check_arguments(args: argparse.Namespace) -> tuple[Compression, int]:
    """Everything about the command line that needs no hypervisor: checked before connecting."""
    if args.all and args.guests:
        raise UsageError("give guests or --all, not both")
    if not args.all and not args.guests:
        raise UsageError("name the guests to save, or --all for every running guest")
    _check_jobs(args)
    kind = Compression(args.compress)
    return kind, kind.check_level(args.level if args.level is not None else kind.default_level)


def _locks(args: argparse.Namespace, action: str) -> Locks:
    """The guests' locks of this run: named guests all or none, --all the free ones (--wait-lock: wait first)."""
    return Locks(
        action,
        every=bool(args.all),
        wait=lock_wait(args),
        waiting=lambda key, holder: say_waiting(key.name, holder.words()),
    )


def cmd_save(args: argparse.Namespace) -> int:
    """Save guests' memory to compressed images; they stop once their image is on disk."""
    directory = Path(args.dir)
    kind, level = _check_arguments(args)
    locks = _locks(args, "save")
    print_notes(fifo.sweep_leftovers(directory, dry_run=args.dry_run))
    with hypervisor(args) as hv:
        refs = None if args.all else args.guests
        if args.dry_run:  # changes nothing, so it takes no lock and never waits for one
            planned = batch.plan_saves(hv, refs, directory, kind, level, jobs=args.jobs, replace=args.replace)
            return _print_save_plan(args, planned)
        # Each guest's lock is held from before its plan until its image is in place: a second run for the
        # same guest refuses (or waits) before it makes a FIFO, a work directory or an image.
        with locks:
            planned = batch.plan_saves(
                hv, refs, directory, kind, level, jobs=args.jobs, replace=args.replace, locks=locks
            )
            if not planned.plans and not planned.left:
                print("no running guests to save")
                return 0
            started = time.monotonic()
            outcomes: list[Outcome[Manifest]] = []
            if planned.plans:
                print_notes(batch.serial_notes(hv, len(planned.plans)))
                with board(not args.json) as progress:
                    outcomes = batch.save_all(hv, planned.plans, planned.options, planned.jobs, progress.bar)
            return _report_saves(args, [*outcomes, *planned.left], directory, time.monotonic() - started)


def _print_save_plan(args: argparse.Namespace, planned: batch.SaveBatch) -> int:
    plans, options, jobs = planned.plans, planned.options, planned.jobs
    how = f"{options.compression} level {options.level}" if options.compression is not Compression.NONE else "raw"
    if args.json:
        print_json(
            {
                "dry_run": True,
                "jobs": jobs,
                "one_at_a_time": planned.serial or None,
                "compression": str(options.compression),
                "level": options.level,
                "guests": [
                    {"name": p.guest.name, "uuid": p.guest.uuid, "image": str(p.image), "replaces": p.replaces}
                    for p in plans
                ],
            }
        )
        return 0
    serial = f" ({planned.serial})" if planned.serial else ""
    print(f"would save {len(plans)} guest(s), {jobs} at a time{serial}, {how}, into {options.directory}:")
    rows = [
        (
            p.guest.name,
            str(p.guest.state),
            size_iec(p.guest.memory_kib * 1024),
            p.image.name + (" (replaces)" if p.replaces else ""),
        )
        for p in plans
    ]
    print(render(("Guest", "State", "Memory", "Image"), rows))
    return 0


def _report_saves(args: argparse.Namespace, outcomes: list[Outcome[Manifest]], directory: Path, seconds: float) -> int:
    failed = [o for o in outcomes if not o.ok]
    if args.json:
        print_json(
            {
                "directory": str(directory),
                "seconds": round(seconds, 3),
                "guests": [_save_json(o, directory) for o in outcomes],
            }
        )
        return 1 if failed else 0
    rows = []
    saved = 0
    for o in outcomes:
        if o.skipped:
            rows.append((o.name, "-", "-", "-", "-", f"skipped: {o.skipped}"))
        if o.value is None:
            continue
        m = o.value
        ratio = f"{100 * m.stored_bytes / m.raw_bytes:.0f}%" if m.raw_bytes else "-"
        rows.append((m.name, m.state, size_iec(m.raw_bytes), size_iec(m.stored_bytes), ratio, m.image))
        saved += 1
    if rows:
        print(render(("Guest", "Was", "Raw", "Stored", "Ratio", "Image"), rows, right=(2, 3, 4)))
    if saved:
        print(f"saved {saved} guest(s) into {directory} in {seconds:.1f} s")
    _print_errors(failed)
    return 1 if failed else 0


def _failed_json(o: Outcome[Any]) -> dict[str, Any]:
    """A guest that was not saved or restored; `skipped` says which other run holds it."""
    return {"name": o.name, "ok": False, "error": o.error, "hint": o.hint} | (
        {"skipped": f"skipped: {o.skipped}"} if o.skipped else {}
    )


def _save_json(o: Outcome[Manifest], directory: Path) -> dict[str, Any]:
    if o.value is None:
        return _failed_json(o)
    doc = o.value.to_json()
    return {
        "name": o.name,
        "ok": True,
        "image": str(directory / o.value.image),
        "manifest": str(manifest.manifest_path(directory, o.name)),
        **{k: doc[k] for k in ("uuid", "state", "compression", "level", "raw_bytes", "stored_bytes", "sha256")},
    }


def _print_errors(outcomes: list[Outcome[Any]]) -> None:
    """Each failed guest's error and hint, as a failing command prints its own."""
    for o in outcomes:
        print_error(o.error, o.hint)


# -- restore --------------------------------------------------------------------------------------------------


def _images(args: argparse.Namespace) -> list[Path]:
    if args.all and args.files:
        raise UsageError("give images or --all DIR, not both")
    _check_jobs(args)
    if args.all:
        print_notes(
            fifo.sweep_leftovers(Path(args.all), dry_run=args.dry_run)
        )  # first: a complete save it left becomes restorable
        return manifest.find(Path(args.all))
    if not args.files:
        raise UsageError("name the images (or their NAME.manifest.json) to restore, or --all DIR")
    return [Path(f) for f in args.files]


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore saved guests: each image is checked before the hypervisor reads it, then streamed into it."""
    paths = _images(args)
    if not paths:
        print(f"no saved guests in {args.all}")
        return 0
    jobs = args.jobs or batch.restore_jobs(paths)
    locks = _locks(args, "restore")
    with hypervisor(args) as hv:
        if args.dry_run:
            checked = batch.check_all(hv, paths, jobs, paused=args.paused)
            plans = [o.value for o in checked if o.value is not None]
            return _print_restore_plan(args, plans, [o for o in checked if not o.ok])
        # Keyed by the UUID the manifest records: the lock is the saved guest's, whatever it is called now.
        with locks:
            acting, left = locks.take(paths, batch.image_name, stream.restore_key)
            started = time.monotonic()
            outcomes: list[Outcome[Any]] = []
            if acting:
                print_notes(batch.serial_notes(hv, len(acting)))
                with board(not args.json) as progress:
                    outcomes = batch.restore_all(hv, acting, jobs, paused=args.paused, keep=args.keep, bar=progress.bar)
            return _report_restores(args, [*outcomes, *left], time.monotonic() - started)


def _print_restore_plan(args: argparse.Namespace, plans: list[RestorePlan], refused: list[Outcome[RestorePlan]]) -> int:
    if args.json:
        print_json(
            {
                "dry_run": True,
                "images": [{"name": p.name, "image": str(p.image), "paused": p.paused, "ok": True} for p in plans]
                + [{"name": o.name, "ok": False, "error": o.error, "hint": o.hint} for o in refused],
            }
        )
        return 1 if refused else 0
    if plans:
        print(f"would restore {len(plans)} guest(s):")
        rows = [(p.name, p.image.name, "paused" if p.paused else "running") for p in plans]
        print(render(("Guest", "Image", "Comes back"), rows))
    _print_errors(refused)
    return 1 if refused else 0


def _report_restores(args: argparse.Namespace, outcomes: list[Outcome[Any]], seconds: float) -> int:
    failed = [o for o in outcomes if not o.ok]
    done = [o.value for o in outcomes if o.ok and isinstance(o.value, Guest)]
    if args.json:
        print_json(
            {
                "seconds": round(seconds, 3),
                "guests": [{"name": g.name, "ok": True, "uuid": g.uuid, "state": str(g.state)} for g in done]
                + [_failed_json(o) for o in failed],
            }
        )
        return 1 if failed else 0
    rows: list[tuple[str, object, str]] = [(g.name, g.id, str(g.state)) for g in done]
    rows += [(o.name, "-", f"skipped: {o.skipped}") for o in failed if o.skipped]
    if rows:
        print(render(("Guest", "ID", "State"), rows))
    if done:
        kept = " (images kept)" if args.keep else ""
        print(f"restored {len(done)} guest(s) in {seconds:.1f} s{kept}")
    _print_errors(failed)
    return 1 if failed else 0
