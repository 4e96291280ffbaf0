"""`dom0 image inspect | extract | wrap`: disk images read as bytes, no mounts, no helper VM, no root for files."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dom0 import humanize
from dom0.cli.progress import board
from dom0.cli.session import image_options, print_json
from dom0.cli.table import terminal_safe
from dom0.image.layout import Filesystem, Layout, LogicalVolume, Partition

if TYPE_CHECKING:
    from dom0.hypervisor import Hypervisor
    from dom0.image.extract import Plan
    from dom0.image.osinspect import OperatingSystem
    from dom0.image.packages import Applications
    from dom0.image.survey import DiskReport, Report, Unresolved
    from dom0.image.targets import TargetImage
    from dom0.model import Progress

# Below this a copy takes about a second: a progress bar would only flicker.
PROGRESS_MIN = 64 * 1024 * 1024


def _fs_json(fs: Filesystem) -> dict[str, Any]:
    return {
        "type": fs.type,
        "uuid": fs.uuid,
        "label": fs.label,
        "version": fs.version,
        "location": fs.location,
        "offset": fs.offset,
        "size_bytes": fs.size,
    }


def _partition_json(p: Partition) -> dict[str, Any]:
    fs = p.filesystem
    return {
        "number": p.number,
        "start_sector": p.start_sector,
        "size_bytes": p.size_bytes,
        "type": p.type,
        "bootable": p.bootable,
        "kind": p.kind,
        "name": p.name,
        "filesystem": fs.type if fs else None,
        "uuid": fs.uuid if fs else None,
        "label": fs.label if fs else None,
        "note": p.note,
    }


def _lv_json(lv: LogicalVolume) -> dict[str, Any]:
    fs = lv.filesystem
    return {
        "name": lv.name,
        "vg": lv.vg,
        "lv_uuid": lv.uuid,
        "size_bytes": lv.size_bytes,
        "filesystem": fs.type if fs else None,
        "uuid": fs.uuid if fs else None,
        "label": fs.label if fs else None,
        "segments": [{"lv_offset": a, "size_bytes": b, "image_offset": c} for a, b, c in lv.segments],
        "note": lv.note,
    }


def layout_json(path: str, kind: str, layout: Layout) -> dict[str, Any]:
    """An image's layout as `image inspect --json` shows it (operating_systems is added by the caller)."""
    return {
        "path": path,
        "format": kind,
        "size_bytes": layout.size,
        "partition_table": layout.partition_table,
        "sector_size": layout.sector_size,
        "partitions": [_partition_json(p) for p in layout.partitions],
        "filesystems": [_fs_json(fs) for fs in layout.filesystems],
        "lvm": [
            {"name": vg.name, "uuid": vg.uuid, "pvs": list(vg.pvs), "lvs": [_lv_json(lv) for lv in vg.lvs]}
            for vg in layout.lvm
        ],
        "notes": list(layout.notes),
    }


def _fs_words(fs: Filesystem | None) -> str:
    if fs is None:
        return "-"
    kind = f"{fs.type} ({fs.version})" if fs.type == "vfat" and fs.version else fs.type
    label = f' "{fs.label}"' if fs.label else ""
    return f"{kind}{label} {fs.uuid}".rstrip()


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def layout_text(path: str, kind: str, layout: Layout) -> list[str]:
    """The human summary of an image's layout; `kind` is what the image is ("raw image", "qcow2 image", ...)."""
    table = {"mbr": "MBR partition table", "gpt": "GPT partition table"}.get(
        layout.partition_table, "no partition table"
    )
    lines = [f"{path}: {humanize.size(layout.size)} {kind}, {table}"]
    if layout.partition_table == "none":
        whole = [fs for fs in layout.filesystems if fs.location == "whole disk"]
        lines.append(
            f"  whole disk  {_fs_words(whole[0])}" if whole else "  no partition table and no filesystem found"
        )
    rows = []
    for p in layout.partitions:
        extra = [w for w in ("(bootable)" if p.bootable else "", f"({p.name})" if p.name else "", p.note) if w]
        rows.append(
            [
                f"  {p.number}",
                f"start {p.start_sector}",
                humanize.size(p.size_bytes),
                p.type,
                _fs_words(p.filesystem) if p.kind != "extended" else "(holds the logical partitions)",
                " ".join(extra),
            ]
        )
    if rows:
        lines.extend(_columns(rows))
    for vg in layout.lvm:
        lines.append(f"  LVM volume group {vg.name} on {', '.join(vg.pvs)}:")
        lv_rows = [[f"    {lv.name}", humanize.size(lv.size_bytes), _fs_words(lv.filesystem), lv.note] for lv in vg.lvs]
        if lv_rows:
            lines.extend(_columns(lv_rows))
    lines.extend(f"  note: {n}" for n in layout.notes)
    return lines


