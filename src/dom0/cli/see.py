"""`dom0 list`: the `xm list` view, explained."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from dom0 import humanize
from dom0.cli.session import hypervisor, print_json
from dom0.cli.table import render
from dom0.errors import Dom0Error
from dom0.model import Guest, GuestDetails
from dom0.observe import jsonview

if TYPE_CHECKING:
    from dom0.hypervisor import Hypervisor
    from dom0.image.survey import Report, Unresolved
    from dom0.image.targets import TargetImage
    from dom0.locks import Holder


def _row(g: Guest) -> list[object]:
    cpu_s = g.cpu_time_ns / 1e9
    return [
        g.name,
        g.id if g.id is not None else "-",
        g.memory_kib // 1024 if g.state.is_active else g.max_memory_kib // 1024,
        g.vcpus,
        g.state.flags,
        f"{cpu_s:.1f}",
        humanize.duration(cpu_s),
        g.state.words.split(":")[0],
    ]


def _long(d: GuestDetails, holder: Holder | None) -> str:
    g = d.guest
    lines = [
        f"{g.name}",
        f"  uuid        {g.uuid}",
        f"  id          {g.id if g.id is not None else '- (not running)'}",
        f"  state       {g.state.flags}  {g.state.words}",
    ]
    if holder is not None:
        command = f" ({holder.command})" if holder.command else ""
        lines.append(f"  lock        {holder.words()}{command}")
    lines += [
        f"  memory      {g.memory_kib // 1024} MiB now, {g.max_memory_kib // 1024} MiB maximum",
        f"  vcpus       {g.vcpus}",
        f"  cpu time    {g.cpu_time_ns / 1e9:.1f} s ({humanize.duration(g.cpu_time_ns / 1e9)})",
        f"  type        {d.hypervisor_type} {d.os_type}",
        f"  persistent  {'yes' if g.persistent else 'no (transient: gone once it stops)'}",
        f"  autostart   {'yes' if d.autostart else 'no'}",
        f"  on events   poweroff={d.on_poweroff or '-'} reboot={d.on_reboot or '-'} crash={d.on_crash or '-'}",
    ]
    boot = d.boot
    if boot.kind == "kernel":
        lines.append(f"  boot        kernel {boot.kernel}")
        if boot.initrd:
            lines.append(f"              initrd {boot.initrd}")
        if boot.cmdline:
            lines.append(f"              cmdline {boot.cmdline}")
    elif boot.kind == "bootloader":
        lines.append(f"  boot        bootloader {boot.bootloader} {boot.cmdline}".rstrip())
    else:
        lines.append(f"  boot        firmware, from {', '.join(boot.devices) or 'its default device'}")
    for disk in d.disks:
        number = jsonview.vbd_number(disk.target)
        vbd = f" (VBD {number})" if number is not None else ""
        fmt = f" {disk.format}" if disk.format else ""
        ro = " read-only" if disk.readonly else ""
        lines.append(
            f"  disk        {disk.target}{vbd} {disk.device}{ro}: {disk.source_kind} {disk.source or '(empty)'}{fmt}"
        )
    for nic in d.nics:
        where = f"{nic.kind} {nic.source}".strip()
        model = f" model {nic.model}" if nic.model else ""
        target = f" host side {nic.target}" if nic.target else ""
        lines.append(f"  nic         {nic.mac} on {where}{model}{target}")
    if d.console_log:
        lines.append(f"  console log {d.console_log}")
    return "\n".join(lines)


def _os_line(r: Report) -> str:
    row = r.row
    if row is None:
        return f"  os          not read: {r.error}"
    words = [row.os or "-", row.packages or "", f"kernel {row.kernel}" if row.kernel else ""]
    if row.boots and row.boots != row.kernel:
        words.append(f"boots {row.boots}")
    words.append(f"hostname {row.hostname}" if row.hostname else "")
    return "  os          " + ", ".join(w for w in words if w)


def _os_json(r: Report) -> dict[str, object]:
    # the same keys whether or not the disks were read, so scripts need not test for them
    facts = r.row.to_json() if r.row is not None else dict.fromkeys(_ROW_KEYS)
    return {**facts, "error": r.error, "notes": list(r.notes)}


_ROW_KEYS = ("os", "distro", "version", "packages", "kernel", "boots", "console", "hostname", "hostname_matches")


def _surveyed(hv: Hypervisor, guests: list[Guest]) -> list[TargetImage | Unresolved]:
    """Each guest's disks, looked up while the connection is open; read by survey once it is closed."""
    from dom0.image.survey import Unresolved
    from dom0.image.targets import guest_target

    items: list[TargetImage | Unresolved] = []
    for g in guests:
        try:
            items.append(guest_target(hv, g, g.name, live=True))
        except Dom0Error as exc:
            items.append(Unresolved(g.name, exc.message, g.name, str(g.state), exc.hint))
    return items


def _holders(guests: list[Guest]) -> list[Holder | None]:
    """Which dom0 run is changing each guest now: read from the kernel's list of locks, never waited for."""
    from dom0.locks import LockKey, holder_of

    return [holder_of(LockKey(g.uuid, g.name)) for g in guests]


def cmd_list(args: argparse.Namespace) -> int:
    """`dom0 list [--all] [--long] [--json] [GUEST...]`; --long adds each guest's OS, read from its disks."""
    with hypervisor(args) as hv:
        guests = [hv.guest(ref) for ref in args.guests] if args.guests else hv.guests(include_inactive=args.all)
        if args.long:
            details = [hv.details(g.uuid) for g in guests]
            items = _surveyed(hv, guests)
    if args.long:
        from dom0.image.survey import survey

        # One survey for every listed guest, after the connection is closed: its readers fork.
        systems = survey(items)
        # read after the survey: a run that began meanwhile is named, one that ended is not
        holders = _holders(guests)
        rows = list(zip(details, systems, holders, strict=True))
        if args.json:
            print_json([{**jsonview.details(d), "os": _os_json(r), "lock": h and h.to_json()} for d, r, h in rows])
        else:
            print("\n\n".join(f"{_long(d, h)}\n{_os_line(r)}" for d, r, h in rows))
        return 0
    if args.json:
        print_json([jsonview.guest(g) for g in guests])
        return 0
    headers = ["Name", "ID", "Mem(MiB)", "VCPUs", "State", "Time(s)", "CPU time", "Meaning"]
    print(render(headers, [_row(g) for g in guests], right=(1, 2, 3, 5)))
    if not guests:
        print("(no guests running; `dom0 list --all` also shows the defined ones)" if not args.all else "(no guests)")
    return 0
