"""Hostile guests: configs that are symlinks (to the host's files, or the guest's own /etc/passwd), directories where
files belong, oversized boot configs. Each is left alone with a note; nothing outside the guest is read or written,
and applying the plan changes none of the link targets."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import ostrees
import pytest

from dom0.adapt.files import FilesPlan, plan_files
from dom0.adapt.target import Target, devices
from dom0.guest import DirectoryEditor, apply_edits
from dom0.image.osinspect import inspect_tree
from dom0.image.tree import DirectoryTree

HOST_FILE = Path("/tmp/dom0-adapt-host-file")
HOST_DIR = Path("/tmp/dom0-adapt-host-dir")
HOST_TEXT = "/dev/hda1 / ext3 defaults 1 1\nalias eth0 tg3\n1:2345:respawn:/sbin/mingetty tty1\n"
GUEST_PASSWD = "root:x:0:0:GUEST-PASSWD:/root:/bin/sh\n"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def host() -> Iterator[None]:
    """Host files a guest's links name, written as a config the plan would change: none may be read or changed."""
    HOST_FILE.write_text(HOST_TEXT)
    HOST_DIR.mkdir(exist_ok=True)
    watched = [HOST_FILE, Path("/etc/passwd"), Path("/etc/fstab"), Path("/etc/inittab")]
    before = {p: _digest(p) for p in watched if p.exists()}
    yield
    after = {p: _digest(p) for p in watched if p.exists()}
    listing = os.listdir(HOST_DIR)
    HOST_FILE.unlink()
    for name in listing:
        (HOST_DIR / name).unlink()
    HOST_DIR.rmdir()
    assert after == before, "a host file changed"
    assert listing == [], "something was written into a host directory"


def _plan_and_apply(root: Path, target: Target) -> FilesPlan:
    tree = DirectoryTree(root)
    system = inspect_tree(tree)
    assert system is not None
    plan = plan_files(tree, system, target, devices(target), ())
    for change in plan.changes:
        assert HOST_TEXT not in (change.before or "") + (change.after or ""), f"{change.path} was read from the host"
    apply_edits(DirectoryEditor(root), [c.edit for c in plan.changes])
    return plan


def test_symlinked_inittab_and_fstab_are_left_alone_with_a_note(tmp_path: Path, host: None) -> None:
    tree = ostrees.fedora_core5()
    tree.files["/etc/passwd"] = GUEST_PASSWD
    del tree.files["/etc/fstab"], tree.files["/etc/inittab"], tree.files["/etc/modprobe.conf"]
    tree.links.update(
        {
            "/etc/inittab": "/etc/passwd",  # absolute: resolved inside the guest, to the guest's own passwd
            "/etc/fstab": str(HOST_FILE),  # a host path: not in the guest at all
            "/etc/modprobe.conf": "../../../../../../" + str(HOST_FILE),
            "/boot/grub/menu.lst": "/etc/passwd",
        }
    )
    root = tree.build(tmp_path / "guest")
    plan = _plan_and_apply(root, Target.XEN_PV)
    for path in ("/etc/inittab", "/etc/fstab", "/etc/modprobe.conf", "/boot/grub/menu.lst"):
        assert any(n.startswith(f"{path} left alone: it is a symlink") for n in plan.notes), (path, plan.notes)
        assert (root / path.lstrip("/")).is_symlink()
    assert (root / "etc/passwd").read_text() == GUEST_PASSWD
    assert {c.path for c in plan.changes} == {"/etc/securetty"}


def test_directories_where_files_belong_are_notes(tmp_path: Path, host: None) -> None:
    tree = ostrees.fedora_core5()
    for path in ("/etc/modprobe.conf", "/etc/securetty", "/etc/fstab"):
        del tree.files[path]
    root = tree.build(tmp_path / "guest")
    for path in ("etc/modprobe.conf", "etc/securetty", "etc/fstab", "boot/grub/grub.cfg", "etc/modprobe.d/x.conf"):
        (root / path).mkdir(parents=True)
    plan = _plan_and_apply(root, Target.KVM)
    for path in ("/etc/modprobe.conf", "/etc/securetty", "/etc/fstab", "/boot/grub/grub.cfg", "/etc/modprobe.d/x.conf"):
        assert f"{path} left alone: it is a directory, not a file" in plan.notes
    assert [c.path for c in plan.changes] == ["/etc/inittab"]


def test_a_modprobe_d_that_is_a_file_and_an_oversized_grub_cfg(tmp_path: Path, host: None) -> None:
    tree = ostrees.debian4()
    tree.files["/boot/grub/grub.cfg"] = "#" * (2 * 1024 * 1024) + "\n"
    del tree.files["/etc/modprobe.d/arch-aliases"]
    tree.files["/etc/modprobe.d"] = "alias eth0 tg3\n"
    root = tree.build(tmp_path / "guest")
    plan = _plan_and_apply(root, Target.KVM)
    assert "/etc/modprobe.d left alone: it is not a directory" in plan.notes
    assert any(n.startswith("/boot/grub/grub.cfg left alone: 2097153 bytes") for n in plan.notes)
    assert (root / "etc/modprobe.d").read_text() == "alias eth0 tg3\n"


def test_a_getty_wants_directory_linked_to_the_host_gets_nothing(tmp_path: Path, host: None) -> None:
    tree = ostrees.debian12()
    tree.files = {p: c for p, c in tree.files.items() if "getty.target.wants" not in p}
    tree.files["/lib/systemd/system/serial-getty@.service"] = "[Unit]\n"
    tree.links["/etc/systemd/system/getty.target.wants"] = str(HOST_DIR)
    root = tree.build(tmp_path / "guest")
    plan = _plan_and_apply(root, Target.KVM)
    assert "/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service not linked: " in "\n".join(plan.notes)
    assert plan.changes == ()
