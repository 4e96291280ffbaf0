"""`dom0 dmesg` and `dom0 support-bundle`: the logs, and everything worth saving before a reboot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import urlparse

from dom0 import humanize
from dom0.cli.session import hypervisor, print_error, print_json
from dom0.errors import Dom0Error
from dom0.hypervisor import LogText
from dom0.observe import bundle


def _print_log(log: LogText) -> None:
    sys.stdout.write(f"# {log.source}\n")
    sys.stdout.write(log.text if not log.text or log.text.endswith("\n") else log.text + "\n")


def cmd_dmesg(args: argparse.Namespace) -> int:
    """`dom0 dmesg [GUEST]`: the hypervisor's log, or the guest's console and libvirt logs."""
    with hypervisor(args) as hv:
        if not args.guest:
            log = hv.hypervisor_log()
            if args.json:
                print_json({"source": log.source, "text": log.text})
            else:
                _print_log(log)
            return 0
        name = hv.guest(args.guest).name
        logs = hv.guest_logs(args.guest)
    if args.json:
        print_json([{"source": log.source, "text": log.text} for log in logs])
    else:
        for i, log in enumerate(logs):
            if i:
                sys.stdout.write("\n")
            _print_log(log)
    if not logs:
        remote = urlparse(hv.uri).hostname
        hint = (
            f"its logs are on {remote}; run dom0 there"
            if remote
            else f"to keep its console output, add <log file='/var/log/libvirt/qemu/{name}-console.log'/> inside "
            "the <serial> element of its definition"
        )
        print_error(f"{name} has no log readable from here", hint, failed=False)
    return 0


def cmd_support_bundle(args: argparse.Namespace) -> int:
    """`dom0 support-bundle [-o FILE]`: one tar.gz with host facts, every guest's state, definitions and logs."""
    wanted = Path(args.output) if args.output else None
    if wanted is not None and wanted.exists():
        raise Dom0Error(f"{wanted} already exists; not overwriting it", "pick another name with -o FILE")
    with hypervisor(args) as hv:
        collected = bundle.collect(hv)
    path = wanted or bundle.default_path(collected.hostname, collected.taken_at)
    members = bundle.write(collected, path)
    size = path.stat().st_size
    if args.json:
        print_json({"path": str(path), "bytes": size, "files": members, "errors": collected.errors})
        return 0
    print(f"wrote {path} ({humanize.size(size)}, {len(members)} files)")
    if collected.errors:
        print(f"{len(collected.errors)} item(s) could not be collected; see errors.txt inside:")
        for line in collected.errors[:5]:
            print(f"  {line}")
        if len(collected.errors) > 5:
            print("  ...")
    return 0
