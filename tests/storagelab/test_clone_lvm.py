"""`dom0 clone`'s LVM path on real device-mapper: snapshot, copy, remove exactly the snapshot, edit the copy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dom0 import run, storage
from dom0.clone.apply import Undo, clone_disk, reset_identity
from dom0.clone.plan import ClonePlan, DiskStep, Method
from dom0.errors import Dom0Error
from dom0.guest.identity import IdentityChange
from dom0.model import Guest, GuestState
from dom0.storage import lvm, remove_created

MiB = 1 << 20
SOURCE = Guest("web", "11111111-2222-4333-8444-555555555555", 3, GuestState.RUNNING, 262144, 262144, 1, 0)


def _no_bar(label: str, total: int):  # type: ignore[no-untyped-def]
    return lambda done: None


def _guest_root(tmp: Path) -> Path:
    tree = tmp / "tree"
    (tree / "etc/network").mkdir(parents=True)
    (tree / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    (tree / "etc/debian_version").write_text("12.5\n")
    (tree / "etc/hostname").write_text("web\n")
    (tree / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 web\n")
    (tree / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (tree / "etc/network/interfaces").write_text("auto eth0\niface eth0 inet static\n    address 10.0.0.2/24\n")
    return tree


def _cat(device: Path, path: str) -> str:
    return run.output(["debugfs", "-R", f"cat {path}", str(device)])


def _step(vg: str, origin: Path, size: int) -> DiskStep:
    return DiskStep(
        "xvda", Method.SNAPSHOT_COPY, str(origin), f"/dev/{vg}/web2-disk", "raw", size, True, vg, "web2-disk"
    )


def test_an_lv_is_cloned_from_a_snapshot_and_the_copy_gets_the_new_identity(vg: str, tmp_path: Path) -> None:
    origin = lvm.create_lv(vg, "web-disk", 64 * MiB)
    run.run(["mkfs.ext4", "-q", "-F", "-d", str(_guest_root(tmp_path)), str(origin.path)])
    step = _step(vg, origin.path, 64 * MiB)
    undo = Undo()
    clone_disk(step, undo, _no_bar)
    assert [c.path for c in undo.volumes] == [Path(step.dest)]  # only the copy is left to own: the snapshot is gone
    assert lvm.lv_info(vg, "web2-disk-dom0snap") is None
    change = IdentityChange(hostname="web2", address="10.0.0.3/24", macs=(("52:54:00:00:00:01", "00:16:3e:00:00:02"),))
    plan = ClonePlan(SOURCE, "web2", "99999999-8888-4777-8666-555555555555", ("00:16:3e:00:00:02",), "", (), None,
                     (step,), False, change)  # fmt: skip
    edits = reset_identity(plan)
    assert any("/etc/hostname" in e for e in edits)
    copy = Path(step.dest)
    assert _cat(copy, "/etc/hostname").strip() == "web2"
    assert "10.0.0.3/24" in _cat(copy, "/etc/network/interfaces")
    assert _cat(copy, "/etc/machine-id").strip() == "uninitialized"
    assert _cat(origin.path, "/etc/hostname").strip() == "web"  # the source is untouched
    for created in reversed(undo.volumes):
        remove_created(created)
    remove_created(origin)


def test_a_snapshot_that_overflows_fails_the_clone_and_is_removed(vg: str, monkeypatch: pytest.MonkeyPatch) -> None:
    origin = lvm.create_lv(vg, "busy-disk", 64 * MiB)
    step = _step(vg, origin.path, 64 * MiB)
    # a snapshot far too small for what the guest writes during the copy
    monkeypatch.setattr(storage, "snapshot_size", lambda o, free_bytes=None: 8 * MiB)
    undo = Undo()

    def busy(label: str, total: int):  # type: ignore[no-untyped-def]
        def progress(done: int) -> None:
            if done < 16 * MiB:  # the guest writes far more than the snapshot holds, during the copy
                with open(origin.path, "r+b") as f:
                    f.seek(32 * MiB + done)
                    f.write(os.urandom(4 * MiB))
                    f.flush()
                    os.fsync(f.fileno())

        return progress

    with pytest.raises(Dom0Error, match="filled up during the copy"):
        clone_disk(step, undo, busy)
    assert lvm.lv_info(vg, "web2-disk-dom0snap") is None  # removed even so
    for created in reversed(undo.volumes):
        remove_created(created)
    assert lvm.lv_info(vg, "web2-disk") is None
    remove_created(origin)
