"""`dom0 image adapt`: what a guest needs to boot on another hypervisor, planned from its files, then written.

The target is an image file (raw, qcow2), a block device (an LV) or a shut-off guest (each of its disks in turn,
until one holds an operating system). The plan only reads; apply edits the guest's filesystem from userspace
(debugfs on ext2/3/4, a qcow2 seen as raw bytes through a FUSE export), never through a host mount, and every
edit is read back. A guest no installed kernel of which can boot on the target is refused before any edit: a
guest adapted to the letter that then cannot boot is worse than one left alone.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dom0.adapt.target import Devices, Target, devices
from dom0.errors import Dom0Error
from dom0.guest import identity
from dom0.image.layout import Filesystem, Layout, scan
from dom0.image.osinspect import OperatingSystem, find_roots, match_filesystem
from dom0.image.source import open_image
from dom0.image.tree import ResolvingTree

# The writing side (storage's raw views, the guest editors, difflib for the plan's diffs) is imported where it is
# used: `image inspect` asks only for readiness, and those imports were a third of its start-up.
if TYPE_CHECKING:
    from dom0.cli.session import ImageOptions
    from dom0.hypervisor import Hypervisor
    from dom0.image.targets import DiskRef, TargetImage, resolve_target

__all__ = [
    "AdaptPlan",
    "AdaptResult",
    "DiskRef",
    "Readiness",
    "Root",
    "TargetImage",
    "apply_adapt",
    "edit_root",
    "located_root",
    "plan_adapt",
    "readiness",
    "resolve_target",
    "split_edits",
]


def __getattr__(name: str) -> Any:
    """What TARGET names lives in dom0.image.targets; its names are still found here, loaded when first asked for
    (`image inspect` of a path asks only for readiness)."""
    if name in ("DiskRef", "TargetImage", "resolve_target"):
        from dom0.image import targets

        return getattr(targets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Diff lines shown per file in a plan: a grub.cfg can be long, and the plan is read by a person.
MAX_DIFF_LINES = 40


@dataclass(frozen=True, slots=True)
class Root:
    """The operating system's root filesystem: which disk, where in it, and what was found there."""

    disk: DiskRef
    location: str
    offset: int
    fs_type: str
    system: OperatingSystem
    # Other filesystems the guest mounts (its /boot), as (mountpoint, location, offset, type): edits below a
    # mountpoint are made in that filesystem.
    mounts: tuple[tuple[str, str, int, str], ...] = ()


@dataclass(frozen=True)
class AdaptPlan:
    """Everything `adapt` will do, read from the guest without changing it."""

    target: TargetImage
    hypervisor: Target
    root: Root
    kernels: tuple[Any, ...]  # KernelVerdict, newest first
    changes: tuple[Any, ...]  # FileChange, each with its identity.Edit
    diffs: tuple[tuple[str, ...], ...]  # per change, its removed (-) and added (+) lines
    notes: tuple[str, ...]

    @property
    def edits(self) -> list[identity.Edit]:
        """The edits of every change, in order."""
        return [c.edit for c in self.changes]


