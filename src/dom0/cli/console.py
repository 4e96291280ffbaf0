"""`dom0 console GUEST`: the guest's serial console on this terminal; Ctrl-] detaches."""

from __future__ import annotations

import argparse

from dom0.cli.session import attach_console


def cmd_console(args: argparse.Namespace) -> int:
    """`dom0 console GUEST`."""
    return attach_console(args, args.guest)