def _os_text(system: Any) -> list[str]:
    version = f" {system.version}" if system.version else ""
    hint, name = system.package_hint, system.product_name
    if hint.startswith("this is ") and ": " in hint:  # "this is Fedora Core 5: use ...": the short name leads
        name, hint = hint[len("this is ") :].split(": ", 1)
    # Debian's os-release says 12 where /etc/debian_version says 12.15: the point release names it.
    point = system.point_release
    if point and system.version and name.endswith(f" {system.version}") and point.startswith(f"{system.version}."):
        name = name[: -len(system.version)] + point
    # libosinfo's id (what virt-install --os-variant takes) and the architecture, as virt-inspector names them.
    ident = ", ".join(x for x in (system.osinfo or f"{system.distro}{version}", system.arch) if x)
    kinds = ", ".join(x for x in (system.package_format, system.package_management) if x)
    packages = f", {kinds}: {hint}" if kinds else f", {hint}" if hint else ""
    lines = [f"  operating system on {system.root}: {name} ({ident}){packages}"]
    if system.product_name != name:
        lines.append(f"    release {system.product_name}")
    if system.hostname:
        lines.append(f"    hostname {system.hostname}")
    for where, what in system.mountpoints.items():
        lines.append(f"    {where} is {what}")
    for k in system.kernels:
        lines.append(f"    kernel {k.version}: {k.kernel}" + (f", initrd {k.initrd}" if k.initrd else ""))
    lines.extend(f"    {note}" for note in (*system.console.notes, *system.network.notes, *system.notes))
    return lines


def _readiness(tree: Any, system: Any, filesystems: tuple[Filesystem, ...]) -> dict[str, Any]:
    """Per target (xen-pv, ..., kvm), what `dom0 image adapt` would change: read only, nothing written."""
    from dom0.adapt.plan import readiness

    return readiness(tree, system, filesystems)


def _ready_text(ready: dict[str, Any]) -> list[str]:
    return [
        f"    ready for {goal}: " + ("yes" if r.ready else "no: " + ", ".join(r.needs)) for goal, r in ready.items()
    ]


def _os_json(system: Any, ready: dict[str, Any]) -> dict[str, Any]:
    return {
        **system.to_json(),
        "adapt": {goal: {"ready": r.ready, "needs": list(r.needs)} for goal, r in ready.items()},
    }


def _applications(args: argparse.Namespace, found: list[tuple[Any, Any]]) -> list[Any]:
    """With --applications, each (tree, system)'s installed packages (read while the image is open); else Nones."""
    if not getattr(args, "applications", False):
        return [None for _ in found]
    from dom0.image.packages import read_applications

    return [read_applications(tree, system) for tree, system in found]


