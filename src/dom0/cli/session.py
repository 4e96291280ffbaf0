"""What every command that talks to a hypervisor shares: choosing and opening the connection, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dom0.hypervisor import Hypervisor


@contextmanager
def hypervisor(args: argparse.Namespace) -> Iterator[Hypervisor]:
    """The hypervisor chosen by -c and the environment, closed afterwards."""
    # Imported here so commands that read only files (explain, image) never load the hypervisor layer.
    from dom0.hypervisor import choose_uri, connect

    hv = connect(choose_uri(args.connect))
    try:
        yield hv
    finally:
        hv.close()


def print_json(value: Any) -> None:
    """Print one JSON document on stdout."""
    json.dump(value, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
