"""`dom0 image inspect --diff A B` through the console script: two Debian 12 disk images whose dpkg status files the
test writes (B upgraded, one package added, one removed, hostname and kernel changed), a guest name on one side,
--json, and the refusals (not two targets, a side with no system or no package database, a hostile name)."""

from __future__ import annotations

import json
from pathlib import Path

import guestnode
import ostrees
import pytest
from dpkgstatus import AFTER, BEFORE, debian_tree, stanza
from unitkit import dom0


def _image(base: Path, name: str, status: str | None, hostname: str, kernel: str) -> Path:
    tree = debian_tree(base / f"{name}-tree", status, hostname, kernel)
    return ostrees.mkfs_ext4(tree, base / f"{name}.img", size_mb=16)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("diff")
    return (
        _image(base, "web1", BEFORE, "web1", "6.1.0-9-amd64"),
        _image(base, "web2", AFTER, "web2", "6.1.0-10-amd64"),
    )


EXPECTED_LINES = [
    "  kernel 6.1.0-9-amd64 -> 6.1.0-10-amd64, hostname web1 -> web2",
    "+ hello 2.10-3",
    "- libc6:i386 2.36-9+deb12u3",
    "- nano 7.2-1",
    "~ bash 5.2.15-2+b2 -> 5.2.15-2+b7",
    "~ libc6 2.36-9+deb12u3 -> 2.36-9+deb12u7",
    "~ tzdata 2024a-0+deb12u1 (all) -> 2025b-0+deb12u1 (amd64)",
    "~ util-linux 2.38.1-5+b1 -> 1:2.38.1-5+deb12u3",
]


def test_two_images(images: tuple[Path, Path]) -> None:
    a, b = images
    done = dom0("image", "inspect", "--diff", str(a), str(b))
    assert done.rc == 0, done.err
    lines = done.out.splitlines()
    assert lines[0] == f"{a} -> {b}: 1 added, 2 removed, 4 changed, 1 the same (dpkg 7 -> dpkg 6 packages)"
    assert lines[1:] == EXPECTED_LINES


def test_json(images: tuple[Path, Path]) -> None:
    a, b = images
    done = dom0("image", "inspect", str(a), str(b), "--diff", "--json")
    assert done.rc == 0, done.err
    doc = json.loads(done.out)
    assert doc["old"]["target"] == str(a)
    assert doc["new"]["database"] == "dpkg"
    assert doc["facts"] == [
        {"fact": "kernel", "old": "6.1.0-9-amd64", "new": "6.1.0-10-amd64"},
        {"fact": "hostname", "old": "web1", "new": "web2"},
    ]
    packages = doc["packages"]
    assert packages["added"] == [{"name": "hello", "arch": "amd64", "version": "2.10-3"}]
    assert [(p["name"], p["arch"]) for p in packages["removed"]] == [("libc6", "i386"), ("nano", "amd64")]
    assert {"name": "util-linux", "arch": "amd64", "old": "2.38.1-5+b1", "new": "1:2.38.1-5+deb12u3",
            "old_arch": "amd64"} in packages["changed"]  # fmt: skip
    assert packages["unchanged"] == 1
    assert doc["notes"] == []


def test_the_same_image_twice_says_so(images: tuple[Path, Path]) -> None:
    a, _ = images
    done = dom0("image", "inspect", "--diff", str(a), str(a))
    assert done.rc == 0, done.err
    assert done.out.splitlines() == [
        f"{a} -> {a}: 0 added, 0 removed, 0 changed, 7 the same (dpkg 7 -> dpkg 7 packages)",
        "  both Debian GNU/Linux 12 (bookworm)",
    ]


def test_a_guest_name_on_one_side(images: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = images
    uri = guestnode.write_node(tmp_path / "node.xml", [guestnode.NodeGuest("web1", str(a))])
    done = dom0("-c", uri, "image", "inspect", "--diff", "web1", str(b))
    assert done.rc == 0, done.err
    assert done.out.splitlines()[1:] == EXPECTED_LINES
    missing = dom0("-c", uri, "image", "inspect", "--diff", "web9", str(b))
    assert missing.rc == 1
    assert missing.err.startswith("dom0: error: web9 is neither an image file nor a guest")
    assert "Traceback" not in missing.err


@pytest.mark.parametrize("args", [["one.img"], ["a", "b", "c"], ["--all"], ["--all", "a", "b"]])
def test_not_two_targets_is_a_usage_error(args: list[str]) -> None:
    done = dom0("image", "inspect", "--diff", *args)
    assert done.rc == 2
    assert "--diff compares two targets" in done.err
    assert "Traceback" not in done.err
    assert done.out == ""


def test_a_side_with_no_system_or_no_package_database(images: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = images
    junk = guestnode.garbage(tmp_path)
    done = dom0("image", "inspect", "--diff", str(a), str(junk))
    assert done.rc == 1
    assert done.out == ""
    assert done.err.splitlines()[0] == f"dom0: error: {junk}: no operating system found"
    gone = dom0("image", "inspect", "--diff", str(tmp_path / "gone.img"), str(a))
    assert gone.rc == 1
    assert gone.err.splitlines()[0] == f"dom0: error: {tmp_path / 'gone.img'}: no such image file or block device"
    bare = _image(tmp_path, "bare", None, "bare", "6.1.0-9-amd64")
    done = dom0("image", "inspect", "--diff", str(bare), str(a))
    assert done.rc == 1
    assert done.out == ""
    no_db = f"dom0: error: {bare}: no package database found in Debian GNU/Linux 12 (bookworm)"
    assert done.err.splitlines()[0] == no_db
    assert "Traceback" not in done.err


def test_names_from_the_image_are_escaped(images: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = images
    evil = _image(tmp_path, "evil", BEFORE + stanza("evil\x1b]0;owned\x07", "1.0"), "web1", "6.1.0-9-amd64")
    done = dom0("image", "inspect", "--diff", str(a), str(evil))
    assert done.rc == 0, done.err
    assert "\x1b" not in done.out
    assert "\x07" not in done.out
    assert any(line.startswith("+ evil") for line in done.out.splitlines())
