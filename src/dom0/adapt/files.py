"""The guest files `dom0 image adapt` changes so a guest boots on another hypervisor: its console (console.py), NIC
driver aliases (nic.py), disk names (disknames.py), SELinux labels (selinux.py), and the kernel command line in its
boot loader's configuration (here, as both console= and root=/resume= live there).

plan_files only reads. It returns a FilesPlan: `changes` (one FileChange per file, with the Edit that makes it) and
`notes` (what was left alone and why: a symlinked or oversized config, a directory where a file should be, a boot
loader dom0 does not know). Only files the guest needs changed appear, so applying the changes and planning again
gives no changes. Every file read is a regular file of the guest itself: a config that is a symlink is never read
through (it may point at anything, in the guest or meant for the host) and is left alone with a note.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from dom0.adapt import console, disknames, nic, selinux
from dom0.adapt.target import Devices, Target
from dom0.errors import Dom0Error
from dom0.guest.identity import Edit
from dom0.image.osinspect import OperatingSystem
from dom0.image.probe import Filesystem
from dom0.image.tree import MAX_CONFIG_READ, ResolvingTree

__all__ = ["FileChange", "FilesPlan", "plan_files"]

# grub.cfg lists every kernel with its submenus; a few hundred KiB at most on a host with many kernels.
MAX_BOOT_CONFIG_READ = 1024 * 1024

GRUB2_CONFIGS = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")
# RHEL/CentOS/Fedora's legacy grub reads grub.conf; menu.lst is normally a symlink to it (left alone as such).
GRUB_LEGACY_CONFIGS = ("/boot/grub/grub.conf", "/boot/grub/menu.lst")
DEFAULT_GRUB = "/etc/default/grub"


@dataclass(frozen=True)
class FileChange:
    """One guest file as it is and as it will be: `before` None for a new file, `after` None for a removal; for a
    symlink (edit.action "symlink") `after` is its target. `edit` makes the change through a GuestEditor."""

    path: str
    before: str | None
    after: str | None
    why: str
    edit: Edit


class FilesPlan(NamedTuple):
    """What plan_files found: the changes in the order they were first planned, and notes on what was left alone.
    A NamedTuple, so `changes, notes = plan_files(...)` works too."""

    changes: tuple[FileChange, ...]
    notes: tuple[str, ...]


@dataclass
class Draft:
    """The guest's files as the plan so far leaves them: each file read once (regular files only), edited in turn
    by each concern, compared with what it was at the end."""

    tree: ResolvingTree
    original: dict[str, str | None] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    whys: dict[str, list[str]] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _refused: set[str] = field(default_factory=set)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def read(self, path: str, limit: int = MAX_CONFIG_READ) -> str | None:
        """The text of `path` as planned so far; None when it is absent or cannot be read as a regular file of
        the guest (a note says why, once)."""
        if path in self.text:
            return self.text[path]
        if path in self._refused:
            return None
        why = self._unreadable(path, limit)
        if why:
            self._refused.add(path)
            if why != "absent":
                self.note(f"{path} left alone: {why}")
            return None
        try:
            data = self.tree.read_bytes(path, limit)
        except Dom0Error as exc:
            self._refused.add(path)
            self.note(f"{path} left alone: {exc.message}")
            return None
        # surrogateescape: bytes that are not UTF-8 (an old Latin-1 comment) are written back as they were.
        text = data.decode(errors="surrogateescape")
        self.original[path] = text
        self.text[path] = text
        return text

    def _unreadable(self, path: str, limit: int) -> str:
        tree = self.tree
        try:
            if not tree.lexists(path):
                return "absent"
            target = tree.readlink(path)
            if target is not None:
                return f"it is a symlink (to {target}), not followed"
            if tree.is_dir(path):
                return "it is a directory, not a file"
            if not tree.is_file(path):
                return "it is not a regular file"
            if tree.size(path) > limit:
                return f"{tree.size(path)} bytes, more than a config file can be (the image may be damaged)"
        except Dom0Error as exc:
            return exc.message
        return ""

    def is_dir(self, path: str) -> bool:
        """Whether `path` is a directory of the guest (resolved inside it)."""
        try:
            return self.tree.is_dir(path)
        except Dom0Error:
            return False

    def lexists(self, path: str) -> bool:
        """Whether anything (a dangling link too) is at `path`, or is planned there."""
        if path in self.text or path in self.links:
            return True
        try:
            return self.tree.lexists(path)
        except Dom0Error:
            return True  # unresolvable (a link loop): never written over

    def update(self, path: str, text: str, why: str, mode: int = 0o644) -> None:
        """Plan `path` to hold `text` (read() first for an existing file)."""
        if self.text.get(path) == text:
            return
        if path not in self.text:
            self.original[path] = None
        self.text[path] = text
        self.modes.setdefault(path, mode)
        reasons = self.whys.setdefault(path, [])
        if why not in reasons:
            reasons.append(why)

    def create(self, path: str, text: str, why: str, mode: int = 0o644) -> bool:
        """Plan a new file at `path` when nothing is there and its directory exists; False (and a note) if not."""
        if self.lexists(path):
            return False
        parent = path.rpartition("/")[0] or "/"
        if not self.is_dir(parent):
            self.note(f"{path} not created: {parent} is not a directory in the guest")
            return False
        self.update(path, text, why, mode)
        return True

    def symlink(self, path: str, target: str, why: str) -> bool:
        """Plan a symlink at `path` when nothing is there and its directory exists."""
        if self.lexists(path):
            return False
        parent = path.rpartition("/")[0] or "/"
        if not self.is_dir(parent):
            self.note(f"{path} not linked: {parent} is not a directory in the guest")
            return False
        self.links[path] = target
        self.whys.setdefault(path, []).append(why)
        return True

    def changes(self) -> tuple[FileChange, ...]:
        out: list[FileChange] = []
        for path, reasons in self.whys.items():
            why = "; ".join(reasons)
            if path in self.links:
                target = self.links[path]
                edit = Edit(path, "symlink", target.encode(errors="surrogateescape"), why=why)
                out.append(FileChange(path, None, target, why, edit))
                continue
            before, after = self.original.get(path), self.text[path]
            if before == after:
                continue
            data = after.encode(errors="surrogateescape")
            out.append(FileChange(path, before, after, why, Edit(path, "write", data, self.modes[path], why)))
        return tuple(out)


def plan_files(
    tree: ResolvingTree,
    system: OperatingSystem,
    target: Target,
    devices: Devices,
    filesystems: Sequence[Filesystem],
) -> FilesPlan:
    """The file changes that give the guest at `tree` a login on `target`'s console, its NIC driver, its disk
    names and SELinux labels. `devices` are the names the guest's kernel will see there (the caller picks the
    xenified ones for a 2.6.18-era Xen kernel); `filesystems` are the image's, for UUID=/LABEL= names."""
    draft = Draft(tree)
    disks = disknames.DiskMap(devices.disk_prefix, tuple(filesystems))
    console.plan(draft, system, target, devices)
    nic.plan(draft, devices)
    disks.plan(draft)
    _boot_configs(draft, target, devices, disks)
    selinux.plan(draft, devices)
    return FilesPlan(draft.changes(), tuple(draft.notes))


