"""`dom0 image inspect GUEST`, `TARGET TARGET...` and `--all`: every guest's operating system at a glance.

One target that is a guest gets the detailed report of each of its disks; several (or --all) one table, a row per
guest or path, with what each row needs said below it. The hypervisor is asked first and closed before the images
are read (in parallel, by forked workers).
"""

from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING, Any

from dom0.cli.image import _os_json, _os_text, _ready_text, layout_json, layout_text
from dom0.cli.session import hypervisor, image_options, print_json
from dom0.cli.table import render, terminal_safe
from dom0.errors import Dom0Error, UsageError

if TYPE_CHECKING:
    from dom0.hypervisor import Hypervisor
    from dom0.image.survey import DiskReport, Report

HEADERS = ["GUEST", "STATE", "OS", "PACKAGES", "KERNEL", "CONSOLE", "HOSTNAME"]


def disk_json(d: DiskReport) -> dict[str, Any]:
    """One disk as `image inspect PATH --json` shows it, with the guest's name for it and why it was not read."""
    if d.layout is not None:
        doc = layout_json(d.disk.path, d.kind, d.layout)
    else:
        doc = {"path": d.disk.path, "format": d.kind or None}
        if d.kind == "directory":
            doc["size_bytes"] = None
    doc["operating_systems"] = [_os_json(s, r) for s, r in d.systems]
    return {"disk": d.disk.name or None, **doc, "error": d.error}


def report_json(r: Report) -> dict[str, Any]:
    """One target's full report: what it is, the row's facts, each disk's document, the notes."""
    g = r.guest
    return {
        "target": r.target,
        "guest": g.name if g is not None else (r.name if r.state is not None else None),
        "uuid": g.uuid if g is not None else None,
        "state": r.state,
        "hypervisor": g.hypervisor if g is not None else None,
        "boot_kernel": (g.kernel or None) if g is not None else None,
        "error": r.error,
        "row": r.row.to_json() if r.row is not None else None,
        "disks": [disk_json(d) for d in r.disks],
        "notes": list(r.notes),
    }


def _kernel_cell(r: Report) -> str:
    row = r.row
    if row is None or row.kernel is None:
        return "-"
    if row.boots is None or row.boots == row.kernel:
        return row.kernel + (" (booted)" if row.boots else "")
    return f"boots {row.boots}, {row.kernel} installed"


def _hostname_cell(r: Report) -> str:
    row = r.row
    if row is None or not row.hostname:
        return "-"
    return row.hostname + (f" (not {r.name})" if row.hostname_matches is False else "")


def table_row(r: Report) -> list[str]:
    """The cells of one target's row in the table."""
    state = r.state or "-"
    if r.row is None:
        return [r.name, state, f"not read: {r.error}", "-", "-", "-", "-"]
    row = r.row
    os_words = row.os or "-"
    return [r.name, state, os_words, row.packages or "-", _kernel_cell(r), row.console or "-", _hostname_cell(r)]


def _detail_lines(r: Report) -> list[str]:
    lines: list[str] = []
    for d in r.disks:
        if r.guest is not None:
            lines.append(f"guest {r.guest.name} ({r.state}), disk {d.disk.name}: {d.disk.path}")
        if d.error is not None:
            lines.append(f"  not read: {d.error}")
            continue
        if d.layout is not None:
            lines.extend(layout_text(d.disk.path, d.kind, d.layout))
        else:
            lines.append(f"{d.disk.path}: directory (a mounted or chroot tree)")
        for s, ready in d.systems:
            lines.extend([*_os_text(s), *_ready_text(ready)])
    lines.extend(f"  note: {n}" for n in r.notes)
    return lines


def _surveyed(args: argparse.Namespace) -> list[Report]:
    from dom0.image.survey import resolve_all, survey

    with contextlib.ExitStack() as stack:
        opened: list[Hypervisor] = []

        def hv() -> Hypervisor:
            # Connected only when a target is not a path, or for --all: paths alone need no hypervisor.
            if not opened:
                opened.append(stack.enter_context(hypervisor(args)))
            return opened[0]

        items = resolve_all(args.targets, hv=hv, image_options=image_options(args), every=args.all)
    # The connection is closed here, before the workers fork: they get plain data and never touch libvirt.
    return survey(items, jobs=args.jobs)


def cmd_survey(args: argparse.Namespace) -> int:
    """A guest's detailed report, or one table for several targets or --all; exit 1 if any could not be read."""
    if not args.targets and not args.all:
        raise UsageError(
            "say what to inspect: an image, device, directory or guest (several at once), or --all",
            "e.g. dom0 image inspect web.img, or dom0 image inspect --all",
        )
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, not {args.jobs}", "e.g. --jobs 4")
    reports = _surveyed(args)
    if len(reports) == 1 and not args.all:
        report = reports[0]
        if report.error is not None:
            raise Dom0Error(
                report.error if report.guest is None and report.state is None else f"{report.name}: {report.error}",
                report.hint or "dom0 image inspect DISK-PATH shows what a disk holds",
            )
        if args.json:
            print_json(report_json(report))
        else:
            print("\n".join(terminal_safe(line) for line in _detail_lines(report)))
        return 0
    if args.json:
        print_json([report_json(r) for r in reports])
    else:
        print(render(HEADERS, [table_row(r) for r in reports]))
        if not reports:
            print("(no guests)")
        for r in reports:
            for note in r.notes:
                print(terminal_safe(f"{r.name}: {note}"))
    return 1 if any(r.error is not None for r in reports) else 0
