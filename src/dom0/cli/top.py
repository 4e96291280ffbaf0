"""`dom0 top`: the xentop-like live screen, and batch samples (text or JSON Lines) for scripts."""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

from dom0 import humanize
from dom0.cli.session import check_seconds, hypervisor
from dom0.cli.table import render
from dom0.errors import UsageError
from dom0.observe.top import DiskRate, GuestRates, NicRate, Sample, Sampler, as_json, every

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType, RenderResult

HEADERS = [
    "NAME",
    "STATE",
    "CPU(sec)",
    "CPU(%)",
    "MEM(MiB)",
    "MEM(%)",
    "VCPUS",
    "NETS",
    "NETTX",
    "NETRX",
    "VBDS",
    "VBD_RD",
    "VBD_WR",
    "NOTE",
]
RIGHT = (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
KEYS_HELP = "d disks  n networks  q quit"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _guest_row(r: GuestRates) -> list[str]:
    g = r.guest
    tx, rx = r.nic_bytes_per_s
    rd, wr = r.disk_bytes_per_s
    return [
        g.name,
        g.state.flags,
        f"{g.cpu_time_ns / 1e9:.0f}",
        f"{r.cpu_percent:.1f}",
        str(g.memory_kib // 1024),
        _pct(r.memory_percent),
        str(g.vcpus),
        str(len(r.nics)),
        humanize.rate(tx),
        humanize.rate(rx),
        str(len(r.disks)),
        humanize.rate(rd),
        humanize.rate(wr),
        "; ".join(r.notes),
    ]


def _disk_row(d: DiskRate) -> list[str]:
    what = []
    if d.vbd is not None:
        what.append(f"VBD {d.vbd}")
    if d.swap:
        what.append("swap")
    row = [""] * len(HEADERS)
    row[0] = f"  disk {d.target}"
    row[11] = f"{humanize.rate(d.rd_bytes_per_s)} {d.rd_reqs_per_s:.0f} req/s"
    row[12] = f"{humanize.rate(d.wr_bytes_per_s)} {d.wr_reqs_per_s:.0f} req/s"
    row[13] = ", ".join(what)
    return row


def _nic_row(n: NicRate) -> list[str]:
    row = [""] * len(HEADERS)
    row[0] = f"  net {n.target or '?'}"
    row[8] = humanize.rate(n.tx_bytes_per_s)
    row[9] = humanize.rate(n.rx_bytes_per_s)
    row[13] = n.mac
    return row


def rows(sample: Sample, *, disks: bool, nics: bool) -> list[tuple[list[str], GuestRates | None]]:
    """Table rows: one per guest, then its disk and NIC rows when asked for (second item: the guest, or None)."""
    out: list[tuple[list[str], GuestRates | None]] = []
    for r in sample.guests:
        out.append((_guest_row(r), r))
        if disks:
            out.extend((_disk_row(d), None) for d in r.disks)
        if nics:
            out.extend((_nic_row(n), None) for n in r.nics)
    return out


def _heading(sample: Sample) -> str:
    return (
        f"{sample.time.isoformat(timespec='seconds')}  interval {sample.interval_s:.1f} s  {len(sample.guests)} guests"
    )


def text_block(sample: Sample) -> str:
    """One batch sample as plain text: a timestamp line and the table with every disk and NIC."""
    body = render(HEADERS, [row for row, _ in rows(sample, disks=True, nics=True)], right=RIGHT)
    if not sample.guests:
        body += "\n(no running guests)"
    return f"--- {_heading(sample)}\n{body}"


def _check(args: argparse.Namespace) -> None:
    if args.iterations is not None and args.iterations < 1:
        raise UsageError(f"-n must be at least 1, not {args.iterations}", "e.g. -n 5 for five samples")
    check_seconds("-d", args.delay, "2")


def cmd_top(args: argparse.Namespace) -> int:
    """`dom0 top [--batch] [-n N] [-d SECONDS] [--json] [GUEST...]`."""
    _check(args)
    batch = args.batch or args.json or not sys.stdout.isatty()
    with hypervisor(args) as hv:
        sampler = Sampler(hv, args.guests)
        if batch:
            _batch(sampler, args.iterations or 1, args.delay, as_json_lines=args.json)
        else:
            # Ctrl-C is how many people leave top: a clean exit; the terminal was restored on the way out.
            with suppress(KeyboardInterrupt):
                _live(sampler, hv.uri, args.iterations, args.delay)
    return 0


def _batch(sampler: Sampler, iterations: int, delay: float, *, as_json_lines: bool) -> None:
    for sample in every(sampler, iterations, delay):
        if as_json_lines:
            sys.stdout.write(json.dumps(as_json(sample)) + "\n")
        else:
            sys.stdout.write(text_block(sample) + "\n\n")
        sys.stdout.flush()


class _Keys:
    """Single key presses from the terminal, or nothing (only waiting) when stdin is not a terminal."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def wait(self, timeout: float) -> str:
        """The keys pressed within `timeout` seconds ('' if none)."""
        if self._fd is None:
            time.sleep(max(0.0, timeout))
            return ""
        ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout))
        if not ready:
            return ""
        data = os.read(self._fd, 64)
        if not data:  # stdin closed: keep the screen running on the timer alone
            self._fd = None
        return data.decode(errors="replace")


@contextmanager
def _cbreak() -> Iterator[_Keys]:
    """Keys without Enter and without echo; the terminal's settings come back however the block ends."""
    if not sys.stdin.isatty():
        yield _Keys(None)
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)  # cbreak keeps ISIG, so Ctrl-C still raises KeyboardInterrupt
        yield _Keys(fd)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class _Unsqueezed:
    """Renders a table at its natural width; the screen then crops long lines, as xentop does, instead of rich
    squeezing every number into an ellipsis on an 80-column terminal."""

    def __init__(self, inner: RenderableType) -> None:
        self.inner = inner

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.measure import Measurement

        wide = options.update(width=max(options.max_width, 1000))
        natural = Measurement.get(console, wide, self.inner).maximum
        yield from console.render(self.inner, options.update(width=max(natural, options.max_width)))


def _screen(uri: str, sample: Sample | None, delay: float, disks: bool, nics: bool) -> RenderableType:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    if sample is None:
        return Text(f"dom0 top  {uri}  measuring for {delay:g} s ...  ({KEYS_HELP})")
    title = Text(f"dom0 top  {uri}  {_heading(sample)}  ({KEYS_HELP}; disks {'on' if disks else 'off'}, ")
    title.append(f"networks {'on' if nics else 'off'})")
    table = Table(box=None, pad_edge=False, header_style="bold reverse", show_edge=False)
    for i, h in enumerate(HEADERS):
        table.add_column(h, justify="right" if i in RIGHT else "left", no_wrap=True)
    for row, guest in rows(sample, disks=disks, nics=nics):
        style = "bold red" if guest is not None and guest.paging_heavily else ("dim" if guest is None else "")
        table.add_row(*row, style=style)
    parts: list[RenderableType] = [title, _Unsqueezed(table)]
    if not sample.guests:
        parts.append(Text("(no running guests)"))
    # The NOTE column is the last one and the first to be cropped on a narrow terminal; notes matter most, so they
    # are repeated below the table.
    for r in sample.guests:
        for note in r.notes:
            parts.append(Text(f"{r.guest.name}: {note}", style="bold red" if r.paging_heavily else ""))
    return Group(*parts)


def _live(sampler: Sampler, uri: str, iterations: int | None, delay: float) -> None:
    from rich.console import Console
    from rich.live import Live

    show_disks = show_nics = False
    sample: Sample | None = None
    count = 0
    sampler.sample()
    deadline = time.monotonic() + delay
    with (
        _cbreak() as keys,
        Live(_screen(uri, None, delay, False, False), console=Console(), screen=True, auto_refresh=False) as live,
    ):
        while True:
            pressed = keys.wait(deadline - time.monotonic())
            if "q" in pressed.lower():
                return
            toggled = False
            for key in pressed.lower():
                if key == "d":
                    show_disks, toggled = not show_disks, True
                elif key == "n":
                    show_nics, toggled = not show_nics, True
            if time.monotonic() >= deadline:
                sample = sampler.sample()
                count += 1
                deadline = max(deadline + delay, time.monotonic())
            elif not toggled:
                continue
            live.update(_screen(uri, sample, delay, show_disks, show_nics), refresh=True)
            if iterations is not None and count >= iterations:
                return