def _apps_text(apps: Any) -> list[str]:
    """The package count ("    147 packages (dpkg)") and a line per package; nothing without --applications."""
    if apps is None:
        return []
    if apps.database is None:
        lines = ["    no package database found (dpkg, rpm, apk or pacman)"]
    else:
        lines = [f"    {len(apps.apps)} packages ({apps.database})"]
        rows = [
            [f"      {a.name}", f"{a.epoch}:" * bool(a.epoch) + a.version + f"-{a.release}" * bool(a.release),
             a.arch or "-", a.summary]
            for a in apps.apps
        ]  # fmt: skip
        if rows:
            lines.extend(_columns(rows))
    lines.extend(f"    packages: {note}" for note in apps.notes)
    return lines


def _add_applications(doc: dict[str, Any], apps: list[Any]) -> None:
    """--json --applications: each operating system's "applications" document."""
    from dom0.image.packages import applications_json

    for entry, found in zip(doc["operating_systems"], apps, strict=True):
        if found is not None:
            entry["applications"] = applications_json(found)


def cmd_inspect(args: argparse.Namespace) -> int:
    """`dom0 image inspect TARGET...`: partition table, partitions, filesystems, LVM and operating systems; a guest
    or several targets go through the survey (cmd_survey)."""
    if args.diff:
        return cmd_diff(args)
    refs = list(args.targets)
    if args.all or len(refs) != 1 or not (Path(refs[0]).exists() or Path(refs[0]).is_symlink() or "/" in refs[0]):
        if getattr(args, "applications", False):
            from dom0.errors import UsageError

            raise UsageError(
                "--applications lists the packages of one image or directory at a time",
                "give one disk image, device or directory (dom0 list --long shows a guest's disk paths)",
            )
        return cmd_survey(args)
    path = Path(refs[0])
    if path.is_dir() and args.image_format is None:
        from dom0.image.osinspect import inspect_tree
        from dom0.image.tree import DirectoryTree

        tree = DirectoryTree(path)
        system = inspect_tree(tree)
        systems = [system] if system is not None else []
        ready = [_readiness(tree, s, ()) for s in systems]
        apps = _applications(args, [(tree, s) for s in systems])
        if args.json:
            empty = Layout("none", 512, (), (), (), 0)
            doc = layout_json(str(path), "directory", empty)
            doc["size_bytes"] = None
            doc["operating_systems"] = [_os_json(s, r) for s, r in zip(systems, ready, strict=True)]
            _add_applications(doc, apps)
            print_json(doc)
            return 0
        print(f"{path}: directory (a mounted or chroot tree)")
        for s, r, a in zip(systems, ready, apps, strict=True):
            print("\n".join(terminal_safe(line) for line in [*_os_text(s), *_ready_text(r), *_apps_text(a)]))
        if not systems:
            print("  no operating system found (no /etc with release files)")
        return 0
    from dom0.image.layout import scan
    from dom0.image.osinspect import find_roots
    from dom0.image.source import open_image

    with open_image(path, **image_options(args)) as source:
        layout = scan(source)
        roots = find_roots(source, layout)
        systems = [s for _, _, s in roots]
        ready = [_readiness(t, s, tuple(layout.filesystems)) for _, t, s in roots]
        apps = _applications(args, [(t, s) for _, t, s in roots])
        if args.json:
            doc = layout_json(str(path), source.kind, layout)
            doc["operating_systems"] = [_os_json(s, r) for s, r in zip(systems, ready, strict=True)]
            _add_applications(doc, apps)
            print_json(doc)
            return 0
        lines = layout_text(str(path), source.kind, layout)
    for s, r, a in zip(systems, ready, apps, strict=True):
        lines.extend([*_os_text(s), *_ready_text(r), *_apps_text(a)])
    # Labels, names and release text come from the image: shown with their control characters escaped.
    print("\n".join(terminal_safe(line) for line in lines))
    return 0


