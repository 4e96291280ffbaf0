"""`dom0 image adapt TARGET --for T` and `dom0 image hints TARGET`: a guest fitted to the hypervisor it moves to,
and stubs for the package tools it does not have. The plan is printed first; guest text is shown escaped."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from dom0.cli.session import guests_locked, hypervisor, image_options, print_json
from dom0.cli.table import terminal_safe

if TYPE_CHECKING:
    from dom0.adapt.bootable import KernelVerdict
    from dom0.adapt.plan import AdaptPlan
    from dom0.hypervisor import Hypervisor


@contextlib.contextmanager
def _lazy_hypervisor(args: argparse.Namespace) -> Iterator[Callable[[], Hypervisor]]:
    """A hypervisor connection made only when asked for (an image file needs none), closed at the end."""
    with contextlib.ExitStack() as stack:
        opened: list[Hypervisor] = []

        def get() -> Hypervisor:
            if not opened:
                opened.append(stack.enter_context(hypervisor(args)))
            return opened[0]

        yield get


def _names_a_guest(ref: str, hv: Callable[[], Hypervisor]) -> bool:
    """Whether TARGET is a guest (as resolve_target reads it: a path wins); a name no guest has is left to the
    plan to refuse in its own words."""
    from dom0.errors import Dom0Error

    if "/" in ref or os.path.lexists(ref):
        return False
    try:
        hv().guest(ref)
    except Dom0Error:
        return False
    return True


def _say(lines: list[str]) -> None:
    # tabs in guest files (grub.cfg indents with them) shown as spaces, not escaped: only display changes
    print("\n".join(terminal_safe(line.expandtabs(8)) for line in lines))


def _kernel_line(verdict: KernelVerdict, goal: str) -> str:
    if verdict.bootable:
        # a xenified kernel names the console xvc0 and the NIC driver xennet: say why the plan uses those
        flavour = " (a xenified 2.6.18-era Xen kernel: xvc0, xennet)" if verdict.xenified and goal != "kvm" else ""
        if not verdict.pv_drivers:
            flavour = " (no Xen PV drivers: on QEMU's emulated disk and NIC)"
        return f"kernel {verdict.version}: boots on {goal}{flavour}"
    return f"kernel {verdict.version}: cannot boot on {goal}: {', '.join(verdict.reasons) or 'no reason given'}"


def _state(value: str | None, action: str) -> str:
    """A file's content in a few words, for the one-line summary of a change."""
    if value is None:
        return "absent"
    if action == "symlink":
        return f"a symlink to {value}"
    count = len(value.splitlines())
    return f"{count} line{'' if count == 1 else 's'}"


def _plan_lines(plan: AdaptPlan) -> list[str]:
    root = plan.root
    where = root.location + (f" of {root.disk.name}" if root.disk.name else "")
    lines = [f"adapt {plan.target.description} for {plan.hypervisor}: {root.system.product_name} on {where}"]
    lines += [_kernel_line(v, str(plan.hypervisor)) for v in plan.kernels]
    for change, diff in zip(plan.changes, plan.diffs, strict=True):
        before, after = _state(change.before, "write"), _state(change.after, change.edit.action)
        lines.append(f"{change.path}: {before} -> {after} ({change.why})")
        lines += [f"  {line}" for line in diff]
    lines += [f"note: {note}" for note in plan.notes]
    return lines


def _plan_json(plan: AdaptPlan, applied: bool) -> dict[str, Any]:
    return {
        "target": plan.target.ref,
        "for": str(plan.hypervisor),
        "root": {
            "disk": plan.root.disk.path,
            "location": plan.root.location,
            "filesystem": plan.root.fs_type,
            "product_name": plan.root.system.product_name,
        },
        "kernels": [
            {"version": v.version, "bootable": v.bootable, "xenified": v.xenified, "reasons": list(v.reasons)}
            for v in plan.kernels
        ],
        "changes": [
            {"path": c.path, "action": c.edit.action, "before": c.before, "after": c.after, "why": c.why}
            for c in plan.changes
        ],
        "notes": list(plan.notes),
        "applied": applied,
    }


def cmd_adapt(args: argparse.Namespace) -> int:
    """`dom0 image adapt TARGET --for T [--dry-run] [--json]`: the plan, then the edits (none with --dry-run)."""
    from dom0.adapt.plan import apply_adapt, plan_adapt
    from dom0.adapt.target import Target

    goal = Target(args.hypervisor)
    with _lazy_hypervisor(args) as hv, contextlib.ExitStack() as locked:
        if not args.dry_run and _names_a_guest(args.target, hv):
            # the guest's disks, from the plan's reading of them to the last edit: a start or a clone meanwhile
            # would run on, or copy, half-adapted disks
            locked.enter_context(guests_locked(args, hv(), [args.target], "adapt"))
        plan = plan_adapt(args.target, goal, hv=hv, image_options=image_options(args))
        if not args.json:
            _say(_plan_lines(plan))
        applied = False
        if plan.changes and not args.dry_run:
            applied = apply_adapt(plan).applied
    if args.json:
        print_json(_plan_json(plan, applied))
    elif not plan.changes:
        _say([f"already adapted for {goal}: nothing to change"])
    elif args.dry_run:
        _say(["dry run: nothing written"])
    else:
        count = len(plan.changes)
        _say([f"adapted {args.target} for {goal}: {count} file{'' if count == 1 else 's'} changed"])
    return 0


def cmd_hints(args: argparse.Namespace) -> int:
    """`dom0 image hints TARGET [--remove] [--dry-run] [--json]`: write (or remove) the package-tool stubs."""
    from dom0.adapt.hints import STUB_DIR, plan_hints
    from dom0.adapt.plan import edit_root, located_root, resolve_target, split_edits

    with _lazy_hypervisor(args) as hv, contextlib.ExitStack() as locked:
        if not args.dry_run and _names_a_guest(args.target, hv):
            locked.enter_context(guests_locked(args, hv(), [args.target], "hints"))
        target = resolve_target(args.target, hv=hv, image_options=image_options(args))
        with located_root(target) as (root, tree, _, notes):
            hints = plan_hints(tree, root.system, remove=args.remove)
            groups = split_edits(root, tree.realpath, list(hints.edits))
        applied = False
        if hints.edits and not args.dry_run:
            edit_root(root, groups)
            applied = True
    all_notes = [*target.notes, *notes, *hints.notes]
    if args.json:
        print_json(
            {
                "target": target.ref,
                "root": {"disk": root.disk.path, "location": root.location},
                "product_name": root.system.product_name,
                "family": hints.family,
                "tools": list(hints.tools),
                "remove": args.remove,
                "changes": [{"path": e.path, "action": e.action, "why": e.why} for e in hints.edits],
                "notes": all_notes,
                "applied": applied,
            }
        )
        return 0
    tools = ", ".join(hints.tools) or "unknown tools"
    lines = [f"hints for {target.description}: {root.system.product_name} ({hints.family}: {tools}) on {root.location}"]
    lines += [f"{'write ' if e.action == 'write' else 'remove'} {e.path}: {e.why}" for e in hints.edits]
    lines += [f"note: {note}" for note in all_notes]
    verb = "removed" if args.remove else "wrote"
    count = len(hints.edits)
    if not hints.edits:
        lines.append(f"nothing to {'remove' if args.remove else 'change'} in {STUB_DIR}")
    elif args.dry_run:
        lines.append("dry run: nothing written")
    else:
        lines.append(f"{verb} {count} stub{'' if count == 1 else 's'} in {STUB_DIR}")
    _say(lines)
    return 0
