"""Guests the procedure modules (console, host stop/start, image kernel) make for themselves.

Each is guests.py's guest (the same xl.cfg or libvirt XML, disk and NIC on xenbr0) under a name of its own, with a
setting or two changed: the boot lines `dom0 image kernel` printed, or a vNUMA layout. The changes are made on the
definition's text and checked to have happened, so a change in guests.py fails here loudly instead of silently
booting something else.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from .guests import BACKENDS, WORK, LabGuest, _remove_domain, libvirt_xml, xl_cfg

# guests.py's guests use 00:16:3e:d0:00:NN; these take 00:16:3e:d0:c0:NN
_MAC_PREFIX = "00:16:3e:d0:c0"


def lab_guest(uri: str, role: str, kind: str, number: int, *, disk: Path | None = None) -> LabGuest:
    """A guest named dom0test-TAG-ROLE (not created yet); its disk is a 64 MiB sparse file unless `disk` is given."""
    name = f"dom0test-{BACKENDS[uri]}-{role}"
    suffix = ".cfg" if uri == "xl://" else ".xml"
    return LabGuest(
        name, kind, uri, f"{_MAC_PREFIX}:{number:02x}", disk or WORK / f"{name}.img", WORK / (name + suffix)
    )


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
    """Libvirt XML with the one-line elements `drop` names taken out (each must be there) and the lines `add`
    put after the first line that starts with `after` (stripped)."""
    dropped = set(drop)
    out: list[str] = []
    gone = 0
    placed = not add
    for line in text.splitlines():
        tag = re.match(r"\s*<([a-z]+)[ >]", line)
        if tag and tag.group(1) in dropped and line.rstrip().endswith(f"</{tag.group(1)}>"):
            gone += 1
            continue
        out.append(line)
        if not placed and line.strip().startswith(after):
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + a for a in add]
            placed = True
    assert gone == len(dropped), f"not every one of {sorted(dropped)} is in:\n{text}"
    assert placed, f"no line starting with {after!r} in:\n{text}"
    return "\n".join(out) + "\n"


def blank_disk(g: LabGuest, mib: int = 64) -> None:
    """A sparse raw disk for the guest (the busybox guests never need its contents)."""
    WORK.mkdir(parents=True, exist_ok=True)
    g.disk.unlink(missing_ok=True)
    with g.disk.open("wb") as f:
        f.truncate(mib << 20)


def create(*guests: tuple[LabGuest, str]) -> None:
    """Each (guest, definition): whatever an earlier run left of the guest destroyed, its definition written and the
    guest created through `dom0 create`, all side by side (each boots in the background); their disks must exist.

    Side by side because each `dom0 create` spends most of its time starting Python and xl in an emulated dom0."""
    runs = []
    for g, text in guests:
        _remove_domain(g.uri, g.name)
        g.console_log.unlink(missing_ok=True)
        g.definition_path.write_text(text)
        args = [sys.executable, "-m", "dom0", "-c", g.uri, "create", str(g.definition_path)]
        runs.append(subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    failed = []
    for (g, _), proc in zip(guests, runs, strict=True):
        out, _ = proc.communicate(timeout=300)
        if proc.returncode != 0:
            failed.append(f"dom0 -c {g.uri} create {g.definition_path} exited {proc.returncode}:\n{out.decode()}")
    if failed:
        pytest.fail("\n".join(failed))
