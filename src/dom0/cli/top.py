"""`dom0 top`: the xentop-like live screen, and batch samples (text or JSON Lines) for scripts."""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
# The live screen's keys, as xentop names them on its last line (either case works, as in xentop).
KEYS = (
    ("B", "disks"),
    ("N", "networks"),
    ("D", "delay"),
    ("S", "sort"),
    ("R", "repeat header"),
    ("\u2191\u2193", "scroll"),
    ("Q", "quit"),
)
KEYS_HELP = "  ".join(f"{key} {words}" for key, words in KEYS)


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
    """Key presses from the terminal, or nothing (only waiting) when stdin is not a terminal."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def wait(self, timeout: float) -> list[str]:
        """The keys pressed within `timeout` seconds (none if none), as `keys()` names them."""
        if self._fd is None:
            time.sleep(max(0.0, timeout))
            return []
        ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout))
        if not ready:
            return []
        data = os.read(self._fd, 64)
        if not data:  # stdin closed: keep the screen running on the timer alone
            self._fd = None
        return keys(data.decode(errors="replace"))


# What terminals send for the keys xentop binds beyond letters (both the normal and the "application" cursor mode
# forms, since a terminal left in either mode by another program sends that one).
_SEQUENCES = {
    "\x1b[A": "up",
    "\x1bOA": "up",
    "\x1b[B": "down",
    "\x1bOB": "down",
    "\x1b[5~": "pgup",
    "\x1b[6~": "pgdn",
}
_SINGLE = {"\x1b": "esc", "\r": "enter", "\n": "enter", "\x7f": "backspace", "\x08": "backspace", "\x0c": "repaint"}


def keys(data: str) -> list[str]:
    """The keys in what one read returned: characters, or names for the keys above ('up', 'esc', 'enter', ...).

    A lone Esc quits, as in xentop; an escape sequence this screen does not use (F1, Home) is skipped whole, so its
    letters are not taken for commands.
    """
    out: list[str] = []
    i = 0
    while i < len(data):
        if data[i] == "\x1b" and i + 1 < len(data) and data[i + 1] in "[O":
            j = i + 2
            while j < len(data) and not ("\x40" <= data[j] <= "\x7e"):
                j += 1
            seq = data[i : j + 1]
            if seq in _SEQUENCES:
                out.append(_SEQUENCES[seq])
            i = j + 1
            continue
        out.append(_SINGLE.get(data[i], data[i]))
        i += 1
    return out


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


# S cycles through the columns as xentop does: names A to Z, states in xentop's order (dying, shutdown, blocked,
# crashed, paused, running: the ones to look at first), every number largest first. NOTE is text, not an order.
_STATE_ORDER = "dsbcpr"


def _state_rank(flags: str) -> tuple[bool, ...]:
    return tuple(letter not in flags for letter in _STATE_ORDER)


_SORTS: tuple[Callable[[GuestRates], Any], ...] = (
    lambda r: r.guest.name.casefold(),
    lambda r: _state_rank(r.guest.state.flags),
    lambda r: -r.guest.cpu_time_ns,
    lambda r: -r.cpu_percent,
    lambda r: -r.guest.memory_kib,
    lambda r: -r.guest.memory_kib,
    lambda r: -r.guest.vcpus,
    lambda r: -len(r.nics),
    lambda r: -r.nic_bytes_per_s[0],
    lambda r: -r.nic_bytes_per_s[1],
    lambda r: -len(r.disks),
    lambda r: -r.disk_bytes_per_s[0],
    lambda r: -r.disk_bytes_per_s[1],
)
PROMPT_MAX = 80  # xentop's PROMPT_VAL_LEN: what the delay prompt keeps


@dataclass
class _View:
    """What the keys changed on the live screen (xentop's toggles, sort column, scroll position and prompt)."""

    delay: float
    disks: bool = False
    nics: bool = False
    repeat_header: bool = False
    sort: int = 0  # xentop starts sorted by name
    first: int = 0  # index of the first guest shown (Up/Down scroll by one guest, PgUp/PgDn by a screenful)
    page: int = 10
    prompt: str | None = None  # what was typed after D, while the delay prompt is open
    message: str = ""  # shown on the last line until the next key
    quit: bool = False

    def press(self, key: str) -> bool:
        """Apply one key; whether the screen should be drawn again at once."""
        self.message = ""
        if self.prompt is not None:
            self._edit(key)
            return True
        low = key.lower() if len(key) == 1 else key
        if low in ("q", "esc"):
            self.quit = True
        elif low == "b":
            self.disks = not self.disks
        elif low == "n":
            self.nics = not self.nics
        elif low == "r":
            self.repeat_header = not self.repeat_header
        elif low == "s":
            self.sort = (self.sort + 1) % len(_SORTS)
        elif low == "d":
            self.prompt = ""
        elif low == "v":
            self.message = NO_VCPUS
        elif low in ("up", "down", "pgup", "pgdn"):
            step = {"up": -1, "down": 1, "pgup": -self.page, "pgdn": self.page}[low]
            self.first = max(0, self.first + step)
        elif low != "repaint":
            return False
        return True

    def _edit(self, key: str) -> None:
        """xentop's line editing at the prompt: Enter sets, Esc cancels, Backspace deletes, printables are typed."""
        assert self.prompt is not None
        if key == "enter":
            typed, self.prompt = self.prompt.strip(), None
            try:
                value = float(typed)
            except ValueError:
                self.message = f"delay not changed: {typed or 'nothing'!r} is not a number of seconds (e.g. 2)"
                return
            try:
                self.delay = check_seconds("delay", value, "2")
            except UsageError as e:
                self.message = f"delay not changed: {e.message}"
        elif key == "esc":
            self.prompt = None
        elif key == "backspace":
            self.prompt = self.prompt[:-1]
        elif len(key) == 1 and key.isprintable() and len(self.prompt) < PROMPT_MAX:
            self.prompt += key


NO_VCPUS = "V (per-VCPU times): dom0 top does not measure each VCPU; CPU(sec) and CPU(%) are the guest's total"


def shown(sample: Sample, view: _View) -> list[tuple[list[str], GuestRates | None]]:
    """The live screen's rows: guests in the view's sort order from the scroll position, with header rows repeated
    before each guest when R asked for them (the second item is the guest, None for detail and header rows)."""
    guests = sorted(sample.guests, key=_SORTS[view.sort])
    view.first = min(view.first, max(0, len(guests) - 1))  # as xentop: the last guest stays on the screen
    out: list[tuple[list[str], GuestRates | None]] = []
    picked = Sample(sample.time, sample.interval_s, tuple(guests[view.first :]))
    for row, guest in rows(picked, disks=view.disks, nics=view.nics):
        if guest is not None and out and view.repeat_header:
            out.append((list(HEADERS), None))
        out.append((row, guest))
    return out


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


class _BottomLine:
    """The body cropped to the screen, and one line at the foot of it: xentop's key help or its prompt."""

    def __init__(self, body: RenderableType, bottom: RenderableType) -> None:
        self.body, self.bottom = body, bottom

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.segment import Segment

        height = options.height or console.height
        body = console.render_lines(self.body, options.update(height=max(0, height - 1)), pad=False)
        for line in body:
            yield from line
            yield Segment.line()
        for line in console.render_lines(self.bottom, options.update(height=1), pad=False):
            yield from line


def _bottom(view: _View) -> RenderableType:
    from rich.text import Text

    if view.prompt is not None:
        return Text(f"Delay(sec): {view.prompt}")
    if view.message:
        return Text(view.message, style="bold")
    on = {"disks": view.disks, "networks": view.nics, "repeat header": view.repeat_header}
    line = Text()
    for key, words in KEYS:
        if line:
            line.append("  ")
        line.append(key, style="reverse")
        line.append(f" {words}", style="bold" if on.get(words) else "")
    return line


def _screen(uri: str, sample: Sample | None, view: _View) -> RenderableType:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    delay = f"delay {view.delay:g} s"
    if sample is None:
        return _BottomLine(Text(f"dom0 top  {uri}  {delay}  measuring ..."), _bottom(view))
    title = Text(f"dom0 top  {uri}  {_heading(sample)}  {delay}  sorted by {HEADERS[view.sort]}  ")
    title.append(f"disks {'on' if view.disks else 'off'}, networks {'on' if view.nics else 'off'}")
    table = Table(box=None, pad_edge=False, header_style="reverse", show_edge=False)
    for i, h in enumerate(HEADERS):
        # xentop's header shows the sort column in bold
        table.add_column(h, justify="right" if i in RIGHT else "left", no_wrap=True, header_style=_sorted(i, view))
    for row, guest in shown(sample, view):
        if guest is None and row == HEADERS:
            table.add_row(*(Text(h, style=_sorted(i, view)) for i, h in enumerate(row)), style="reverse")
            continue
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
    return _BottomLine(Group(*parts), _bottom(view))


def _sorted(column: int, view: _View) -> str:
    return "bold reverse" if column == view.sort else "reverse"


def _live(sampler: Sampler, uri: str, iterations: int | None, delay: float) -> None:
    from rich.console import Console
    from rich.live import Live

    view = _View(delay)
    sample: Sample | None = None
    count = 0
    sampler.sample()
    last = time.monotonic()
    console = Console()
    with (
        _cbreak() as terminal,
        Live(_screen(uri, None, view), console=console, screen=True, auto_refresh=False) as live,
    ):
        while True:
            pressed = terminal.wait(last + view.delay - time.monotonic())
            view.page = max(1, console.height - 4)
            redraw = False
            for key in pressed:
                redraw = view.press(key) or redraw
                if view.quit:
                    return
            # A new delay counts from the last sample, as xentop's does: shortening it can sample at once.
            if time.monotonic() >= last + view.delay:
                sample = sampler.sample()
                count += 1
                # Counted from when the sample was due, so samples stay `delay` apart however long a reading takes;
                # a screen that fell a whole delay behind starts again from now.
                due, now = last + view.delay, time.monotonic()
                last = due if now - due < view.delay else now
            elif not redraw:
                continue
            live.update(_screen(uri, sample, view), refresh=True)
            if iterations is not None and count >= iterations:
                return