def _plan_json(plan: Plan, dry_run: bool, written: int | None) -> dict[str, Any]:
    return {
        "action": plan.action,
        "dry_run": dry_run,
        "source": plan.source,
        "what": plan.what,
        "source_ranges": [{"offset": o, "size_bytes": n} for o, n in plan.ranges],
        "size_bytes": plan.size,
        "target": plan.target,
        "target_offset": plan.target_offset,
        "target_size_bytes": plan.target_size,
        "table": plan.table or None,
        "start_sector": plan.start_sector if plan.table else None,
        "filesystem": _fs_json(plan.filesystem),
        "written_bytes": written,
        "verified": written is not None,
    }


def _ranges_text(plan: Plan) -> str:
    return ", ".join(f"bytes {o}-{o + n - 1}" for o, n in plan.ranges)


@contextmanager
def _progress(total: int, label: str) -> Iterator[Progress]:
    """A progress bar on stderr for a copy large enough to take a while, when stderr is a terminal."""
    with board(total >= PROGRESS_MIN) as bars:
        yield bars.bar(label, total)


def cmd_extract(args: argparse.Namespace) -> int:
    """`dom0 image extract IMAGE (--partition N | --lv VG/LV) -o OUT`: one filesystem as a whole-disk image."""
    from dom0.image.extract import extract, plan_extract
    from dom0.image.layout import scan
    from dom0.image.source import open_image

    out = Path(args.output)
    with open_image(args.image, **image_options(args)) as source:
        layout = scan(source)
        plan, data = plan_extract(source, layout, out, partition=args.partition, lv=args.lv)
        fs = _fs_words(plan.filesystem)
        if args.dry_run:
            if args.json:
                print_json(_plan_json(plan, True, None))
            else:
                print(f"would copy {plan.what} ({fs}) of {args.image}, {_ranges_text(plan)},")
                print(f"  to {out}: a {humanize.size(plan.size)} whole-disk image ({plan.size} bytes), sparse")
            return 0
        with _progress(plan.size, f"extracting {plan.what}") as progress:
            written = extract(plan, data, progress)
    if args.json:
        print_json(_plan_json(plan, False, written))
    else:
        print(
            f"wrote {plan.what} ({fs}) of {args.image} to {out}: {humanize.size(plan.size)}, "
            f"{humanize.size(written)} of data (the rest left sparse); verified"
        )
    return 0


def cmd_wrap(args: argparse.Namespace) -> int:
    """`dom0 image wrap FS -o DISK`: a whole-disk filesystem put in partition 1 of a new MBR or GPT disk."""
    from dom0.image.extract import plan_wrap, wrap
    from dom0.image.source import open_image

    out = Path(args.output)
    with open_image(args.filesystem, **image_options(args)) as source:
        plan = plan_wrap(source, out, table=args.table, start_sector=args.start_sector)
        fs = _fs_words(plan.filesystem)
        if args.dry_run:
            if args.json:
                print_json(_plan_json(plan, True, None))
            else:
                print(f"would write {out}: {humanize.size(plan.target_size)} disk, {plan.table.upper()} table,")
                print(
                    f"  partition 1 from sector {plan.start_sector} holding {args.filesystem} ({fs}, {plan.size} bytes)"
                )
            return 0
        with _progress(plan.size, "wrapping") as progress:
            written = wrap(plan, source, progress)
    if args.json:
        print_json(_plan_json(plan, False, written))
    else:
        print(
            f"wrote {out}: {plan.table.upper()} disk of {humanize.size(plan.target_size)}, partition 1 at sector "
            f"{plan.start_sector} holding {fs}; verified"
        )
    return 0


# --- many targets: every guest's operating system at a glance ------------------------------------------------


# `image inspect TARGET TARGET...` and --all: one table, a row per guest or path.
SURVEY_HEADERS = ["GUEST", "STATE", "OS", "PACKAGES", "KERNEL", "BOOTS", "CONSOLE", "HOSTNAME"]


