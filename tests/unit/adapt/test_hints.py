"""`dom0 image hints`: stubs for other families' package tools in a real ext4 image, through the console script."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import ostrees
from unitkit import dom0

from dom0.image.tree import FilesystemTree

STUBS = "/usr/local/bin"


def _fc5(tmp_path: Path, **extra: str) -> ostrees.OSTree:
    tree = ostrees.fedora_core5()
    tree.files.update({"/bin/rpm": "#!/bin/sh\n", "/usr/bin/yum": "#!/usr/bin/python\n", **extra})
    return tree


def _image(tmp_path: Path, tree: ostrees.OSTree, *, local_bin: bool = True) -> Path:
    root = tree.build(tmp_path / "tree")
    if local_bin:
        (root / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    return ostrees.mkfs_ext4(root, tmp_path / "guest.img")


def _listing(image: Path) -> dict[str, bytes]:
    """Every file under /usr/local/bin with its content (a symlink as its target)."""
    with image.open("rb") as fh:
        tree = FilesystemTree(fh, "ext4", "guest.img")
        out = {}
        for name in tree.listdir(STUBS):
            path = f"{STUBS}/{name}"
            link = tree.readlink(path)
            out[name] = link.encode() if link is not None else tree.read_bytes(path)
        return out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_stub(text: bytes, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    script = tmp_path / "stub.sh"
    script.write_bytes(text)
    return subprocess.run(["sh", str(script)], capture_output=True, cwd=tmp_path, check=False, timeout=10)


def test_stubs_only_where_the_tool_is_absent_and_remove_takes_out_exactly_them(tmp_path: Path) -> None:
    tree = _fc5(tmp_path, **{"/usr/local/bin/pacman": "#!/bin/sh\necho the admin's own pacman\n"})
    tree.links["/usr/sbin/apk"] = "/opt/apk-tools/apk"  # a dangling symlink is still an installed tool
    image = _image(tmp_path, tree)
    before = _listing(image)

    dry = dom0("image", "hints", str(image), "--dry-run")
    assert dry.rc == 0, dry.err
    assert "dry run: nothing written" in dry.out
    assert _listing(image) == before

    done = dom0("image", "hints", str(image))
    assert done.rc == 0, done.err
    after = _listing(image)
    # rpm and yum are this system's own (dnf too: the same family); apk is installed; pacman is the admin's.
    assert sorted(set(after) - set(before)) == ["apt", "apt-get", "dpkg", "emerge", "zypper"]
    assert after["pacman"] == before["pacman"]
    assert "/usr/local/bin/pacman is not dom0's: left alone" in done.out
    assert "wrote 5 stubs in /usr/local/bin" in done.out

    run = _run_stub(after["apt-get"], tmp_path)
    assert run.returncode == 127
    assert run.stderr.decode() == (
        "apt-get: this system is Fedora Core release 5 (Bordeaux) (rpm): use its own package tools: rpm, yum\n"
    )
    assert run.stdout == b""

    again = dom0("image", "hints", str(image))
    assert again.rc == 0
    assert "nothing to change" in again.out
    assert _listing(image) == after

    removed = dom0("image", "hints", str(image), "--remove", "--json")
    assert removed.rc == 0, removed.err
    doc = json.loads(removed.out)
    assert doc["applied"] is True
    assert sorted(c["path"] for c in doc["changes"]) == [
        f"{STUBS}/{t}" for t in ("apt", "apt-get", "dpkg", "emerge", "zypper")
    ]
    assert _listing(image) == before


def test_a_guest_product_name_is_printed_never_run(tmp_path: Path) -> None:
    canary = tmp_path / "ran"
    hostile = f"Evil'$(touch {canary})`touch {canary}`\\n\"; touch {canary}; echo '"
    tree = ostrees.OSTree(
        "hostile",
        {
            "/etc/os-release": f"ID=debian\nVERSION_ID=12\nPRETTY_NAME={json.dumps(hostile)}\n",
            "/usr/bin/dpkg": "#!/bin/sh\n",
        },
    )
    image = _image(tmp_path, tree)
    done = dom0("image", "hints", str(image))
    assert done.rc == 0, done.err
    stubs = _listing(image)
    assert "dpkg" not in stubs
    assert "rpm" in stubs
    run = _run_stub(stubs["rpm"], tmp_path)
    assert run.returncode == 127
    assert not canary.exists()
    assert run.stderr.decode().startswith(f"rpm: this system is {hostile} (deb): use its own package tools: ")


def test_a_symlinked_usr_local_bin_is_not_written_through(tmp_path: Path) -> None:
    host_dir = tmp_path / "host-bin"
    host_dir.mkdir()
    tree = _fc5(tmp_path)
    tree.links["/usr/local/bin"] = str(host_dir)  # absolute: on the host it would be this test's directory
    (tmp_path / "tree" / "usr/local").mkdir(parents=True)
    image = _image(tmp_path, tree, local_bin=False)
    digest = _digest(image)
    done = dom0("image", "hints", str(image))
    assert done.rc == 0, done.err
    assert f"/usr/local/bin is a symlink to {host_dir}" in done.out
    assert "nothing to change" in done.out
    assert os.listdir(host_dir) == []
    assert _digest(image) == digest


def test_an_unknown_target_is_one_line_and_a_hint(tmp_path: Path) -> None:
    missing = dom0("-c", "test:///default", "image", "hints", str(tmp_path / "nope"))
    assert missing.rc == 1
    assert missing.err.splitlines()[0] == f"dom0: error: {tmp_path / 'nope'}: no such image file or block device"
    unknown = dom0("-c", "test:///default", "image", "hints", "no-such-guest")
    assert unknown.rc == 1
    assert unknown.err.splitlines()[0] == "dom0: error: no-such-guest is neither an image file nor a guest"
    assert all(len(r.err.splitlines()) == 2 and "hint:" in r.err for r in (missing, unknown))
