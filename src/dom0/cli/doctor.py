"""`dom0 doctor`: the first command on call; worst findings first, exit 1 when anything is wrong."""

from __future__ import annotations

import argparse
from pathlib import Path

from dom0.cli.session import hypervisor, print_json
from dom0.cli.table import render, terminal_safe
from dom0.doctor import Diagnosis, diagnose
from dom0.saves import hostconfig


def _print(result: Diagnosis) -> None:
    if result.findings:
        rows: list[tuple[str, str, str, str]] = []
        for f in result.findings:
            rows.append((str(f.severity), f.subject, f.check, f.evidence))
            if f.hint:
                rows.append(("", "", "", f"hint: {f.hint}"))
        print(render(("Severity", "Subject", "Check", "Evidence"), rows))
    if not result.failed:
        print("no problems found" + (" (notes only)" if result.findings else ""))
    print("checked: " + terminal_safe("; ".join(result.checked)))


def cmd_doctor(args: argparse.Namespace) -> int:
    """Run every check on the host and the guests named (all when none) and report them."""
    config_path = Path(args.config) if args.config else None
    config = hostconfig.load(config_path)
    source = str(config_path or hostconfig.DEFAULT_PATH)
    save_dir = Path(args.save_dir) if args.save_dir else config.directory
    with hypervisor(args) as hv:
        result = diagnose(hv, args.guests, config=config, config_source=source, save_dir=save_dir)
    if args.json:
        print_json(
            {
                "findings": [
                    {
                        "severity": str(f.severity),
                        "subject": f.subject,
                        "check": f.check,
                        "evidence": f.evidence,
                        "hint": f.hint,
                    }
                    for f in result.findings
                ],
                "checked": list(result.checked),
            }
        )
    else:
        _print(result)
    return 1 if result.failed else 0
