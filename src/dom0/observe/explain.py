"""`dom0 explain`: what a state letter, a Xen VBD number or a guest device name means."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dom0.errors import UsageError
from dom0.model import GuestState
from dom0.observe import vbd


@dataclass(frozen=True, slots=True)
class Explanation:
    """What a word means: a kind ('state', 'vbd'), lines for people and fields for scripts."""

    word: str
    kind: str
    lines: tuple[str, ...]
    fields: dict[str, object] = field(default_factory=dict)


# The largest VBD number, 2**29 - 1 (the extended scheme), has 9 digits.
MAX_DIGITS = 9
VBD_HINT = "VBD numbers are like 5696 or 51712; extended ones stay below 2^29"


def _short(word: str) -> str:
    """A word as an error message shows it: at most 40 characters."""
    return repr(word) if len(word) <= 40 else repr(word[:37] + "...")


_BY_LETTER = {s.letter: s for s in GuestState if s.letter != "-"}
_FLAGS = re.compile(r"^[-rbpscd]{6}$")
_NODE = re.compile(r"^(0x)?([0-9a-f]+):(0x)?([0-9a-f]+)$", re.I)


def _state(word: str) -> Explanation:
    states = [_BY_LETTER[word]] if len(word) == 1 else [_BY_LETTER[c] for c in word if c != "-"]
    if not states:
        text = "'------': no state flag set; xl shows this for a guest that is runnable but not on a CPU now"
        return Explanation(word, "state", (text,), {"states": []})
    lines = tuple(f"{s.letter}  {s.words}" for s in states)
    return Explanation(word, "state", lines, {"states": [s.value for s in states]})


def _vbd(v: vbd.Vbd, word: str) -> Explanation:
    lines = [v.describe()]
    if v.scheme != "xvd-extended":
        lines.append(f"inside the guest: /dev/{v.name} is block device {v.major},{v.minor} (ls -l /dev/{v.name})")
        lines.append(f"xentop -x lists it as 'VBD {v.number} [{v.major:x}:{v.minor:x}]'")
    fields: dict[str, object] = {
        "vbd": v.number,
        "name": v.name,
        "scheme": v.scheme,
        "disk": v.disk,
        "partition": v.partition,
        "major": v.major,
        "minor": v.minor,
    }
    return Explanation(word, "vbd", tuple(lines), fields)


def _node(m: re.Match[str], word: str) -> Explanation:
    """A device node 'major:minor'. `ls -l` shows decimal (22, 64), xentop hex ([16:40]); try both."""
    readings: list[tuple[str, vbd.Vbd]] = []
    forced_hex = bool(m.group(1) or m.group(3))
    for base, label in ((10, "decimal, as ls -l shows it"), (16, "hex, as xentop shows it")):
        if base == 10 and forced_hex:
            continue
        try:
            major, minor = int(m.group(2), base), int(m.group(4), base)
            readings.append((label, vbd.decode(major << 8 | minor)))
        except (ValueError, UsageError):
            continue
    if not readings:
        raise UsageError(
            f"{_short(word)} is not the device node of a Xen disk", "Xen disks use majors 202, 8, 3 and 22"
        )
    if len(readings) == 1:
        return _vbd(readings[0][1], word)
    lines = tuple(f"read as {label}: {v.describe()}" for label, v in readings)
    return Explanation(
        word,
        "vbd",
        lines,
        {"readings": [{"as": label, "vbd": v.number, "name": v.name} for label, v in readings]},
    )


def explain(word: str) -> Explanation:
    """Explain one word; UsageError with examples when it is none of the known kinds."""
    w = word.strip()
    if w in _BY_LETTER or _FLAGS.match(w):
        return _state(w)
    if w.isascii() and w.isdigit():
        if len(w) > MAX_DIGITS:  # also keeps int() within Python's limit on digits it converts
            raise UsageError(f"{_short(w)} is not a VBD number: they have at most {MAX_DIGITS} digits", VBD_HINT)
        return _vbd(vbd.decode(int(w)), word)
    if w.lower().startswith("0x") and w.isascii():
        try:
            return _vbd(vbd.decode(int(w, 16)), word)
        except ValueError:
            pass
    m = _NODE.match(w)
    if m:
        return _node(m, word)
    try:
        return _vbd(vbd.encode(w), word)
    except UsageError:
        pass
    raise UsageError(
        f"cannot explain {_short(word)}",
        "try a state (r b p s c d, or '-b----'), a VBD number (5696), a device node (22:64) or a name (hdd, xvda1)",
    )