def disk_json(d: DiskReport) -> dict[str, Any]:
    """One disk as `image inspect PATH --json` shows it, with the guest's name for it and why it was not read."""
    if d.layout is not None:
        doc = layout_json(d.disk.path, d.kind, d.layout)
    else:
        doc = {"path": d.disk.path, "format": d.kind or None}
        if d.kind == "directory":
            doc["size_bytes"] = None
    doc["operating_systems"] = [_os_json(s, r) for s, r in d.systems]
    return {"disk": d.disk.name or None, **doc, "error": d.error}


def report_json(r: Report) -> dict[str, Any]:
    """One target's full report: what it is, the row's facts, each disk's document, the notes."""
    g = r.guest
    return {
        "target": r.target,
        "guest": g.name if g is not None else (r.name if r.state is not None else None),
        "uuid": g.uuid if g is not None else None,
        "state": r.state,
        "hypervisor": g.hypervisor if g is not None else None,
        "boot_kernel": (g.kernel or None) if g is not None else None,
        "error": r.error,
        "row": r.row.to_json() if r.row is not None else None,
        "disks": [disk_json(d) for d in r.disks],
        "notes": list(r.notes),
    }


def _boots_cell(r: Report) -> str:
    """The kernel a direct-boot guest is handed; "its disk" when a loader or firmware boots what the disk holds."""
    if r.guest is None or r.row is None:
        return "-"
    if not r.guest.kernel:
        return "its disk"
    return r.row.boots or "?"


def _hostname_cell(r: Report) -> str:
    row = r.row
    if row is None or not row.hostname:
        return "-"
    return row.hostname + (" (differs)" if row.hostname_matches is False else "")


def table_row(r: Report) -> list[str]:
    """The cells of one target's row in the table; why a row was not read is said below the table."""
    state = r.state or "-"
    row = r.row
    if row is None:
        return [r.name, state, "not read", "-", "-", "-", "-", "-"]
    return [
        r.name,
        state,
        row.os or "-",
        row.packages or "-",
        row.kernel or "-",
        _boots_cell(r),
        row.console or "-",
        _hostname_cell(r),
    ]


def _detail_lines(r: Report) -> list[str]:
    lines: list[str] = []
    for d in r.disks:
        if r.guest is not None:
            lines.append(f"guest {r.guest.name} ({r.state}), disk {d.disk.name}: {d.disk.path}")
        if d.error is not None:
            lines.append(f"  not read: {d.error}")
            continue
        if d.layout is not None:
            lines.extend(layout_text(d.disk.path, d.kind, d.layout))
        else:
            lines.append(f"{d.disk.path}: directory (a mounted or chroot tree)")
        for s, ready in d.systems:
            lines.extend([*_os_text(s), *_ready_text(ready)])
    lines.extend(f"  note: {n}" for n in r.notes)
    return lines


def _surveyed(args: argparse.Namespace) -> list[Report]:
    from dom0.image.survey import survey

    items = _resolved(args, every=args.all)
    # The connection is closed by then, before the workers fork: they get plain data and never touch libvirt.
    return survey(items, jobs=args.jobs)


def _resolved(args: argparse.Namespace, every: bool) -> list[TargetImage | Unresolved]:
    """Each of args.targets (and with `every` each guest) as the disks to read; the hypervisor is asked only for
    what is not a path, and closed before this returns."""
    import contextlib

    from dom0.cli.session import hypervisor
    from dom0.image.survey import resolve_all

    with contextlib.ExitStack() as stack:
        opened: list[Hypervisor] = []

        def hv() -> Hypervisor:
            # Connected only when a target is not a path, or for --all: paths alone need no hypervisor.
            if not opened:
                opened.append(stack.enter_context(hypervisor(args)))
            return opened[0]

        return resolve_all(args.targets, hv=hv, image_options=image_options(args), every=every)


