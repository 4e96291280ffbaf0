"""`dom0 image hints`: stubs for the other families' package tools, so `apt-get` on a Fedora guest says what it is.

An administrator who chroots into (or logs in to) the wrong guest types the package tool he is used to and gets
"command not found", which says nothing about where he is. Each stub, in /usr/local/bin, prints "apt-get: this
system is Fedora Core release 5 (Bordeaux) (rpm): use its own package tools: rpm, yum" and exits 127 (the shell's
"not found"), so scripts that test for the tool still see it missing. A stub is written only where the real tool
is absent from /usr/bin, /bin, /usr/sbin and /sbin (a symlink counts as present); each carries a marker line,
and `--remove` takes out exactly the files that carry it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dom0.guest.identity import Edit
from dom0.image.osinspect import OperatingSystem
from dom0.image.tree import ResolvingTree

__all__ = ["MARKER", "STUB_DIR", "TOOLS", "HintPlan", "is_stub", "plan_hints", "stub"]

# Every package tool a lost administrator may type, of every family dom0 knows.
TOOLS = ("dpkg", "apt-get", "apt", "rpm", "yum", "dnf", "zypper", "apk", "pacman", "emerge")
# Where a system's own tools live: one present in any of these (a file or a symlink) is never shadowed.
TOOL_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin")
STUB_DIR = "/usr/local/bin"
MARKER = "# dom0 image hints: package-tool stub"
# A stub is a few hundred bytes; a file much larger than that under a tool's name is not one of them.
MAX_STUB = 4096

# Tools of one generation of a family are not "another family's": yum on a dnf system, apt on an apt-get one.
_SIBLINGS = ({"dpkg", "apt-get", "apt"}, {"yum", "dnf"})


@dataclass(frozen=True, slots=True)
class HintPlan:
    """The stubs to write (or remove), and what was left alone and why."""

    family: str
    tools: tuple[str, ...]
    edits: tuple[Edit, ...]
    notes: tuple[str, ...]


def _sh_quote(text: str) -> str:
    """`text` as one single-quoted sh word: nothing in it is expanded ($, backticks, backslashes stay literal);
    control characters (a newline would end the printf line) become '?'."""
    clean = re.sub(r"[\x00-\x1f\x7f]", "?", text)
    return "'" + clean.replace("'", "'\\''") + "'"


def stub(tool: str, system: OperatingSystem) -> bytes:
    """The stub script for `tool` on `system`; its product name is guest text, so it is only ever printed."""
    family = system.package_format or "unknown"
    message = f"{tool}: this system is {system.product_name} ({family}): use its own package tools: " + ", ".join(
        system.package_tools
    )
    text = (
        "#!/bin/sh\n"
        f"{MARKER}\n"
        "# Written by `dom0 image hints`; `dom0 image hints --remove` takes out the files with the line above.\n"
        f"printf '%s\\n' {_sh_quote(message)} >&2\n"
        "exit 127\n"
    )
    return text.encode("utf-8", errors="replace")


def is_stub(tree: ResolvingTree, path: str) -> bool:
    """Whether `path` is a regular file (not a symlink) holding the marker line: one of dom0's stubs."""
    if tree.readlink(path) is not None or not tree.is_file(path) or tree.size(path) > MAX_STUB:
        return False
    return MARKER in tree.read_bytes(path, MAX_STUB).decode(errors="replace").splitlines()


def _stub_dir(tree: ResolvingTree) -> str | None:
    """Why no stub can go into /usr/local/bin (None when they can): it must be a real directory of the guest."""
    real = tree.realpath(STUB_DIR)
    if real is None or not tree.is_dir(STUB_DIR):
        link = tree.readlink(STUB_DIR) or tree.readlink("/usr/local")
        if link is not None:
            return f"{STUB_DIR} is a symlink to {link}, which is not a directory of the guest: no stubs written"
        return f"{STUB_DIR} does not exist in the guest: no stubs written (dom0 creates files, not directories)"
    if real != STUB_DIR:
        return f"{STUB_DIR} is a symlink (to {real} in the guest): no stubs written through it"
    return None


def _own(system: OperatingSystem) -> set[str]:
    own = set(system.package_tools)
    for family in _SIBLINGS:
        if own & family:
            own |= family
    return own


def plan_hints(tree: ResolvingTree, system: OperatingSystem, *, remove: bool = False) -> HintPlan:
    """The stubs to write into (or, with `remove`, take out of) the guest's /usr/local/bin; reads only."""
    family = system.package_format or "unknown"
    edits: list[Edit] = []
    notes: list[str] = []
    why_not = _stub_dir(tree)
    if why_not is not None:
        return HintPlan(family, system.package_tools, (), (why_not,))
    if remove:
        for tool in TOOLS:
            path = f"{STUB_DIR}/{tool}"
            if tree.lexists(path) and is_stub(tree, path):
                edits.append(Edit(path, "remove", why="dom0's package-tool stub"))
        return HintPlan(family, system.package_tools, tuple(edits), ())
    if not system.package_tools:
        return HintPlan(family, (), (), (f"{system.package_hint}: no stubs written",))
    own = _own(system)
    for tool in TOOLS:
        if tool in own:
            continue
        present = next((d for d in TOOL_DIRS if tree.lexists(f"{d}/{tool}")), None)
        if present is not None:
            notes.append(f"{tool}: installed in {present}, no stub")
            continue
        path = f"{STUB_DIR}/{tool}"
        data = stub(tool, system)
        if tree.lexists(path):
            if not is_stub(tree, path):
                notes.append(f"{path} is not dom0's: left alone")
                continue
            if tree.read_bytes(path, MAX_STUB) == data:
                continue
        edits.append(Edit(path, "write", data, 0o755, f"{tool} is not installed: say this is {family}"))
    return HintPlan(family, system.package_tools, tuple(edits), tuple(notes))
