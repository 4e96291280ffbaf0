"""`dom0 explain WORD`."""

from __future__ import annotations

import argparse

from dom0.cli.session import print_json
from dom0.observe.explain import explain


def cmd_explain(args: argparse.Namespace) -> int:
    """Print what WORD means."""
    e = explain(args.word)
    if args.json:
        print_json({"word": e.word, "kind": e.kind, "explanation": list(e.lines), **e.fields})
    else:
        print("\n".join(e.lines))
    return 0