# --- the kernel command line in the boot loader's configuration ---------------------------------------------------

_GRUB2_LINUX = re.compile(r"^(\s*)(linux|linux16|linuxefi)(\s+)(\S+)(.*)$")
_LEGACY_KERNEL = re.compile(r"^(\s*)(kernel)(\s+)(\S+)(.*)$")
_GRUB2_STANZA = ("menuentry", "submenu", "}")
_DEFAULT_CMDLINE = re.compile(r"^(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)=([\"']?)(.*?)\2\s*$")


def _boot_configs(draft: Draft, target: Target, devices: Devices, disks: disknames.DiskMap) -> None:
    found = False
    for path in GRUB2_CONFIGS:
        found = (
            _kernel_lines(
                draft, path, _GRUB2_LINUX, stanza_starts=_GRUB2_STANZA, target=target, devices=devices, disks=disks
            )
            or found
        )
    seen: set[str] = set()
    for path in GRUB_LEGACY_CONFIGS:
        # menu.lst -> grub.conf: the file is edited once, under its own name, and the link is left as it is.
        real = _real(draft, path)
        if real is not None and real in seen and real != path:
            continue
        if real is not None:
            seen.add(real)
        found = (
            _kernel_lines(
                draft, path, _LEGACY_KERNEL, stanza_starts=("title",), target=target, devices=devices, disks=disks
            )
            or found
        )
    found = _default_grub(draft, target, devices, disks) or found
    if not found:
        draft.note(
            f"no boot loader configuration found (grub.cfg, menu.lst, {DEFAULT_GRUB}): give the kernel "
            f"{console.console_arg(devices)} where it is booted (the guest's definition, or pygrub's entry)"
        )