def cmd_survey(args: argparse.Namespace) -> int:
    """A guest's detailed report, or one table for several targets or --all; exit 1 if any could not be read.

    The hypervisor is asked first and closed before the images are read (in parallel, by forked workers)."""
    from dom0.cli.table import render
    from dom0.errors import Dom0Error, UsageError

    if not args.targets and not args.all:
        raise UsageError(
            "say what to inspect: an image, device, directory or guest (several at once), or --all",
            "e.g. dom0 image inspect web.img, or dom0 image inspect --all",
        )
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, not {args.jobs}", "e.g. --jobs 4")
    reports = _surveyed(args)
    if len(reports) == 1 and not args.all:
        report = reports[0]
        if report.error is not None:
            raise Dom0Error(
                report.error if report.guest is None and report.state is None else f"{report.name}: {report.error}",
                report.hint or "dom0 image inspect DISK-PATH shows what a disk holds",
            )
        if args.json:
            print_json(report_json(report))
        else:
            print("\n".join(terminal_safe(line) for line in _detail_lines(report)))
        return 0
    if args.json:
        print_json([report_json(r) for r in reports])
    else:
        print(render(SURVEY_HEADERS, [table_row(r) for r in reports]))
        if not reports:
            print("(no guests)")
        for r in reports:
            said = ([f"not read: {r.error}"] if r.error is not None else []) + list(r.notes)
            for note in said:
                print(terminal_safe(f"{r.name}: {note}"))
    return 1 if any(r.error is not None for r in reports) else 0


# --- two targets: what changed between them ------------------------------------------------------------------


def _first_system(disk: Any, backing_dirs: tuple[str, ...]) -> tuple[OperatingSystem, Applications] | None:
    """The first operating system on one disk (or directory) and its installed packages, read while it is open."""
    from dom0.image.osinspect import find_roots, inspect_tree
    from dom0.image.packages import read_applications

    if disk.format == "directory":
        from dom0.image.tree import DirectoryTree

        directory = DirectoryTree(disk.path)
        system = inspect_tree(directory)
        return None if system is None else (system, read_applications(directory, system))
    from dom0.image.layout import scan
    from dom0.image.source import open_image

    with open_image(disk.path, format=disk.format, backing_dirs=backing_dirs) as source:
        for _, tree, system in find_roots(source, scan(source)):
            return system, read_applications(tree, system)
    return None


def _diff_side(item: TargetImage | Unresolved) -> tuple[OperatingSystem, Applications, list[str]]:
    """One side of --diff: its first operating system, its packages, and notes; Dom0Error when there is none."""
    from dom0.errors import Dom0Error
    from dom0.image.survey import RUNNING_NOTE, Unresolved

    if isinstance(item, Unresolved):
        # A path's reason names the path already; a guest's may not name the guest.
        error = item.error if item.ref in item.error else f"{item.ref}: {item.error}"
        raise Dom0Error(error, item.hint or "dom0 image inspect DISK-PATH shows what it holds")
    notes = list(item.notes)
    if item.guest is not None and item.guest.state not in ("shutoff", "nostate"):
        notes.append(RUNNING_NOTE)
    for disk in item.disks:
        try:
            found = _first_system(disk, item.backing_dirs)
        except Dom0Error as exc:
            raise Dom0Error(f"{item.ref}: {exc.message}", exc.hint) from exc
        # A crafted disk can upset the filesystem readers in ways of their own: one line, as the survey says it.
        except Exception as exc:
            raise Dom0Error(
                f"{item.ref}: could not be read: {type(exc).__name__}: {exc}",
                f"dom0 image inspect {item.ref} shows what dom0 can read of it",
            ) from exc
        if found is not None:
            system, apps = found
            if apps.database is None:
                raise Dom0Error(
                    f"{item.ref}: no package database found in {system.product_name}",
                    "; ".join(apps.notes) or "dpkg, rpm, apk and pacman databases are read",
                )
            return system, apps, [*notes, *apps.notes]
    raise Dom0Error(f"{item.ref}: no operating system found", f"dom0 image inspect {item.ref} shows what it holds")


