"""OOM kills found in a guest's console log and the hypervisor's log of it.

A guest's OOM kill sends the host no event: only its kernel's console lines tell. One kill prints several lines
(which task invoked the killer, the `oom-kill:` summary of newer kernels, the `Killed process` line), and older
kernels first name a candidate ("Kill process N (x) score S or sacrifice child") and then the task really killed,
so lines are grouped into kills rather than counted one by one.

The text is what the guest wrote: hostile. Lines are cut to MAX_LINE before any pattern sees them, each pattern
is bounded, and names are kept as written (the CLI escapes control characters when it prints them).
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field

from dom0.doctor.findings import Finding, Severity
from dom0.hypervisor.protocol import LogText

# A kernel line is under 1 KiB; anything past this in one "line" is not what the kernel printed.
MAX_LINE = 4096
# The kernel's task names are at most 15 bytes (TASK_COMM_LEN); a cgroup or log prefix may add some.
_NAME = r"(.{0,64}?)"

_INVOKED = re.compile(r"(\S{1,64}) invoked oom-killer")
_SUMMARY = re.compile(r"oom-kill:[^ ]{0,2048}?task=([^,]{0,64}),pid=(\d{1,10})")
_KILLED = re.compile(r"Killed process (\d{1,10}) \(" + _NAME + r"\)")
_CANDIDATE = re.compile(r"Kill process (\d{1,10}) \(" + _NAME + r"\)")
_KERNEL_TS = re.compile(r"\[ {0,12}(\d{1,10}\.\d{1,9})\]")
_ISO_TS = re.compile(r"^ {0,4}(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)")
_SYSLOG_TS = re.compile(r"^([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)")
# The path a backend names in a log's source, "console log of web (/var/log/...)".
_SOURCE_PATH = re.compile(r"\((/[^()]{1,4096})\)\s*$")
_MARKERS = ("oom", "out of memory", "kill process", "killed process")


@dataclass(frozen=True, slots=True)
class OomKill:
    """One kill: the task killed (or, where the log never says, the one that invoked the killer) and when."""

    process: str
    pid: int | None
    when: str  # the line's own timestamp in words; "" when the line has none


@dataclass(slots=True)
class _Event:
    process: str = ""
    pid: int | None = None
    when: str = ""
    killed: bool = False  # the "Killed process" line was seen: this kill is complete
    named: bool = False  # an oom-kill: summary or a candidate named the task


def _when(line: str) -> str:
    wall = _ISO_TS.search(line) or _SYSLOG_TS.search(line)
    kernel = _KERNEL_TS.search(line)
    if wall and kernel:
        return f"{wall.group(1)} ({float(kernel.group(1)):.1f} s after the guest booted)"
    if wall:
        return wall.group(1)
    return f"{float(kernel.group(1)):.1f} s after the guest booted" if kernel else ""


def scan(text: str) -> tuple[OomKill, ...]:
    """Every OOM kill in a log's text, oldest first."""
    events: list[_Event] = []
    current: _Event | None = None

    def start(line: str) -> _Event:
        event = _Event(when=_when(line))
        events.append(event)
        return event

    for raw in text.splitlines():
        line = raw[:MAX_LINE]
        lower = line.lower()
        if not any(marker in lower for marker in _MARKERS):
            continue
        if m := _INVOKED.search(line):
            current = start(line)
            current.process = m.group(1)  # until the line naming the task killed
        elif m := _SUMMARY.search(line):
            if current is None or current.named or current.killed:
                current = start(line)
            current.process, current.pid, current.named = m.group(1), int(m.group(2)), True
        elif m := _KILLED.search(line):
            if current is None or current.killed:
                current = start(line)
            current.pid, current.process, current.killed = int(m.group(1)), m.group(2), True
            current.when = current.when or _when(line)
        elif m := _CANDIDATE.search(line):
            if current is None or current.named or current.killed:
                current = start(line)
            current.pid, current.process, current.named = int(m.group(1)), m.group(2), True
    return tuple(OomKill(e.process or "an unnamed task", e.pid, e.when) for e in events)


def log_mtime(source: str) -> float | None:
    """When the log file named in a LogText's source was last written; None when not known."""
    m = _SOURCE_PATH.search(source)
    if not m:
        return None
    try:
        return os.stat(m.group(1), follow_symlinks=False).st_mtime
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class LogKills:
    """The kills found in one log of one guest."""

    guest: str
    source: str
    kills: tuple[OomKill, ...] = field(default=())
    mtime: float | None = None


def read_log(guest: str, log: LogText) -> LogKills:
    """The kills in one of the guest's logs (`hv.guest_logs` returns at most the last 1 MiB of each)."""
    kills = scan(log.text)
    return LogKills(guest, log.source, kills, log_mtime(log.source) if kills else None)


def _who(kill: OomKill) -> str:
    return f"{kill.process} (pid {kill.pid})" if kill.pid is not None else kill.process


def finding(found: LogKills) -> Finding | None:
    """A warning naming the last process killed, when, and how many kills the log holds; None without kills."""
    if not found.kills:
        return None
    last = found.kills[-1]
    if last.when:
        when = f"at {last.when}"
    elif found.mtime is not None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(found.mtime))
        when = f"time unknown (the log was last written {stamp})"
    else:
        when = "time unknown"
    count = len(found.kills)
    evidence = f"{count} OOM kill{'s' if count != 1 else ''} in {found.source}: last killed {_who(last)} {when}"
    others = Counter(k.process for k in found.kills[:-1])
    if others:
        shown = ", ".join(f"{name} x{n}" if n > 1 else name for name, n in others.most_common(5))
        evidence += f"; before that: {shown}"
    return Finding(
        Severity.WARNING,
        found.guest,
        "oom",
        evidence,
        f"`dom0 dmesg {found.guest}` shows the kernel's report; shrink what grew (worker pools) or give it more "
        f"memory (`dom0 mem set {found.guest} SIZE`)",
    )