def _real(draft: Draft, path: str) -> str | None:
    try:
        return draft.tree.realpath(path)
    except Dom0Error:
        return None


def _mode(path: str, text: str) -> int:
    # grub-mkconfig leaves grub.cfg world-readable unless it holds passwords; anaconda makes grub.conf private.
    if path == "/boot/grub/grub.cfg" and "password" not in text:
        return 0o444
    return 0o600


def _kernel_lines(
    draft: Draft,
    path: str,
    pattern: re.Pattern[str],
    *,
    stanza_starts: tuple[str, ...],
    target: Target,
    devices: Devices,
    disks: disknames.DiskMap,
) -> bool:
    text = draft.read(path, MAX_BOOT_CONFIG_READ)
    if text is None:
        return False
    lines = text.splitlines(keepends=True)
    whys: list[str] = []
    for i, line in enumerate(lines):
        m = pattern.match(line.rstrip("\r\n"))
        if not m or m.group(4).rsplit("/", 1)[-1].startswith("xen"):
            continue  # a Xen hypervisor entry (a dom0's, not a guest's) is not a Linux command line
        has_initrd = _stanza_has_initrd(lines, i, stanza_starts)
        args, why = _transform(m.group(5).split(), target, devices, disks, add_console=True, has_initrd=has_initrd)
        if why:
            ending = line[len(line.rstrip("\r\n")) :]
            lines[i] = f"{m.group(1)}{m.group(2)}{m.group(3)}{m.group(4)} {' '.join(args)}".rstrip() + ending
            whys += [w for w in why if w not in whys]
    if whys:
        edited = "".join(lines)
        draft.update(path, edited, "kernel command line: " + ", ".join(whys), _mode(path, edited))
    return True


def _stanza_has_initrd(lines: list[str], at: int, starts: tuple[str, ...]) -> bool:
    for line in lines[at + 1 :]:
        word = line.strip().split(maxsplit=1)[0] if line.strip() else ""
        if word in starts:
            return False
        if word.startswith("initrd"):
            return True
    return False


def _transform(
    args: list[str],
    target: Target,
    devices: Devices,
    disks: disknames.DiskMap,
    *,
    add_console: bool,
    has_initrd: bool,
) -> tuple[list[str], list[str]]:
    args, why = console.console_args(args, target, devices, add=add_console)
    args, disk_why = disks.kernel_args(args, has_initrd=has_initrd)
    return args, why + disk_why


def _default_grub(draft: Draft, target: Target, devices: Devices, disks: disknames.DiskMap) -> bool:
    text = draft.read(DEFAULT_GRUB)
    if text is None:
        return False
    lines = text.splitlines(keepends=True)
    whys: list[str] = []
    has_cmdline = False
    for i, line in enumerate(lines):
        m = _DEFAULT_CMDLINE.match(line.rstrip("\r\n"))
        if not m:
            continue
        main = m.group(1) == "GRUB_CMDLINE_LINUX"
        has_cmdline = has_cmdline or main
        # console= goes in GRUB_CMDLINE_LINUX (every entry, recovery too); _DEFAULT only loses stale ones.
        args, why = _transform(m.group(3).split(), target, devices, disks, add_console=main, has_initrd=True)
        if why:
            quote = m.group(2) or '"'
            lines[i] = f"{m.group(1)}={quote}{' '.join(args)}{quote}" + line[len(line.rstrip("\r\n")) :]
            whys += [w for w in why if w not in whys]
    if not has_cmdline:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(f'GRUB_CMDLINE_LINUX="{console.console_arg(devices)}"\n')
        whys.append(f"{console.console_arg(devices)} added")
    if whys:
        draft.update(DEFAULT_GRUB, "".join(lines), "kernel command line: " + ", ".join(whys))
    return True
