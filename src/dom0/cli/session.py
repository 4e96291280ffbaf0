"""What the commands share: opening the hypervisor, image options, JSON output, checking seconds."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypedDict

from dom0.errors import UsageError

if TYPE_CHECKING:
    from dom0.hypervisor import Hypervisor


@contextmanager
def hypervisor(args: argparse.Namespace) -> Iterator[Hypervisor]:
    """The hypervisor chosen by -c and the environment, closed afterwards."""
    # Imported here so commands that read only files (explain, image) never load the hypervisor layer.
    from dom0.hypervisor import choose_uri, connect

    hv = connect(choose_uri(args.connect))
    try:
        yield hv
    finally:
        hv.close()


class ImageOptions(TypedDict):
    """What an image's own header may not decide, as open_image takes it: its format, and where its bases lie."""

    format: str | None
    backing_dirs: tuple[str, ...]


def image_options(args: argparse.Namespace) -> ImageOptions:
    """--format and --backing-dir of an image verb (every `dom0 image` verb declares both)."""
    return {"format": args.image_format, "backing_dirs": tuple(args.backing_dirs)}


def attach_console(args: argparse.Namespace, ref: str) -> int:
    """This terminal on guest `ref`'s serial console until Ctrl-] or the guest stops (`console`, `create --console`)."""
    from dom0.hypervisor.relay import attach

    def connected(name: str) -> None:
        sys.stdout.flush()
        print(f"Connected to {name}'s console; Ctrl-] detaches", file=sys.stderr, flush=True)

    with hypervisor(args) as hv:
        end = attach(hv, ref, sys.stdin.fileno(), sys.stdout.fileno(), connected)
    if end.detached:
        print(f"\ndetached from {end.name}'s console; it keeps running", file=sys.stderr)
    else:
        print(f"\nthe console of {end.name} closed; the guest is now: {end.state}", file=sys.stderr)
    return 0


def print_error(message: str, hint: str = "", *, failed: bool = True) -> None:
    """How every command reports a problem, on stderr: `dom0: error: MESSAGE` (`dom0: MESSAGE` for one that does
    not fail the command), then `  hint: HINT` when there is one."""
    print(f"dom0: {'error: ' if failed else ''}{message}", file=sys.stderr)
    if hint:
        print(f"  hint: {hint}", file=sys.stderr)


def print_notes(notes: Iterable[str]) -> None:
    """Notes that do not fail the command (what a sweep of leftovers did, for example), one `dom0: ` line each."""
    for note in notes:
        print_error(note, failed=False)


def print_json(value: Any) -> None:
    """Print one JSON document on stdout."""
    # One write: json.dump would hand the stream thousands of small pieces (a 200-guest list took 70 ms that way).
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


# Longest wait any option accepts: a day. Longer (or inf, nan) is a typo, and would overflow the sleep.
MAX_SECONDS = 86400.0


def check_seconds(option: str, value: float, example: str, *, least: float = 0.01) -> float:
    """`value` when it is a number of seconds from `least` to a day; UsageError naming the range otherwise."""
    if not (math.isfinite(value) and least <= value <= MAX_SECONDS):
        raise UsageError(
            f"{option} must be between {least:g} and {MAX_SECONDS:g} seconds (a day), not {value:g}",
            f"e.g. {option} {example}",
        )
    return value


def lock_wait(args: argparse.Namespace) -> float | None:
    """--wait-lock's seconds (math.inf for ever), or None: refuse at once when another run changes the guest."""
    seconds: float | None = getattr(args, "wait_lock", None)
    if seconds is None or seconds == math.inf:
        return seconds
    return check_seconds("--wait-lock", seconds, "60")


def say_waiting(name: str, words: str) -> None:
    """The line a waiting run prints once per guest, on stderr (stdout stays the command's own output)."""
    print(f"waiting for {name}: it is {words}", file=sys.stderr, flush=True)


@contextmanager
def guests_locked(args: argparse.Namespace, hv: Hypervisor, refs: Iterable[str], action: str) -> Iterator[None]:
    """Hold the locks of the guests `refs` name for the `with` block (--wait-lock says whether to wait for them).

    Taken before anything is touched; a guest another dom0 run is changing ends the command with one line naming
    that run (GuestBusy, exit 1), nothing done."""
    from dom0.locks import LockKey, hold

    keys = []
    for ref in refs:
        guest = hv.guest(ref)
        keys.append(LockKey(guest.uuid, guest.name))
    held = hold(keys, action, wait=lock_wait(args), waiting=lambda key, holder: say_waiting(key.name, holder.words()))
    try:
        yield
    finally:
        held.release()
