"""Editors never leave the guest: symlinks and hard links at a target are replaced, never written through, and the
ext4 editor's debugfs edits read back through image/tree.py and pass e2fsck."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import NEW_MAC, OLD_MAC
from imagebuild import MiB, place, sparse
from ostrees import mkfs_ext4

from dom0 import run
from dom0.errors import Dom0Error
from dom0.guest import DirectoryEditor, IdentityChange, apply_edits, open_editor, plan_identity
from dom0.guest.editors import GuestEditor
from dom0.image.osinspect import inspect_tree
from dom0.image.source import open_image
from dom0.image.tree import FilesystemTree

Build = Callable[..., Path]
HOST_TARGET = Path("/tmp/dom0-guest-editor-host-target")
HOST_DIR = Path("/tmp/dom0-guest-editor-host-dir")
GUEST_SHADOW = "root:GUEST-SHADOW-HASH:19000:0:99999:7:::\n"
GUEST_PASSWD = "root:x:0:0:GUEST-PASSWD:/root:/bin/sh\n"

# Every way a guest link may try to make an edit land elsewhere.
ATTACKS = {
    "/etc/hostname": "/etc/shadow",
    "/etc/machine-id": "../../../../../../../../etc/passwd",
    "/etc/hosts": str(HOST_TARGET),
    "/etc/udev/rules.d/70-persistent-net.rules": "/etc/shadow",
}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def host_files() -> Iterator[dict[Path, str]]:
    """Host files that guest links point at, and the host's own /etc/passwd and /etc/shadow: none may change."""
    HOST_TARGET.write_text("host file that must not change\n")
    HOST_DIR.mkdir(exist_ok=True)
    watched = [HOST_TARGET, Path("/etc/passwd"), Path("/etc/shadow"), Path("/etc/hostname")]
    before = {p: _digest(p) for p in watched if p.exists()}
    yield before
    after = {p: _digest(p) for p in watched if p.exists()}
    listing = sorted(os.listdir(HOST_DIR))
    HOST_TARGET.unlink(missing_ok=True)
    for name in listing:
        (HOST_DIR / name).unlink()
    HOST_DIR.rmdir()
    assert after == before, "a host file changed"
    assert listing == [], "something was written into a host directory"


def _attacked(guest: Build) -> Path:
    return guest(
        "debian12",
        files={"/etc/shadow": GUEST_SHADOW, "/etc/passwd": GUEST_PASSWD, "/etc/udev/rules.d/.keep": ""},
        links={**ATTACKS, "/etc/netplan": str(HOST_DIR)},
    )


def test_symlinks_at_targets_are_replaced_not_followed(guest: Build, host_files: dict[Path, str]) -> None:
    root = _attacked(guest)
    editor = DirectoryEditor(root)
    editor.write("/etc/hostname", b"web2\n")
    editor.write("/etc/machine-id", b"uninitialized\n", 0o444)
    editor.write("/etc/hosts", b"127.0.0.1 localhost\n")
    editor.remove("/etc/udev/rules.d/70-persistent-net.rules")
    editor.close()
    assert (root / "etc/shadow").read_text() == GUEST_SHADOW
    assert (root / "etc/passwd").read_text() == GUEST_PASSWD
    for path, data in (("etc/hostname", "web2\n"), ("etc/machine-id", "uninitialized\n")):
        assert not (root / path).is_symlink()
        assert (root / path).read_text() == data
    assert (root / "etc/machine-id").stat().st_mode & 0o7777 == 0o444
    assert not os.path.lexists(root / "etc/udev/rules.d/70-persistent-net.rules")


def test_a_directory_link_out_of_the_guest_is_resolved_inside_it(guest: Build, host_files: dict[Path, str]) -> None:
    root = _attacked(guest)
    editor = DirectoryEditor(root)
    with pytest.raises(Dom0Error, match="directory does not exist in the guest"):
        editor.write("/etc/netplan/01-evil.yaml", b"network: {}\n")
    (root / HOST_DIR.relative_to("/")).mkdir(parents=True)
    editor.write("/etc/netplan/01-ok.yaml", b"network: {}\n")
    editor.close()
    assert (root / HOST_DIR.relative_to("/") / "01-ok.yaml").read_text() == "network: {}\n"


