"""storage.probe and storage.qcow2 with the real qemu-img: overlays, full copies, format probing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dom0 import run
from dom0.errors import Dom0Error
from dom0.storage import VolumeKind, probe, remove_created
from dom0.storage.qcow2 import full_copy, overlay, raw_view

MiB = 1 << 20

pytestmark = pytest.mark.skipif(not run.available("qemu-img"), reason="qemu-img is not installed")


def _info(path: Path) -> dict[str, object]:
    info = json.loads(run.output(["qemu-img", "info", "--output=json", "-U", str(path)]))
    assert isinstance(info, dict)
    return info


def _raw_with_data(path: Path, size: int = 32 * MiB) -> bytes:
    payload = os.urandom(2 * MiB)
    with open(path, "wb") as fh:
        fh.truncate(size)
        fh.seek(5 * MiB)
        fh.write(payload)
    return payload


def _same_content(a: Path, b: Path) -> bool:
    return run.run(["qemu-img", "compare", "-U", str(a), str(b)], check=False).returncode == 0


def test_probe_raw_and_qcow2(tmp_path: Path) -> None:
    raw, qcow = tmp_path / "disk.raw", tmp_path / "disk.qcow2"
    _raw_with_data(raw)
    run.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow), "1G"])
    vol = probe(raw)
    assert (vol.kind, vol.format, vol.size_bytes, vol.backing) == (VolumeKind.FILE, "raw", 32 * MiB, "")
    vol = probe(qcow)
    assert (vol.format, vol.size_bytes) == ("qcow2", 1 << 30)
    assert vol.allocated_bytes < 1 * MiB


def test_probe_with_known_format_does_not_trust_the_content(tmp_path: Path) -> None:
    # A raw disk whose guest wrote a qcow2 image into it: told "raw", probe must not read it as qcow2.
    inner = tmp_path / "inner.qcow2"
    run.run(["qemu-img", "create", "-q", "-f", "qcow2", str(inner), "4G"])
    raw = tmp_path / "guest.raw"
    raw.write_bytes(inner.read_bytes())
    assert probe(raw).format == "qcow2"  # what guessing would do
    told = probe(raw, "raw")
    assert (told.format, told.size_bytes) == ("raw", raw.stat().st_size)


def test_probe_refusals(tmp_path: Path) -> None:
    with pytest.raises(Dom0Error, match="no such file"):
        probe(tmp_path / "missing.img")
    with pytest.raises(Dom0Error, match="not a disk image"):
        probe(tmp_path)
    vmdk = tmp_path / "disk.vmdk"
    run.run(["qemu-img", "create", "-q", "-f", "vmdk", str(vmdk), "16M"])
    with pytest.raises(Dom0Error, match="vmdk is not supported") as err:
        probe(vmdk)
    assert "qemu-img convert" in err.value.hint


def test_overlay_reads_through_to_its_base(tmp_path: Path) -> None:
    base, top = tmp_path / "base.raw", tmp_path / "clone.qcow2"
    _raw_with_data(base)
    before = base.read_bytes()
    created = overlay(base, top, "raw")
    vol = probe(top)
    assert vol.format == "qcow2"
    assert vol.size_bytes == 32 * MiB
    assert vol.backing == str(base)
    assert _info(top)["backing-filename-format"] == "raw"
    assert _same_content(base, top)
    assert top.stat().st_size < 1 * MiB  # a linked clone: no data copied
    assert base.read_bytes() == before
    remove_created(created)
    assert not top.exists()
    assert base.exists()


def test_overlay_refuses_an_existing_file(tmp_path: Path) -> None:
    base, top = tmp_path / "base.raw", tmp_path / "clone.qcow2"
    _raw_with_data(base)
    top.write_bytes(b"keep me")
    with pytest.raises(Dom0Error, match="already exists"):
        overlay(base, top, "raw")
    assert top.read_bytes() == b"keep me"


def test_overlay_on_a_missing_base_leaves_nothing(tmp_path: Path) -> None:
    top = tmp_path / "clone.qcow2"
    with pytest.raises(Dom0Error, match="cannot create the overlay"):
        overlay(tmp_path / "gone.raw", top, "raw")
    assert not top.exists()


def test_full_copy_flattens_a_backing_chain(tmp_path: Path) -> None:
    base, mid, copy = tmp_path / "base.raw", tmp_path / "mid.qcow2", tmp_path / "copy.qcow2"
    _raw_with_data(base)
    overlay(base, mid, "raw")
    run.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 20M 1M", str(mid)])
    seen: list[int] = []
    created = full_copy(mid, copy, seen.append)
    info = _info(copy)
    assert info["format"] == "qcow2"
    assert "backing-filename" not in info  # independent of the base
    assert _same_content(mid, copy)
    assert seen[-1] == 32 * MiB
    remove_created(created)
    assert not copy.exists()


def test_full_copy_raw_stays_raw_and_sparse(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.raw", tmp_path / "dst.raw"
    payload = _raw_with_data(src, 256 * MiB)
    full_copy(src, dst, src_format="raw")
    assert probe(dst, "raw").size_bytes == 256 * MiB
    with open(dst, "rb") as fh:
        fh.seek(5 * MiB)
        assert fh.read(len(payload)) == payload
    assert dst.stat().st_blocks * 512 < 16 * MiB


def test_full_copy_refuses_existing_and_cleans_up_on_failure(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.raw", tmp_path / "dst.qcow2"
    _raw_with_data(src)
    dst.write_bytes(b"keep")
    with pytest.raises(Dom0Error, match="already exists"):
        full_copy(src, dst, dst_format="qcow2")
    assert dst.read_bytes() == b"keep"
    other = tmp_path / "other.img"
    with pytest.raises(Dom0Error, match="failed"):
        full_copy(src, other, dst_format="no-such-format")
    assert not other.exists()


@pytest.mark.skipif(
    not (run.available("qemu-storage-daemon") and Path("/dev/fuse").exists() and os.geteuid() == 0),
    reason="needs qemu-storage-daemon, /dev/fuse and root",
)
def test_raw_view_of_a_qcow2_reads_and_writes_through(tmp_path: Path) -> None:
    base, top = tmp_path / "base.raw", tmp_path / "clone.qcow2"
    payload = _raw_with_data(base)
    overlay(base, top, "raw")
    before = base.read_bytes()
    with raw_view(top) as view:
        assert view.stat().st_size == 32 * MiB
        with open(view, "r+b") as fh:
            fh.seek(5 * MiB)
            assert fh.read(len(payload)) == payload
            fh.seek(0)
            fh.write(b"EDITED")
    assert base.read_bytes() == before  # the edit went to the overlay, not its base
    out = run.output(["qemu-io", "-f", "qcow2", "-c", "read -P 0x45 0 1", str(top)])
    assert "Pattern verification failed" not in out
    assert not view.parent.exists()  # unmounted and cleaned up
    with raw_view(base, "raw") as same:
        assert same == base
