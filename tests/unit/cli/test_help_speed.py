"""`dom0 --help` starts fast: libvirt and rich are imported only by commands that need them."""

from __future__ import annotations

import statistics
import sys
import time

import pytest
from unitkit import dom0

from dom0 import run

HEAVY = ("libvirt", "rich")


def test_help_is_fast() -> None:
    dom0("--help")  # warm the page cache, as a second run by a user would be
    times = []
    for _ in range(5):
        start = time.perf_counter()
        r = dom0("--help")
        times.append(time.perf_counter() - start)
        assert r.rc == 0
        assert "explain" in r.out
    assert statistics.median(times) < 0.25, f"dom0 --help took {sorted(times)} s"


def _imported(*args: str) -> set[str]:
    """Top-level packages Python imported while running `dom0 ARGS` (from -X importtime's report)."""
    proc = run.run([sys.executable, "-X", "importtime", "-m", "dom0", *args], check=False, input=b"")
    assert proc.returncode == 0, proc.stderr.decode()
    modules = set()
    for line in proc.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            modules.add(name.split(".")[0])
    assert "dom0" in modules  # the report was read correctly
    return modules


@pytest.mark.parametrize("args", [["--help"], ["explain", "5696"], ["explain", "--json", "b"], ["list", "--help"]])
def test_no_heavy_imports(args: list[str]) -> None:
    imported = _imported(*args)
    assert not imported & set(HEAVY), f"dom0 {' '.join(args)} imported {sorted(imported & set(HEAVY))}"


def test_list_does_import_libvirt() -> None:
    # Guards the test above: the importtime report does show libvirt when a command needs it.
    assert "libvirt" in _imported("-c", "test:///default", "list")