def test_a_hard_link_keeps_its_content(guest: Build) -> None:
    root = guest("debian12", files={"/etc/shadow": GUEST_SHADOW})
    (root / "etc/hostname").unlink()
    os.link(root / "etc/shadow", root / "etc/hostname")
    editor = DirectoryEditor(root)
    editor.write("/etc/hostname", b"web2\n")
    editor.close()
    assert (root / "etc/shadow").read_text() == GUEST_SHADOW
    assert (root / "etc/hostname").read_text() == "web2\n"


def test_directories_are_neither_written_nor_removed(guest: Build) -> None:
    root = guest("debian12")
    editor = DirectoryEditor(root)
    with pytest.raises(Dom0Error, match="is a directory"):
        editor.remove("/etc/systemd")
    with pytest.raises(Dom0Error, match="is a directory"):
        editor.write("/etc", b"x")
    with pytest.raises(Dom0Error, match="does not name a file"):
        editor.write("/etc/..", b"x")


def test_nothing_is_applied_before_close_or_after_discard(guest: Build) -> None:
    root = guest("debian12")
    editor = DirectoryEditor(root)
    editor.write("/etc/hostname", b"web2\n")
    assert (root / "etc/hostname").read_text() == "bookworm-vm\n"
    editor.discard()
    assert (root / "etc/hostname").read_text() == "bookworm-vm\n"
    with pytest.raises(Dom0Error, match="closed"):
        editor.write("/etc/hostname", b"web2\n")


def test_identity_reset_on_an_attacked_tree(guest: Build, host_files: dict[Path, str]) -> None:
    root = _attacked(guest)
    editor = DirectoryEditor(root)
    system = inspect_tree(editor.tree)
    assert system is not None
    apply_edits(editor, plan_identity(editor.tree, system, IdentityChange(hostname="web2")))
    assert (root / "etc/hostname").read_text() == "web2\n"
    assert (root / "etc/machine-id").read_text() == "uninitialized\n"
    assert (root / "etc/shadow").read_text() == GUEST_SHADOW
    assert (root / "etc/passwd").read_text() == GUEST_PASSWD
    assert os.path.islink(root / "etc/hosts"), "a linked /etc/hosts is not read through, so it is left alone"


# --- ext4 through debugfs -----------------------------------------------------------------------------------------

OFFSET = MiB


def _image(tree: Path, work: Path) -> Path:
    fs = mkfs_ext4(tree, work / "root.ext4", size_mb=32)
    image = sparse(work / "disk.img", 40 * MiB)
    place(image, OFFSET, fs)
    fs.unlink()
    return image


def _read_back(image: Path) -> FilesystemTree:
    source = open_image(image)
    return FilesystemTree(source.window(OFFSET, 32 * MiB).as_file(), "ext4", "readback")


def _stat(image: Path, path: str) -> tuple[int, int, int]:
    out = run.output(["debugfs", "-R", f'stat "{path}"', f"{image}?offset={OFFSET}"])
    m = re.search(r"Type: regular\s+Mode:\s+(\d+)", out)
    u = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", out)
    assert m, out
    assert u, out
    return int(m.group(1), 8), int(u.group(1)), int(u.group(2))


def _fsck(image: Path, work: Path) -> None:
    copy = work / "check.ext4"
    with image.open("rb") as src, copy.open("wb") as dst:
        src.seek(OFFSET)
        dst.write(src.read(32 * MiB))
    proc = run.run(["e2fsck", "-fn", str(copy)], check=False)
    assert proc.returncode == 0, proc.stdout.decode()


