"""`dom0 create/start/shutdown/reboot/destroy/pause/resume`."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from dom0.cli.session import attach_console, check_seconds, guests_locked, hypervisor, print_json
from dom0.errors import Dom0Error, GuestNotFound, UsageError
from dom0.filedata import DEFINITION_LIMIT, read_regular
from dom0.hypervisor import Hypervisor
from dom0.hypervisor.control import wait_until_stopped
from dom0.observe import jsonview

_GIVE = "give a libvirt domain XML file (on Xen also an xl.cfg or old xm config)"


def _done(args: argparse.Namespace, hv: Hypervisor, ref: str, message: str) -> int:
    if args.json:
        try:
            result = jsonview.guest(hv.guest(ref))
        except GuestNotFound:  # a transient guest is gone once it stops
            result = None
        print_json({"guest": ref, "action": args.command, "result": result})
    else:
        print(message)
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    """Start a guest from a libvirt XML file; on Xen from an xl.cfg or old xm config too."""
    path = Path(args.file)
    try:
        data = read_regular(path, DEFINITION_LIMIT, _GIVE)
    except Dom0Error as exc:  # a path on the command line that names no usable file is a mistake in the command
        raise UsageError(exc.message, exc.hint) from exc
    try:
        definition = data.decode()
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not text (byte {exc.start} is not UTF-8)", _GIVE) from exc
    with hypervisor(args) as hv:
        guest = hv.create(definition)
        if args.json:
            print_json({"action": "create", "result": jsonview.guest(guest)})
        else:
            print(f"created {guest.name} (ID {guest.id}); it is gone once it stops (not defined)")
    if args.console:
        return attach_console(args, guest.uuid)
    return 0


def cmd_simple(args: argparse.Namespace) -> int:
    """start, reboot, pause, resume: one call each."""
    with hypervisor(args) as hv, contextlib.ExitStack() as locked:
        ref = args.guest
        try:
            name = hv.guest(ref).name  # messages name the guest even when it was given by ID or UUID
        except GuestNotFound:
            if args.command != "start":
                raise
            # xl:// forgets stopped guests: start finds them by their config file instead, and with no UUID
            # known there is nothing to lock by
            name = ref
        else:
            locked.enter_context(guests_locked(args, hv, [ref], args.command))
        if args.command == "start":
            g = hv.start(ref)
            return _done(args, hv, ref, f"started {g.name} (ID {g.id})")
        if args.command == "reboot":
            hv.reboot(ref)
            return _done(args, hv, ref, f"asked {name} to reboot")
        if args.command == "pause":
            hv.pause(ref)
            return _done(args, hv, ref, f"paused {name}: it keeps its memory; `dom0 resume {name}` lets it run")
        hv.resume(ref)
        return _done(args, hv, ref, f"resumed {name}")


def cmd_shutdown(args: argparse.Namespace) -> int:
    """Ask for an orderly shutdown; with --wait, wait for it."""
    check_seconds("--timeout", args.timeout, "120", least=1)
    # held until the guest stopped with --wait: a save or start by another run in between would be raced
    with hypervisor(args) as hv, guests_locked(args, hv, [args.guest], "shutdown"):
        g = hv.guest(args.guest)
        name = g.name
        hv.shutdown(args.guest)
        if not args.wait:
            return _done(args, hv, args.guest, f"asked {name} to shut down (use --wait to wait for it)")
        # polled by UUID: an ID is given up when the guest stops
        took = wait_until_stopped(hv, g.uuid, args.timeout, name=name)
        if args.json:
            print_json({"guest": name, "action": "shutdown", "stopped": True, "seconds": round(took, 1)})
        else:
            print(f"{name} shut down in {took:.1f} s")
    return 0


def cmd_destroy(args: argparse.Namespace) -> int:
    """Stop a guest at once, after asking (or with --yes)."""
    with hypervisor(args) as hv, guests_locked(args, hv, [args.guest], "destroy"):
        g = hv.guest(args.guest)
        if not args.yes:
            if not sys.stdin.isatty():
                raise UsageError(
                    f"refusing to destroy {g.name} without confirmation",
                    "destroy is like pulling the power cord; add --yes if you mean it "
                    "(`dom0 shutdown` is the orderly way)",
                )
            answer = input(f"Destroy {g.name} (ID {g.id}) now? Unsaved data in it is lost. [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("not destroyed")
                return 1
        hv.destroy(args.guest)
        if args.json:
            print_json({"guest": g.name, "action": "destroy", "destroyed": True})
        else:
            print(f"destroyed {g.name}")
    return 0
