"""Carrying out a clone plan: define first, copy, reset the identity; on any failure remove what this run made.

Only what this run created is ever removed: each storage call returns a record of what it made, and rollback
walks those records backwards. The source is never stopped by a clone; with --pause it is paused while its
disks are copied and resumed whatever happens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dom0 import storage
from dom0.clone.plan import ClonePlan, DiskStep, Method
from dom0.errors import Dom0Error
from dom0.guest import identity
from dom0.guest.editors import open_editor
from dom0.hypervisor import Hypervisor
from dom0.hypervisor.control import paused_while
from dom0.image.layout import scan
from dom0.image.osinspect import find_roots
from dom0.image.source import open_image
from dom0.model import BarFactory, Guest, no_bar, no_progress


@dataclass
class Undo:
    """What this run created, newest last."""

    volumes: list[storage.Created] = field(default_factory=list)
    defined: str = ""

    def rollback(self, hv: Hypervisor) -> list[str]:
        """Remove it all, newest first; what could not be removed, in words."""
        left: list[str] = []
        for created in reversed(self.volumes):
            try:
                storage.remove_created(created)
            except Dom0Error as exc:
                left.append(f"{created.path} ({exc.message})")
        if self.defined:
            try:
                hv.undefine(self.defined)
            except Dom0Error as exc:
                left.append(f"the definition of {self.defined} ({exc.message})")
        return left


@dataclass(frozen=True, slots=True)
class CloneResult:
    """The clone, and the identity edits made inside it."""

    guest: Guest
    edits: tuple[str, ...]


def apply_clone(hv: Hypervisor, plan: ClonePlan, bar: BarFactory = no_bar) -> CloneResult:
    """Carry out `plan`; on failure, everything it created is removed and the error says so."""
    undo = Undo()
    try:
        guest = hv.define(plan.definition)
        # undone by name: xl:// finds a stopped guest's xl.cfg by its name only (it keeps no UUIDs of its own)
        undo.defined = guest.name
        overlays = [d for d in plan.disks if d.method is Method.OVERLAY]
        if overlays:
            hv.external_snapshot(plan.source.uuid, {d.target: d.source_overlay for d in overlays})
        with paused_while(hv, plan.source.uuid, plan.pause):
            for step in plan.disks:
                clone_disk(step, undo, bar)
        if plan.nvram:
            undo.volumes.append(storage.sparse_copy(Path(plan.nvram[0]), Path(plan.nvram[1]), no_progress))
        edits = reset_identity(plan)
    except BaseException as exc:
        left = undo.rollback(hv)
        what = exc.message if isinstance(exc, Dom0Error) else (str(exc) or type(exc).__name__)
        tail = "; removed everything it had created" if not left else "; could not remove: " + ", ".join(left)
        raise Dom0Error(
            f"cannot clone {plan.source.name} as {plan.name}: {what}{tail}", getattr(exc, "hint", "")
        ) from exc
    # the guest as defined: xl:// lists running guests only, so asking for the new one again would not find it
    return CloneResult(guest, edits)


def clone_disk(step: DiskStep, undo: Undo, bar: BarFactory) -> None:
    """Make the clone's copy of one disk; what it creates is recorded in `undo`."""
    src, dest = Path(step.source), Path(step.dest)
    progress = bar(f"{step.target} ({step.method})", step.size_bytes)
    if step.method is Method.SHARE:
        return
    if step.method is Method.REFLINK:
        undo.volumes.append(storage.reflink_copy(src, dest))
    elif step.method is Method.COPY:
        undo.volumes.append(storage.sparse_copy(src, dest, progress))
    elif step.method is Method.OVERLAY:
        # The source now writes to its own new overlay: its old disk is the frozen base both share.
        undo.volumes.append(storage.overlay(src, dest, step.format))
    elif step.method is Method.SWAP:
        if step.block:
            undo.volumes.append(storage.create_lv(step.vg, step.lv_name, step.size_bytes))
        made = storage.make_swap(dest, step.size_bytes, step.swap_uuid, step.swap_label)
        if made is not None:
            undo.volumes.append(made)
    elif step.method is Method.LV_COPY:
        undo.volumes.append(storage.create_lv(step.vg, step.lv_name, step.size_bytes))
        storage.copy_to_lv(src, dest, step.size_bytes, progress)
    elif step.method is Method.SNAPSHOT_COPY:
        origin = storage.probe(src, step.format)
        snap = storage.snapshot(origin, f"{step.lv_name}-dom0snap", storage.snapshot_size(origin))
        overflow = Dom0Error(
            f"the snapshot of {step.source} filled up during the copy: the copy is not consistent",
            "clone when the guest writes less, or pause it with --pause",
        )
        try:
            undo.volumes.append(storage.create_lv(step.vg, step.lv_name, step.size_bytes))
            try:
                storage.copy_to_lv(snap.path, dest, step.size_bytes, progress)
            except Dom0Error as exc:
                # an overflowing snapshot turns invalid and its reads fail: say why rather than "I/O error"
                if storage.snapshot_overflowed(snap):
                    raise overflow from exc
                raise
            if storage.snapshot_overflowed(snap):
                raise overflow
        finally:
            storage.remove_created(snap)  # exactly the snapshot this run made
    progress(step.size_bytes)


def reset_identity(plan: ClonePlan) -> tuple[str, ...]:
    """Find the clone's root filesystem among its copied disks and reset its identity there; what was edited."""
    for step in plan.copied:
        # closed after reading: an LV held open cannot be removed
        with _raw_view(step) as path, open_image(path, format="raw") as source:
            roots = find_roots(source, scan(source))
            if not roots:
                continue
            fs, _, system = roots[0]
            if "logical volume" in fs.location:
                raise Dom0Error(f"the clone's root is on {fs.location} inside {step.target}: dom0 cannot edit it there")
            editor = open_editor(path, fs.offset, fs.type)
            edits = identity.plan_identity(editor.tree, system, plan.identity)
            identity.apply_edits(editor, edits)  # applies them all at once, and reads them back
            return tuple(str(e) for e in edits)
    return ()


@contextlib.contextmanager
def _raw_view(step: DiskStep) -> Iterator[Path]:
    """The clone's disk as raw bytes: itself, or a qcow2 image seen through a FUSE export (no filesystem mount)."""
    fmt = "qcow2" if step.method is Method.OVERLAY else step.format
    with storage.raw_view(Path(step.dest), fmt or "raw") as view:
        yield view