def test_ext4_identity_reset_through_debugfs(guest: Build, tmp_path: Path, host_files: dict[Path, str]) -> None:
    image = _image(_attacked(guest), tmp_path)
    before = _digest(image)
    editor: GuestEditor = open_editor(image, OFFSET, "ext4")
    system = inspect_tree(editor.tree)
    assert system is not None
    change = IdentityChange(hostname="web2", address="10.1.2.3/24", gateway="10.1.2.1", macs=((OLD_MAC, NEW_MAC),))
    edits = plan_identity(editor.tree, system, change)
    assert _digest(image) == before, "planning wrote to the image"
    apply_edits(editor, edits)

    tree = _read_back(image)
    again = inspect_tree(tree)
    assert again is not None
    assert again.hostname == "web2"
    assert tree.readlink("/etc/hostname") is None
    assert tree.read_text("/etc/shadow") == GUEST_SHADOW
    assert tree.read_text("/etc/passwd") == GUEST_PASSWD
    assert tree.read_text("/etc/machine-id") == "uninitialized\n"
    assert "iface ens3 inet static\n    address 10.1.2.3\n" in tree.read_text("/etc/network/interfaces")
    assert tree.listdir("/etc/ssh") == ["sshd_config"]
    assert not tree.lexists("/etc/udev/rules.d/70-persistent-net.rules")
    assert not tree.lexists("/var/lib/dhcp/dhclient.ens3.leases")
    assert _stat(image, "/etc/machine-id") == (0o444, 0, 0)
    assert _stat(image, "/etc/hostname") == (0o644, 0, 0)
    _fsck(image, tmp_path)


def test_ext4_names_with_spaces_and_a_dirty_journal(guest: Build, tmp_path: Path) -> None:
    name = "/etc/NetworkManager/system-connections/Wired connection 1.nmconnection"
    keyfile = "[connection]\nid=Wired connection 1\ntype=ethernet\n\n[ethernet]\nmac-address=52:54:00:6b:3c:58\n"
    image = _image(guest("rocky9", files={name: keyfile}), tmp_path)
    # What a snapshot of a running guest looks like: the journal still has to be replayed.
    run.run(["debugfs", "-w", "-R", "feature needs_recovery", f"{image}?offset={OFFSET}"])
    editor = open_editor(image, OFFSET, "ext4")
    system = inspect_tree(editor.tree)
    assert system is not None
    apply_edits(editor, plan_identity(editor.tree, system, IdentityChange(macs=((OLD_MAC, NEW_MAC),))))
    tree = _read_back(image)
    assert f"mac-address={NEW_MAC}\n" in tree.read_text(name)
    assert _stat(image, name) == (0o600, 0, 0)
    _fsck(image, tmp_path)


def test_ext4_names_debugfs_cannot_quote_are_refused(guest: Build, tmp_path: Path) -> None:
    image = _image(guest("debian12"), tmp_path)
    editor = open_editor(image, OFFSET, "ext4")
    with pytest.raises(Dom0Error, match="cannot be given this name"):
        editor.write('/etc/a"b', b"x")
    editor.close()


@pytest.mark.parametrize("fs_type", ["xfs", "btrfs", "vfat", ""])
def test_other_filesystems_are_refused_with_a_hint(tmp_path: Path, fs_type: str) -> None:
    with pytest.raises(Dom0Error, match="cannot edit files in a") as err:
        open_editor(tmp_path / "disk.img", 0, fs_type)
    assert "after it boots" in err.value.hint


def test_qcow2_and_wrong_offsets_are_refused(guest: Build, tmp_path: Path) -> None:
    image = _image(guest("debian12"), tmp_path)
    with pytest.raises(Dom0Error, match="no ext2/3/4 filesystem at byte 0"):
        open_editor(image, 0, "ext4")
    qcow = tmp_path / "disk.qcow2"
    run.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(image), str(qcow)])
    with pytest.raises(Dom0Error, match="qcow2") as err:
        open_editor(qcow, OFFSET, "ext4")
    assert err.value.hint
