"""`dom0 mem`, `dom0 mem set` and `dom0 plan`: guests' memory as they use it, balloons, and room for more."""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import suppress
from dataclasses import asdict
from typing import Any

from dom0 import humanize
from dom0.cli.session import check_seconds, guests_locked, hypervisor, print_error, print_json, print_notes
from dom0.cli.table import render, terminal_safe
from dom0.errors import UsageError
from dom0.memory.reading import MemoryReport, Verdict, read_memory, typical_guest_mib


def _size_kib(option: str, text: str) -> int:
    try:
        return humanize.parse_size(text) // 1024
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}", f"e.g. {option} 512M") from None


def _cell(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def report_json(report: MemoryReport) -> dict[str, Any]:
    """The documented JSON: `host` and `guests[]` with *_mib and *_s keys, null for what is not known."""
    host = asdict(report.host)
    guests = []
    for g in report.guests:
        row = asdict(g)
        row["state"] = str(g.state)
        row["verdict"] = str(g.verdict)
        guests.append(row)
    return {"host": host, "guests": guests, "notes": list(report.notes), "sample_s": report.sample_s}


def report_text(report: MemoryReport) -> str:
    """The table, the host's lines, and a why/hint line for each guest that is not ok."""
    headers = ["Name", "Max", "Now", "Used", "Usable", "SwapIn", "SwapOut", "MajFlt", "HostRSS", "HostPSS", "Verdict"]
    rows = [
        [
            g.name,
            _cell(g.max_mib),
            _cell(g.current_mib),
            _cell(g.used_mib),
            _cell(g.usable_mib),
            _cell(g.swap_in_kib_s),
            _cell(g.swap_out_kib_s),
            _cell(g.major_faults_s, 1),
            _cell(g.host_rss_mib),
            _cell(g.host_pss_mib),
            str(g.verdict),
        ]
        for g in report.guests
    ]
    lines = [render(headers, rows, right=tuple(range(1, 10)))] if rows else ["(no guests running)"]
    lines.append("  (MiB; swap in KiB/s and major faults per second over the sample; Host = the QEMU process)")
    h = report.host
    dom0 = f"{h.dom0_used_mib} MiB" if h.dom0_used_mib is not None else "not measurable from here"
    lines += [
        "",
        f"host {terminal_safe(h.hostname)} ({h.hypervisor}): {h.total_mib} MiB, {h.available_mib} MiB available "
        f"({h.available_means})",
        f"  guests promised {h.committed_max_mib} MiB at most, hold {h.committed_current_mib} MiB now; "
        f"overcommit {h.overcommit:.2f} of what is left after dom0's reserve",
        f"  dom0 itself uses {dom0}; reserve {h.reserve_mib} MiB",
    ]
    if h.swap_used_mib is not None:
        rates = ""
        if h.swap_in_kib_s is not None and h.swap_out_kib_s is not None:
            rates = f", swapping in {h.swap_in_kib_s:.0f} / out {h.swap_out_kib_s:.0f} KiB/s"
        pressure = ""
        if h.pressure_some_avg10 is not None:
            pressure = f"; memory pressure {h.pressure_some_avg10:.1f}% (some, 10 s)"
        lines.append(f"  dom0's swap: {h.swap_used_mib} MiB used{rates}{pressure}")
    explained = [g for g in report.guests if g.verdict is not Verdict.OK]
    if explained:
        lines.append("")
    for g in explained:
        lines.append(f"{terminal_safe(g.name)}: {g.verdict}: {g.why}")
        if g.hint:
            lines.append(f"  hint: {terminal_safe(g.hint)}")
    return "\n".join(lines)


def cmd_mem(args: argparse.Namespace) -> int:
    """`dom0 mem [GUEST...] [--watch S] [--sample S] [--json]`, and `dom0 mem set GUEST SIZE`."""
    if args.guests[:1] == ["set"]:
        return _cmd_set(args)
    sample = check_seconds("--sample", args.sample, "1", least=0.0)
    watch = check_seconds("--watch", args.watch, "5") if args.watch is not None else None
    with hypervisor(args) as hv:
        report = read_memory(hv, args.guests, sample_s=sample)
        _show(report, args.json, watching=watch is not None)
        if watch is None:
            return 0
        with suppress(KeyboardInterrupt):
            while True:
                time.sleep(max(0.0, watch - sample))
                _show(read_memory(hv, args.guests, sample_s=sample), args.json, watching=True)
    return 0


def _show(report: MemoryReport, as_json: bool, *, watching: bool) -> None:
    if as_json and watching:
        sys.stdout.write(json.dumps(report_json(report)) + "\n")  # one document per line
    elif as_json:
        print_json(report_json(report))
    else:
        if watching:
            print(time.strftime("-- %H:%M:%S"))
        print(report_text(report))
        print_notes(report.notes)
    sys.stdout.flush()


def _cmd_set(args: argparse.Namespace) -> int:
    from dom0.memory.balloon import set_guest_memory

    if len(args.guests) != 3:
        raise UsageError("usage: dom0 mem set GUEST SIZE", "e.g. dom0 mem set web1 768M")
    _, ref, size = args.guests
    target = _size_kib("SIZE", size)
    timeout = check_seconds("--timeout", args.timeout, "30")
    with hypervisor(args) as hv, guests_locked(args, hv, [ref], "mem set"):
        move = set_guest_memory(hv, ref, target, force=args.force, timeout=timeout)
    if args.json:
        print_json(asdict(move))
    elif move.reached:
        print(
            f"{move.name}: {move.before_mib} -> {move.now_mib} MiB in {move.seconds:g} s (at most {move.max_mib} MiB)"
        )
    if not move.reached:
        print_error(
            f"{move.name}'s balloon got from {move.before_mib} to {move.now_mib} MiB of the {move.target_mib} MiB "
            f"asked within {move.seconds:g} s",
            "the guest's balloon driver may still be working (run `dom0 mem` later), refuse to give more "
            "(it needs what it holds), or not be loaded at all",
        )
        return 1
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """`dom0 plan [--guest-memory SIZE] [--reserve SIZE] [--json]`."""
    from dom0.memory.capacity import plan_capacity

    size = _size_kib("--guest-memory", args.guest_memory) // 1024 if args.guest_memory else None
    reserve = _size_kib("--reserve", args.reserve) // 1024 if args.reserve else None
    if size is not None and size < 1:
        raise UsageError("--guest-memory must be at least 1 MiB", "e.g. --guest-memory 1G")
    with hypervisor(args) as hv:
        report = read_memory(hv)
    origin = "--guest-memory"
    if size is None:
        size = typical_guest_mib(report)
        origin = "the median maximum of the running guests"
        if size is None:
            raise UsageError("no running guest to take a typical size from", "give --guest-memory SIZE, e.g. 1G")
    plan = plan_capacity(report, size, reserve, guest_memory_from=origin)
    if args.json:
        print_json(asdict(plan))
        return 0
    print(f"one more guest of {plan.guest_memory_mib} MiB ({plan.guest_memory_from}):")
    print(f"  fits by free memory now:      {plan.fits_by_free}  ({plan.available_mib} MiB free for guests)")
    print(
        f"  fits by committed maxima:     {plan.fits_by_committed}  ({plan.total_mib} MiB - reserve "
        f"{plan.reserve_mib} - guests' maxima {plan.committed_max_mib})"
    )
    print(f"  dom0's reserve: {plan.reserve_mib} MiB ({plan.reserve_from})")
    if plan.give_back:
        print("\ncould give memory back (their own statistics say they use far less):")
        rows = [[g.name, g.current_mib, g.used_mib, g.suggest_mib, g.frees_mib] for g in plan.give_back]
        print(render(["Name", "Now", "Used", "Suggest", "Frees"], rows, right=(1, 2, 3, 4)))
        print("  (MiB; `dom0 mem set NAME SIZE` moves a balloon)")
    if plan.needs_more:
        print("\nneed more memory:")
        for n in plan.needs_more:
            print(f"  {terminal_safe(n.name)}: {n.verdict}: {n.why}")
            print(f"    hint: {terminal_safe(n.hint)}")
    print_notes(report.notes)
    return 0
