"""`dom0 list`: the `xm list` view, explained."""

from __future__ import annotations

import argparse

from dom0 import humanize
from dom0.cli.session import hypervisor, print_json
from dom0.cli.table import render
from dom0.model import Guest, GuestDetails
from dom0.observe import jsonview


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


def _long(d: GuestDetails) -> str:
    g = d.guest
    lines = [
        f"{g.name}",
        f"  uuid        {g.uuid}",
        f"  id          {g.id if g.id is not None else '- (not running)'}",
        f"  state       {g.state.flags}  {g.state.words}",
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


def cmd_list(args: argparse.Namespace) -> int:
    """`dom0 list [--all] [--long] [--json] [GUEST...]`."""
    with hypervisor(args) as hv:
        guests = [hv.guest(ref) for ref in args.guests] if args.guests else hv.guests(include_inactive=args.all)
        if args.long:
            details = [hv.details(g.uuid) for g in guests]
            if args.json:
                print_json([jsonview.details(d) for d in details])
            else:
                print("\n\n".join(_long(d) for d in details))
            return 0
    if args.json:
        print_json([jsonview.guest(g) for g in guests])
        return 0
    headers = ["Name", "ID", "Mem(MiB)", "VCPUs", "State", "Time(s)", "CPU time", "Meaning"]
    print(render(headers, [_row(g) for g in guests], right=(1, 2, 3, 5)))
    if not guests:
        print("(no guests running; `dom0 list --all` also shows the defined ones)" if not args.all else "(no guests)")
    return 0