@dataclass(frozen=True, slots=True)
class AdaptResult:
    """What apply did: the plan, and whether anything was written."""

    plan: AdaptPlan
    applied: bool

    @property
    def changed(self) -> int:
        """How many files were changed."""
        return len(self.plan.changes) if self.applied else 0


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether an operating system boots as it is on one target, and, if not, what it needs (short phrases)."""

    ready: bool
    needs: tuple[str, ...]


def _mounts_of(tree: ResolvingTree, system: OperatingSystem, layout: Layout) -> tuple[tuple[str, str, int, str], ...]:
    out = []
    for where in tree.mountpoints:
        entry = next((e for e in system.fstab if e.mountpoint.rstrip("/") == where.rstrip("/")), None)
        fs = match_filesystem(entry, layout.filesystems) if entry is not None else None
        if fs is not None:
            out.append((where, fs.location, fs.offset, fs.type))
    return tuple(out)


@contextlib.contextmanager
def located_root(
    target: TargetImage,
) -> Iterator[tuple[Root, ResolvingTree, tuple[Filesystem, ...], list[str]]]:
    """The first operating system on the target's disks, its tree (open for the `with` block), the image's
    filesystems and notes; Dom0Error when there is none, or when dom0 cannot edit where it lies."""
    notes: list[str] = []
    for disk in target.disks:
        with open_image(disk.path, format=disk.format, backing_dirs=target.backing_dirs) as source:
            layout = scan(source)
            roots = find_roots(source, layout)
            if not roots:
                continue
            fs, tree, system = roots[0]
            where = f"{fs.location} of {disk.name or disk.path}"
            notes.extend(f"also found {s.product_name} on {f.location}: not adapted" for f, _, s in roots[1:])
            if "logical volume" in fs.location:
                raise Dom0Error(
                    f"the root filesystem is on {where}: dom0 cannot edit a filesystem inside an LV inside an image",
                    "activate the volume group on the host and adapt the LV itself (dom0 image adapt /dev/VG/LV)",
                )
            from dom0.guest.editors import EXT_TYPES

            if fs.type not in EXT_TYPES:
                raise Dom0Error(
                    f"the root filesystem ({fs.type}, {where}) cannot be edited from userspace: dom0 edits ext2/3/4",
                    "dom0 never mounts a guest's filesystem; make these changes inside the guest, or with "
                    "virt-customize",
                )
            root = Root(disk, fs.location, fs.offset, fs.type, system, _mounts_of(tree, system, layout))
            yield root, tree, tuple(layout.filesystems), notes
            return
    raise Dom0Error(
        f"no operating system found on {target.description}",
        "dom0 image inspect shows what the image holds",
    )


# --- planning ----------------------------------------------------------------------------------------------------


def _diff(tree: ResolvingTree, change: Any) -> tuple[str, ...]:
    """The lines a change removes (-) and adds (+); a symlink made is shown as its target."""
    import difflib

    edit = change.edit
    if isinstance(change.before, str):
        before = change.before.splitlines()
    else:
        before = []
        link = tree.readlink(edit.path)
        if link is not None:
            before = [f"(a symlink to {link})"]
    if edit.action == "symlink":
        after = [f"(a symlink to {edit.data.decode(errors='replace')})"]
    elif edit.action == "write":
        after = edit.data.decode(errors="replace").splitlines()
    else:
        after = []
    lines = [
        line
        for line in difflib.unified_diff(before, after, lineterm="", n=0)
        if not line.startswith(("---", "+++", "@@"))
    ]
    if len(lines) > MAX_DIFF_LINES:
        lines = [*lines[:MAX_DIFF_LINES], f"  ... {len(lines) - MAX_DIFF_LINES} more lines"]
    return tuple(lines)


def _reasons(verdicts: tuple[Any, ...]) -> str:
    return "; ".join(f"{v.version}: {', '.join(v.reasons) or 'cannot boot'}" for v in verdicts) or "no kernel in /boot"


def plan_adapt(
    target_ref: str,
    hypervisor_target: Target | str,
    *,
    hv: Callable[[], Hypervisor],
    image_options: ImageOptions | None = None,
) -> AdaptPlan:
    """Read TARGET and plan its adaptation to `hypervisor_target`; nothing is written.

    Dom0Error when no installed kernel can boot there (with the package to install), when no OS is found, or when
    the root filesystem cannot be edited from userspace.
    """
    goal = Target(hypervisor_target)
    from dom0.image.targets import resolve_target

    target = resolve_target(target_ref, hv=hv, image_options=image_options)
    from dom0.adapt.bootable import judge
    from dom0.adapt.files import plan_files

    with located_root(target) as (root, tree, filesystems, notes):
        check = judge(tree, root.system, goal)
        verdicts = tuple(check.verdicts)
        if check.best is None:
            raise Dom0Error(
                f"no kernel installed in {root.system.product_name} can boot on {goal}: {_reasons(verdicts)}",
                f"{check.install_hint}, then adapt it again"
                if check.install_hint
                else f"install a kernel that supports {goal} in the guest first, then adapt it",
            )
        wanted = devices(goal, xenified=check.best.xenified, emulated=not check.best.pv_drivers)
        changes, file_notes = plan_files(tree, root.system, goal, wanted, filesystems)
        diffs = tuple(_diff(tree, c) for c in changes)
    all_notes = (*target.notes, *notes, *file_notes)
    return AdaptPlan(target, goal, root, verdicts, changes, diffs, tuple(all_notes))


def readiness(
    tree: ResolvingTree, system: OperatingSystem, filesystems: tuple[Filesystem, ...]
) -> dict[str, Readiness]:
    """For `image inspect`: per target, whether the OS boots there as it is, and what it would need; read only.

    The kernel check reads each initrd; the verdicts are kept per kernel flavour rather than per target where the
    checker allows, so the four targets do not read every initrd four times (judge caches by tree and path).
    """
    from dom0.adapt.bootable import judge
    from dom0.adapt.files import plan_files

    out: dict[str, Readiness] = {}
    for goal in Target:
        try:
            check = judge(tree, system, goal)
        except Dom0Error as exc:
            out[str(goal)] = Readiness(False, (f"kernel not checked: {exc.message}",))
            continue
        needs: list[str] = []
        if check.best is None:
            package = re.match(r"install (\S+)", check.install_hint or "")
            needs.append(f"a kernel for {goal}" + (f" (install {package.group(1)})" if package else ""))
            wanted = devices(goal)
        else:
            wanted = devices(goal, xenified=check.best.xenified, emulated=not check.best.pv_drivers)
        try:
            changes, _ = plan_files(tree, system, goal, wanted, filesystems)
        except Dom0Error as exc:
            needs.append(f"files not checked: {exc.message}")
            changes = ()
        for change in changes:
            phrase = _need(change, system, wanted)
            if phrase not in needs:
                needs.append(phrase)
        out[str(goal)] = Readiness(not needs, tuple(needs))
    return out


_OLD_DISK = re.compile(r"\b((?:[hsv]|xv)d[a-z]+)\d*\s*->")


def _need(change: Any, system: OperatingSystem, wanted: Devices) -> str:
    """What one file change fixes, in a few words for `image inspect` ("console tty1 only", "tg3 driver")."""
    topic, _, detail = str(change.why).partition(":")
    if topic == "console":
        gettys = [t for t in system.console.gettys if t != wanted.console]
        return f"console {', '.join(gettys)} only" if gettys else f"no login on {wanted.console}"
    if topic == "network driver":
        old = sorted({d for d in system.network.driver_aliases.values() if d != wanted.nic_driver})
        return ", ".join(f"{d} driver" for d in old) or "network driver"
    if topic == "disk names":
        names = sorted(set(_OLD_DISK.findall(detail)))
        return f"{', '.join(names)} disk names" if names else "disk names"
    if topic.startswith("SELinux"):
        return "SELinux labels"
    return topic if detail else str(change.why)


# --- applying ----------------------------------------------------------------------------------------------------


def split_edits(
    root: Root, realpath: Callable[[str], str | None], edits: list[identity.Edit]
) -> dict[str, list[identity.Edit]]:
    """The edits per mountpoint ("/" or "/boot"), each path made relative to its own filesystem."""
    by_mount: dict[str, list[identity.Edit]] = {}
    mountpoints = sorted((m[0] for m in root.mounts), key=len, reverse=True)
    for edit in edits:
        parent, _, name = edit.path.rpartition("/")
        real = realpath(parent or "/") or (parent or "/")
        full = f"{real.rstrip('/')}/{name}"
        where = next((m for m in mountpoints if full.startswith(m.rstrip("/") + "/")), "/")
        inner = full if where == "/" else full[len(where.rstrip("/")) :]
        by_mount.setdefault(where, []).append(identity.Edit(inner, edit.action, edit.data, edit.mode, edit.why))
    return by_mount


def edit_root(root: Root, groups: dict[str, list[identity.Edit]]) -> None:
    """Apply the edits of each filesystem (from split_edits) at once, each read back; a qcow2 disk is seen as raw bytes
    through a FUSE export for the while, as clone does."""
    from dom0 import storage
    from dom0.guest.editors import open_editor

    places = {"/": (root.offset, root.fs_type), **{m[0]: (m[2], m[3]) for m in root.mounts}}
    disk = root.disk
    with contextlib.ExitStack() as stack:
        try:
            raw = stack.enter_context(storage.raw_view(Path(disk.path), disk.format))
        except Dom0Error as exc:
            raise Dom0Error(
                f"cannot open {disk.path} for editing: {exc.message}",
                f"convert it to raw first (qemu-img convert -O raw {disk.path} NEW.raw) and adapt that",
            ) from exc
        # every editor opened (superblocks checked, journals replayed) before the first one writes
        editors = [(open_editor(raw, *places[where]), group) for where, group in groups.items() if group]
        for editor, group in editors:
            identity.apply_edits(editor, group)


def apply_adapt(plan: AdaptPlan) -> AdaptResult:
    """Write the plan's edits into the guest; nothing when the plan has none."""
    if not plan.changes:
        return AdaptResult(plan, False)
    with located_root(plan.target) as (root, tree, _, _):
        if (root.disk, root.location) != (plan.root.disk, plan.root.location):
            raise Dom0Error(f"{plan.target.description} changed since it was planned", "run dom0 image adapt again")
        groups = split_edits(root, tree.realpath, plan.edits)
    edit_root(root, groups)
    return AdaptResult(plan, True)