def _diff_text(refs: list[str], sides: list[Any], diff: Any, facts: Any) -> list[str]:
    from dom0.image.packages.diff import full_version

    (old, old_apps, _), (new, new_apps, _) = sides
    lines = [
        f"{refs[0]} -> {refs[1]}: {len(diff.added)} added, {len(diff.removed)} removed, {len(diff.changed)} changed, "
        f"{diff.unchanged} the same ({old_apps.database} {len(old_apps.apps)} -> {new_apps.database} "
        f"{len(new_apps.apps)} packages)"
    ]
    if facts:
        lines.append("  " + ", ".join(f"{f.fact} {f.old or '-'} -> {f.new or '-'}" for f in facts))
    elif old.product_name == new.product_name:
        lines.append(f"  both {old.product_name}")

    # Debian's multiarch may install one name for two architectures (libc6:amd64 and libc6:i386): where a side
    # has a name twice, that name is shown with its architecture, as dpkg -l shows it.
    twice = {a.name for apps in (old_apps.apps, new_apps.apps) for a in apps if sum(b.name == a.name for b in apps) > 1}

    def named(apps: tuple[Any, ...]) -> list[str]:
        return [f"{a.name}:{a.arch}" if a.name in twice else a.name for a in apps]

    lines.extend(f"+ {n} {full_version(a)}" for n, a in zip(named(diff.added), diff.added, strict=True))
    lines.extend(f"- {n} {full_version(a)}" for n, a in zip(named(diff.removed), diff.removed, strict=True))
    for c in diff.changed:
        old_v, new_v = full_version(c.old), full_version(c.new)
        if c.old.arch != c.new.arch:
            old_v, new_v = f"{old_v} ({c.old.arch})", f"{new_v} ({c.new.arch})"
        lines.append(f"~ {c.name} {old_v} -> {new_v}")
    return lines


def cmd_diff(args: argparse.Namespace) -> int:
    """`dom0 image inspect --diff A B`: packages added, removed and changed from A to B (images, directories or
    guests), and the operating system's facts that differ."""
    from dom0.errors import UsageError
    from dom0.image.packages import applications_json
    from dom0.image.packages.diff import diff_applications, diff_facts

    refs = list(args.targets)
    if args.all or len(refs) != 2:
        raise UsageError(
            f"--diff compares two targets, A and B (got {'--all' if args.all else len(refs)})",
            "e.g. dom0 image inspect --diff web.img web-clone.img (images, directories or guest names)",
        )
    sides = [_diff_side(item) for item in _resolved(args, every=False)]
    (old, old_apps, old_notes), (new, new_apps, new_notes) = sides
    diff = diff_applications(old_apps, new_apps)
    facts = diff_facts(old, new)
    notes = [f"{refs[0]}: {n}" for n in old_notes] + [f"{refs[1]}: {n}" for n in new_notes]
    if old_apps.database != new_apps.database:
        notes.append(
            f"{refs[0]} has a {old_apps.database} database and {refs[1]} {new_apps.database}: no package "
            "is common to both"
        )
    if args.json:
        doc = {
            "old": {"target": refs[0], **_side_json(old), "database": applications_json(old_apps)["database"]},
            "new": {"target": refs[1], **_side_json(new), "database": applications_json(new_apps)["database"]},
            "facts": [{"fact": f.fact, "old": f.old, "new": f.new} for f in facts],
            "packages": diff.to_json(),
            "notes": notes,
        }
        print_json(doc)
        return 0
    lines = _diff_text(refs, sides, diff, facts) + [f"  note: {n}" for n in notes]
    # Names and versions come from the images' own databases: shown with their control characters escaped.
    print("\n".join(terminal_safe(line) for line in lines))
    return 0


def _side_json(system: OperatingSystem) -> dict[str, Any]:
    return {"os": system.product_name, "distro": system.distro, "version": system.version, "root": system.root}
