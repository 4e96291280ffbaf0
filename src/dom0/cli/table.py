"""Plain aligned text tables, the way `xm list` printed them (no colour, cheap to import)."""

from __future__ import annotations

import re
from collections.abc import Sequence

# C0 and C1 controls, DEL, and the bidirectional overrides and isolates: a hostname or release name read from a
# guest can carry an escape sequence that retitles the admin's terminal, moves the cursor or hides text.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: object) -> str:
    """`text` with every control character shown as an escape (ESC as \\x1b, a newline as \\x0a).

    For text that comes from a guest, an image or any other file dom0 does not trust, before it reaches a terminal.
    """
    return _UNSAFE.sub(_escape, str(text))


def render(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell; columns whose index is in `right` are right-aligned.

    Cells are shown terminal-safe: a guest's name or file never writes an escape sequence into the table.
    """
    cells = [[terminal_safe(h) for h in headers]] + [[terminal_safe(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i]) for i in range(len(headers))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
