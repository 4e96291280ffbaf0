"""`dom0 image inspect PATH` loads the image readers and nothing of the guests' or the writing side: each module
it does not need costs every inspection its start-up time (a path inspected 50 times is 50 start-ups)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import ostrees

from dom0 import run

# What a path's inspection never needs: the hypervisor layer, the guests' dataclasses, the writers (raw views,
# guest editors and the external-command runner they use), progress bars, and the plan's diff.
NOT_NEEDED = (
    "libvirt",
    "rich",
    "dom0.hypervisor",
    "dom0.model",
    "dom0.storage",
    "dom0.image.lvm",  # this image has no LVM
    "dom0.image.targets",  # a path names itself: no guest to resolve
    "dom0.guest.editors",
    "dom0.run",
    "difflib",
)


def _modules(*args: str) -> tuple[set[str], bytes]:
    """Every module Python imported while running `dom0 ARGS` (from -X importtime's report), and the output."""
    proc = run.run([sys.executable, "-X", "importtime", "-m", "dom0", *args], check=False, input=b"")
    assert proc.returncode == 0, proc.stderr.decode()
    names = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.decode().splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return names, proc.stdout


def test_inspect_of_an_image_path_loads_only_the_readers(tmp_path: Path) -> None:
    image = ostrees.mkfs_ext4(ostrees.debian12().build(tmp_path / "tree"), tmp_path / "deb.img")
    names, out = _modules("image", "inspect", str(image), "--json")
    doc = json.loads(out)
    assert doc["operating_systems"][0]["distro"] == "debian"  # it did read the image, readiness included
    assert "adapt" in doc["operating_systems"][0]
    assert "dissect.extfs" in names  # the report was read correctly
    loaded = sorted(n for n in names if n.startswith(NOT_NEEDED))
    assert not loaded, f"dom0 image inspect PATH imported {loaded}"
