"""Symlinks made inside a guest (how a systemd unit is enabled): a new entry in place of whatever was there, never
written through, its target stored as given; through a host directory and through debugfs on a real ext4 image."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from imagebuild import MiB, place, sparse
from ostrees import mkfs_ext4

from dom0 import run
from dom0.errors import Dom0Error
from dom0.guest import DirectoryEditor, Edit, apply_edits, open_editor
from dom0.image.source import open_image
from dom0.image.tree import FilesystemTree

Build = Callable[..., Path]
WANTS = "/etc/systemd/system/getty.target.wants"
UNIT = "/lib/systemd/system/serial-getty@.service"
SERIAL = f"{WANTS}/serial-getty@ttyS0.service"
# Longer than the 60 bytes an ext4 inode holds inline: debugfs must give it a block.
LONG = "/usr/lib/systemd/system/" + "a-very-long-unit-name-" * 4 + "serial-getty@.service"
HOST_FILE = Path("/tmp/dom0-symlink-host-file")
OFFSET = MiB


@pytest.fixture
def host_file() -> Iterator[Path]:
    """A host file that guest links point at: it must keep its content, and /etc/passwd too."""
    HOST_FILE.write_text("host file that must not change\n")
    before = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    yield HOST_FILE
    assert HOST_FILE.read_text() == "host file that must not change\n"
    HOST_FILE.unlink()
    assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() == before


def _debian(guest: Build) -> Path:
    return guest(
        "debian12",
        files={UNIT: "[Unit]\nDescription=Serial Getty on %I\n", "/etc/systemd/system/old.conf": "old\n"},
        links={
            # A guest link at the very place a unit link is made, pointing at host files: replaced, never written.
            f"{WANTS}/serial-getty@hvc0.service": str(HOST_FILE),
            "/etc/systemd/system/evil.service": "/etc/passwd",
        },
    )


def test_a_host_directory_guest_gets_links_in_place_of_links_and_files(guest: Build, host_file: Path) -> None:
    root = _debian(guest)
    editor = DirectoryEditor(root)
    editor.symlink(SERIAL, UNIT)
    editor.symlink(f"{WANTS}/serial-getty@hvc0.service", UNIT)
    editor.symlink("/etc/systemd/system/evil.service", "/dev/null")
    editor.symlink("/etc/systemd/system/old.conf", LONG)
    editor.close()
    assert os.readlink(root / SERIAL.lstrip("/")) == UNIT
    assert os.readlink(root / f"{WANTS.lstrip('/')}/serial-getty@hvc0.service") == UNIT
    assert os.readlink(root / "etc/systemd/system/evil.service") == "/dev/null"
    assert os.readlink(root / "etc/systemd/system/old.conf") == LONG
    assert not [n for n in os.listdir(root / WANTS.lstrip("/")) if n.startswith(".")], "a temporary entry was left"


def test_apply_edits_makes_symlink_edits_and_plans_print_them(guest: Build) -> None:
    root = _debian(guest)
    edit = Edit(SERIAL, "symlink", UNIT.encode(), why="a login on ttyS0")
    assert str(edit) == f"link   {SERIAL} -> {UNIT}: a login on ttyS0"
    apply_edits(DirectoryEditor(root), [edit])
    assert os.readlink(root / SERIAL.lstrip("/")) == UNIT


def test_links_over_directories_and_malformed_targets_are_refused(guest: Build) -> None:
    root = _debian(guest)
    editor = DirectoryEditor(root)
    with pytest.raises(Dom0Error, match="is a directory"):
        editor.symlink(WANTS, UNIT)
    for target in ("", "a\0b", "x" * 4096):
        with pytest.raises(Dom0Error, match="cannot be the target"):
            editor.symlink(SERIAL, target)
    editor.discard()
    assert not os.path.lexists(root / SERIAL.lstrip("/"))


# --- a real ext4 image through debugfs ----------------------------------------------------------------------------


def _image(tree: Path, work: Path) -> Path:
    fs = mkfs_ext4(tree, work / "root.ext4", size_mb=32)
    image = sparse(work / "disk.img", 40 * MiB)
    place(image, OFFSET, fs)
    fs.unlink()
    return image


def _owner(image: Path, path: str) -> tuple[str, int, int]:
    out = run.output(["debugfs", "-R", f'stat "{path}"', f"{image}?offset={OFFSET}"])
    m = re.search(r"Type: (\w+)\s+Mode:\s+\d+", out)
    u = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", out)
    assert m, out
    assert u, out
    return m.group(1), int(u.group(1)), int(u.group(2))


def test_ext4_symlinks_through_debugfs(guest: Build, tmp_path: Path, host_file: Path) -> None:
    image = _image(_debian(guest), tmp_path)
    editor = open_editor(image, OFFSET, "ext4")
    apply_edits(
        editor,
        [
            Edit(SERIAL, "symlink", UNIT.encode()),
            Edit(f"{WANTS}/serial-getty@hvc0.service", "symlink", UNIT.encode()),
            Edit("/etc/systemd/system/evil.service", "symlink", b"/dev/null"),
            Edit("/etc/systemd/system/old.conf", "symlink", LONG.encode()),
        ],
    )
    tree = FilesystemTree(open_image(image).window(OFFSET, 32 * MiB).as_file(), "ext4", "readback")
    assert tree.readlink(SERIAL) == UNIT
    assert tree.read_text(SERIAL) == "[Unit]\nDescription=Serial Getty on %I\n"
    assert tree.readlink(f"{WANTS}/serial-getty@hvc0.service") == UNIT
    assert tree.readlink("/etc/systemd/system/evil.service") == "/dev/null"
    assert tree.readlink("/etc/systemd/system/old.conf") == LONG
    assert _owner(image, SERIAL) == ("symlink", 0, 0)
    copy = tmp_path / "check.ext4"
    with image.open("rb") as src, copy.open("wb") as dst:
        src.seek(OFFSET)
        dst.write(src.read(32 * MiB))
    proc = run.run(["e2fsck", "-fn", str(copy)], check=False)
    assert proc.returncode == 0, proc.stdout.decode()


def test_ext4_link_targets_debugfs_cannot_quote_are_refused(guest: Build, tmp_path: Path) -> None:
    image = _image(_debian(guest), tmp_path)
    editor = open_editor(image, OFFSET, "ext4")
    with pytest.raises(Dom0Error, match="cannot be given this name"):
        editor.symlink(SERIAL, '/lib/a"b')
    editor.close()
    tree = FilesystemTree(open_image(image).window(OFFSET, 32 * MiB).as_file(), "ext4", "readback")
    assert not tree.lexists(SERIAL)
