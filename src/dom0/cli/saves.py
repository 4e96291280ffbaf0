"""`dom0 save` and `dom0 restore`: guests to compressed images and back, in parallel."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from dom0.cli.progress import board
from dom0.cli.session import hypervisor, print_json
from dom0.cli.table import render
from dom0.errors import Dom0Error, UsageError
from dom0.filedata import open_regular
from dom0.humanize import size as size_iec
from dom0.hypervisor import Hypervisor
from dom0.model import Guest
from dom0.saves import batch, codec, manifest, stream
from dom0.saves.batch import Outcome
from dom0.saves.codec import Compression
from dom0.saves.fifo import check_directory, sweep
from dom0.saves.manifest import Manifest
from dom0.saves.stream import RestorePlan, SaveOptions, SavePlan


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


def _targets(args: argparse.Namespace, hv: Hypervisor) -> list[Guest]:
    if args.all:
        return [g for g in hv.guests() if g.state.is_active]
    return [hv.guest(ref) for ref in args.guests]


def cmd_save(args: argparse.Namespace) -> int:
    """Save guests' memory to compressed images; they stop once their image is on disk."""
    directory = Path(args.dir)
    kind, level = _check_arguments(args)
    sweep_leftovers(directory, args.dry_run)
    with hypervisor(args) as hv:
        guests = _targets(args, hv)
        target = directory if directory.is_dir() else directory.parent
        jobs = args.jobs or batch.default_jobs(target, len(guests), compressed=kind is not Compression.NONE)
        options = SaveOptions(directory, kind, level, batch.compressor_threads(jobs), args.replace)
        # Planned first, so a guest or driver that cannot be saved is refused before anything is created.
        plans = [stream.plan_save(hv, g, options) for g in guests]
        if args.dry_run:
            return _print_save_plan(args, plans, options, jobs)
        if not plans:
            print("no running guests to save")
            return 0
        _make_directory(directory)
        started = time.monotonic()
        with board(not args.json) as progress:
            outcomes = batch.save_all(hv, plans, options, jobs, progress.bar)
        return _report_saves(args, outcomes, directory, time.monotonic() - started)


def _make_directory(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise Dom0Error(f"cannot create {directory}: {exc.strerror}", "give a writable directory with -d") from exc


def sweep_leftovers(directory: Path, dry_run: bool) -> None:
    """Finish or clear what interrupted runs left in `directory`, saying so; call it before connecting.

    A hypervisor such a run left waiting on its FIFO holds its guests' locks, so listing them would hang.
    """
    if not directory.is_dir():
        return
    check_directory(directory)  # a dry run says so too
    if dry_run:
        return
    for note in sweep(directory):
        print(f"dom0: {note}", file=sys.stderr)


def _print_save_plan(args: argparse.Namespace, plans: list[SavePlan], options: SaveOptions, jobs: int) -> int:
    how = f"{options.compression} level {options.level}" if options.compression is not Compression.NONE else "raw"
    if args.json:
        print_json(
            {
                "dry_run": True,
                "jobs": jobs,
                "compression": str(options.compression),
                "level": options.level,
                "guests": [
                    {"name": p.guest.name, "uuid": p.guest.uuid, "image": str(p.image), "replaces": p.replaces}
                    for p in plans
                ],
            }
        )
        return 0
    print(f"would save {len(plans)} guest(s), {jobs} at a time, {how}, into {options.directory}:")
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
    for o in outcomes:
        if o.value is None:
            continue
        m = o.value
        ratio = f"{100 * m.stored_bytes / m.raw_bytes:.0f}%" if m.raw_bytes else "-"
        rows.append((m.name, m.state, size_iec(m.raw_bytes), size_iec(m.stored_bytes), ratio, m.image))
    if rows:
        print(render(("Guest", "Was", "Raw", "Stored", "Ratio", "Image"), rows, right=(2, 3, 4)))
        print(f"saved {len(rows)} guest(s) into {directory} in {seconds:.1f} s")
    for o in failed:
        print(f"dom0: error: {o.error}" + (f"\n  hint: {o.hint}" if o.hint else ""), file=_stderr())
    return 1 if failed else 0


def _save_json(o: Outcome[Manifest], directory: Path) -> dict[str, Any]:
    if o.value is None:
        return {"name": o.name, "ok": False, "error": o.error, "hint": o.hint}
    doc = o.value.to_json()
    return {
        "name": o.name,
        "ok": True,
        "image": str(directory / o.value.image),
        "manifest": str(manifest.manifest_path(directory, o.name)),
        **{k: doc[k] for k in ("uuid", "state", "compression", "level", "raw_bytes", "stored_bytes", "sha256")},
    }


def _stderr() -> TextIO:
    return sys.stderr


# -- restore --------------------------------------------------------------------------------------------------


def _images(args: argparse.Namespace) -> list[Path]:
    if args.all and args.files:
        raise UsageError("give images or --all DIR, not both")
    _check_jobs(args)
    if args.all:
        sweep_leftovers(Path(args.all), args.dry_run)  # first: a complete save it left becomes restorable
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
    jobs = args.jobs or batch.default_jobs(paths[0].parent, len(paths), compressed=not any(map(_raw, paths)))
    with hypervisor(args) as hv:
        if args.dry_run:
            checked = batch.check_all(hv, paths, jobs, paused=args.paused)
            plans = [o.value for o in checked if o.value is not None]
            return _print_restore_plan(args, plans, [o for o in checked if not o.ok])
        started = time.monotonic()
        with board(not args.json) as progress:
            outcomes = batch.restore_all(hv, paths, jobs, paused=args.paused, keep=args.keep, bar=progress.bar)
        return _report_restores(args, outcomes, time.monotonic() - started)


def _raw(path: Path) -> bool:
    """Whether `path` names an uncompressed image (a bare hypervisor image, or a manifest of one)."""
    try:
        if path.name.endswith(manifest.SUFFIX):
            return manifest.read(path).compression is Compression.NONE
        with os.fdopen(open_regular(path), "rb") as f:  # a FIFO or device given as an image hangs nothing
            return codec.detect(f.read(8)) is Compression.NONE
    except (Dom0Error, OSError):
        return False  # its check refuses it, with the reason


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
    for o in refused:
        print(f"dom0: error: {o.error}" + (f"\n  hint: {o.hint}" if o.hint else ""), file=_stderr())
    return 1 if refused else 0


def _report_restores(args: argparse.Namespace, outcomes: list[Outcome[Any]], seconds: float) -> int:
    failed = [o for o in outcomes if not o.ok]
    done = [o.value for o in outcomes if o.ok and isinstance(o.value, Guest)]
    if args.json:
        print_json(
            {
                "seconds": round(seconds, 3),
                "guests": [{"name": g.name, "ok": True, "uuid": g.uuid, "state": str(g.state)} for g in done]
                + [{"name": o.name, "ok": False, "error": o.error, "hint": o.hint} for o in failed],
            }
        )
        return 1 if failed else 0
    if done:
        print(render(("Guest", "ID", "State"), [(g.name, g.id, str(g.state)) for g in done]))
        kept = " (images kept)" if args.keep else ""
        print(f"restored {len(done)} guest(s) in {seconds:.1f} s{kept}")
    for o in failed:
        print(f"dom0: error: {o.error}" + (f"\n  hint: {o.hint}" if o.hint else ""), file=_stderr())
    return 1 if failed else 0
