"""Guests the procedure modules (console, host stop/start, image kernel) make for themselves.

Each is guests.py's guest (the same xl.cfg or libvirt XML) under a name of its own, with a setting or two changed:
no disk and NIC (bare_definition), or the boot lines `dom0 image kernel` printed. The changes are made on the
definition's text and checked to have happened, so a change in guests.py fails here loudly instead of silently
booting something else.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from .guests import BACKENDS, WORK, LabGuest, _remove_domain, dom0, libvirt_xml, xl_cfg

# What the procedures did and how long each step took, kept as they go in the lab's /outputs (read back by lab.py
# even when pytest itself dies of the emulation's troubles before it reports)
TRACE = Path("/outputs/procedures.log")

# guests.py's guests use 00:16:3e:d0:00:NN; these take 00:16:3e:d0:c0:NN
_MAC_PREFIX = "00:16:3e:d0:c0"


def lab_guest(uri: str, role: str, kind: str, number: int, *, disk: Path | None = None) -> LabGuest:
    """A guest named dom0test-TAG-ROLE (not created yet); its disk, where it has one, is `disk` (WORK/NAME.img)."""
    name = f"dom0test-{BACKENDS[uri]}-{role}"
    suffix = ".cfg" if uri == "xl://" else ".xml"
    return LabGuest(
        name, kind, uri, f"{_MAC_PREFIX}:{number:02x}", disk or WORK / f"{name}.img", WORK / (name + suffix)
    )


def trace(text: str) -> None:
    """Add `text` to the procedures' log in the lab's /outputs (nowhere outside the lab)."""
    if TRACE.parent.is_dir():
        with TRACE.open("a") as f:
            f.write(f"[{time.strftime('%H:%M:%S')}] {text.rstrip()}\n")


def definition(g: LabGuest) -> str:
    """The guest as its backend reads it: guests.py's xl.cfg or libvirt XML."""
    return xl_cfg(g) if g.uri == "xl://" else libvirt_xml(g)


def _key(line: str) -> str:
    return line.split("=", 1)[0].strip() if "=" in line else ""


def xl_replace(text: str, drop: Iterable[str] = (), add: Sequence[str] = ()) -> str:
    """An xl.cfg with the settings `drop` names taken out (each must be there) and the lines `add` appended."""
    dropped = set(drop)
    lines = text.splitlines()
    kept = [line for line in lines if _key(line) not in dropped]
    assert len(lines) - len(kept) == len(dropped), f"not every one of {sorted(dropped)} is in:\n{text}"
    return "\n".join([*kept, *add]) + "\n"


def xml_replace(text: str, drop: Iterable[str] = (), after: str = "", add: Sequence[str] = ()) -> str:
    """Libvirt XML with the elements `drop` names taken out (each must be there, on its own lines) and the lines
    `add` put after the first line that starts with `after` (stripped)."""
    dropped = set(drop)
    out: list[str] = []
    gone: set[str] = set()
    inside = ""  # the dropped element whose lines are being skipped
    placed = not add
    for line in text.splitlines():
        if inside:
            inside = "" if line.strip() == f"</{inside}>" else inside
            continue
        tag = re.match(r"\s*<([a-z]+)[ >]", line)
        if tag and tag.group(1) in dropped:
            gone.add(tag.group(1))
            if not line.rstrip().endswith((f"</{tag.group(1)}>", "/>")):
                inside = tag.group(1)
            continue
        out.append(line)
        if not placed and line.strip().startswith(after):
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + a for a in add]
            placed = True
    assert gone == dropped, f"not every one of {sorted(dropped)} is in:\n{text}"
    assert placed, f"no line starting with {after!r} in:\n{text}"
    return "\n".join(out) + "\n"


# The guest kit's idle mode on hvc0, with no data disk to wait for.
IDLE_CMDLINE = "console=hvc0 loglevel=4 dom0test.mode=idle"


def bare_definition(g: LabGuest) -> str:
    """guests.py's guest without its disk and NIC, in the kit's idle mode: what the console and host procedures
    need, and no hotplug scripts to run (Xen's block script takes tens of seconds per disk in an emulated dom0 and
    timed out once two guests were running: "killing execution of /etc/xen/scripts/block add because of timeout")."""
    if g.uri == "xl://":
        return xl_replace(definition(g), drop=("disk", "vif", "extra"), add=[f'extra = "{IDLE_CMDLINE}"'])
    text = xml_replace(definition(g), drop=("disk", "interface", "cmdline"), after="<initrd>", add=[])
    return xml_replace(text, after="<initrd>", add=[f"<cmdline>{IDLE_CMDLINE}</cmdline>"])


def create(*guests: tuple[LabGuest, str]) -> None:
    """Each (guest, definition): whatever an earlier run left of the guest destroyed, its definition written and the
    guest created through `dom0 create` (it boots in the background while the next is created).

    One after another: xl runs side by side in the emulated dom0 crashed on their own locks ("handlereg.c:38: lock:
    Assertion `!e' failed", ld.so's assertions), which one at a time they do not."""
    WORK.mkdir(parents=True, exist_ok=True)
    for g, text in guests:
        _remove_domain(g.uri, g.name)
        g.console_log.unlink(missing_ok=True)
        g.definition_path.write_text(text)
        started = time.monotonic()
        dom0(g.uri, "create", str(g.definition_path), timeout=300)
        trace(f"dom0 create {g.name}: {time.monotonic() - started:.1f} s")
