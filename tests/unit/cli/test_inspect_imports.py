"""`dom0 image inspect PATH` loads the image readers and nothing of the guests' or the writing side: each module
it does not need costs every inspection its start-up time (a path inspected 50 times is 50 start-ups)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import ostrees
from unitkit import dom0

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


def test_only_the_image_verb_run_is_given_its_options_and_the_others_still_answer() -> None:
    # the parser of `dom0 image inspect` leaves the other verbs' options out; a wrong verb, another verb's --help
    # and a URI spelt like the command still get the whole parser's answers
    wrong = dom0("image", "inspekt", "x.img")
    assert wrong.rc == 2
    assert "invalid choice: 'inspekt'" in wrong.err
    assert all(v in wrong.err for v in ("'inspect'", "'extract'", "'wrap'", "'adapt'", "'hints'", "'kernel'"))
    extract = dom0("image", "extract", "--help")
    assert extract.rc == 0
    assert "--partition N" in extract.out
    listed = dom0("-c", "image", "image", "inspect", "--help")
    assert listed.rc == 0
    assert "--jobs" in listed.out or "-j N" in listed.out
