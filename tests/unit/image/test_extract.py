"""`dom0 image extract` and `wrap` on real images: the result is the same filesystem (checked with e2fsck, blkid and
sfdisk), sparse, never written over an existing file, and no partial file survives a failure."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import imagebuild
import pytest
from imagebuild import Images
from unitkit import dom0

from dom0 import run
from dom0.errors import Dom0Error
from dom0.image import extract as extract_mod
from dom0.image.extract import extract, plan_extract
from dom0.image.layout import scan
from dom0.image.source import open_image

MiB = 1024 * 1024


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    return imagebuild.session_images(tmp_path_factory.getbasetemp() / "dom0-images")


def _fsck(path: Path) -> None:
    run.run(["e2fsck", "-fn", str(path)])


def _hostname(path: Path) -> str:
    return run.output(["debugfs", "-R", "cat /etc/hostname", str(path)]).strip()


def test_extract_the_seed_partition_at_63(images: Images, tmp_path: Path) -> None:
    out = tmp_path / "root.img"
    r = dom0("image", "extract", str(images.mbr63.path), "--partition", "1", "-o", str(out))
    assert r.rc == 0, r.err
    assert "verified" in r.out
    assert out.stat().st_size == 40 * MiB
    assert imagebuild.blkid(out, 0)["UUID"] == imagebuild._u(1)
    _fsck(out)
    assert _hostname(out) == "imagebuild"
    # sparse: the mostly-empty filesystem takes far less disk than its size
    assert out.stat().st_blocks * 512 < 4 * MiB
    assert not (tmp_path / "root.img.partial").exists()


def test_refuses_to_overwrite(images: Images, tmp_path: Path) -> None:
    out = tmp_path / "keep.img"
    out.write_bytes(b"precious")
    r = dom0("image", "extract", str(images.mbr63.path), "--partition", "1", "-o", str(out))
    assert r.rc == 1
    assert r.out == ""
    assert "already exists; not overwriting it" in r.err
    assert "hint:" in r.err
    assert out.read_bytes() == b"precious"


def test_logical_partition_and_lv_with_two_extent_runs(images: Images, tmp_path: Path) -> None:
    out = tmp_path / "five.img"
    assert dom0("image", "extract", str(images.extended.path), "--partition", "5", "-o", str(out)).rc == 0
    assert imagebuild.blkid(out, 0)["LABEL"] == "five"
    _fsck(out)
    if images.lvm is None:
        pytest.skip(images.lvm_skip)
    vg = images.lvm.lvm[0]["name"]
    lv_out = tmp_path / "lvroot.img"
    r = dom0("image", "extract", str(images.lvm.path), "--lv", f"{vg}/root", "-o", str(lv_out), "--json")
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    assert doc["what"] == f"logical volume {vg}/root"
    assert len(doc["source_ranges"]) == 2
    assert doc["verified"] is True
    _fsck(lv_out)  # only right if the second run of extents landed at 8 MiB
    assert _hostname(lv_out) == "imagebuild"


def test_extract_from_qcow2_overlay(images: Images, tmp_path: Path) -> None:
    out = tmp_path / "q.img"
    assert dom0("image", "extract", str(images.overlay), "--partition", "1", "-o", str(out)).rc == 0
    assert imagebuild.blkid(out, 0)["UUID"] == imagebuild._u(3)
    _fsck(out)


def test_dry_run_writes_nothing_and_says_the_plan(images: Images, tmp_path: Path) -> None:
    out = tmp_path / "plan.img"
    r = dom0("image", "extract", str(images.mbr63.path), "--partition", "2", "-o", str(out), "--dry-run", "--json")
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    assert doc["dry_run"] is True
    assert doc["verified"] is False
    assert doc["written_bytes"] is None
    assert doc["source_ranges"] == [{"offset": 81983 * 512, "size_bytes": 16 * MiB}]
    assert doc["target"] == str(out)
    assert doc["size_bytes"] == 16 * MiB
    assert doc["filesystem"]["type"] == "swap"
    assert doc["filesystem"]["uuid"] == imagebuild._u(2)
    assert not out.exists()
    text = dom0("image", "extract", str(images.mbr63.path), "--partition", "2", "-o", str(out), "--dry-run").out
    assert f"bytes {81983 * 512}-{81983 * 512 + 16 * MiB - 1}" in text


def test_errors_are_one_line_with_a_hint(images: Images, tmp_path: Path) -> None:
    out = str(tmp_path / "x.img")
    cases = [
        (["--partition", "2"], "is the extended partition"),
        (["--partition", "7"], "there is no partition 7 (partitions: 1, 2, 5, 6)"),
        (["--lv", "vg0/root"], "no logical volume vg0/root"),
    ]
    for extra, message in cases:
        r = dom0("image", "extract", str(images.extended.path), *extra, "-o", out)
        assert r.rc == 1, r
        assert r.err.splitlines()[0] == f"dom0: error: {r.err.splitlines()[0][13:]}"
        assert message in r.err
        assert r.err.splitlines()[1].strip().startswith("hint:")
        assert "Traceback" not in r.err
    r = dom0("image", "extract", str(images.gpt.path), "--partition", "1", "-o", out)
    assert r.rc == 1
    assert "holds no filesystem dom0 recognises" in r.err
    r = dom0("image", "extract", str(images.gpt.path), "-o", out)
    assert r.rc == 2  # argparse: one of --partition / --lv is required
    assert not Path(out).exists()


def test_truncated_partition_is_refused(images: Images, tmp_path: Path) -> None:
    cut = tmp_path / "cut.img"
    shutil.copyfile(images.mbr63.path, cut)
    os.truncate(cut, 63 * 512 + 20 * MiB)
    r = dom0("image", "extract", str(cut), "--partition", "1", "-o", str(tmp_path / "o.img"))
    assert r.rc == 1
    assert "outside the image" in r.err
    assert "truncated" in r.err
    assert list(tmp_path.iterdir()) == [cut]


def test_failed_verification_removes_the_partial_file(
    images: Images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bad.img"
    monkeypatch.setattr(extract_mod, "probe", lambda _src: None)
    with open_image(images.mbr63.path) as src:
        plan, data = plan_extract(src, scan(src), out, partition=1)
        with pytest.raises(Dom0Error, match="verification failed"):
            extract(plan, data)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("table", ["mbr", "gpt"])
def test_wrap_round_trip(images: Images, tmp_path: Path, table: str) -> None:
    fs = tmp_path / "fs.img"
    assert dom0("image", "extract", str(images.mbr63.path), "--partition", "1", "-o", str(fs)).rc == 0
    disk = tmp_path / "disk.img"
    r = dom0("image", "wrap", str(fs), "-o", str(disk), "--table", table, "--json")
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    assert (doc["table"], doc["start_sector"], doc["verified"]) == (table, 2048, True)
    dump = run.output(["sfdisk", "-d", str(disk)])
    assert f"label: {'dos' if table == 'mbr' else 'gpt'}" in dump
    assert "start=        2048, size=       81920" in dump
    assert ("type=83" if table == "mbr" else "type=0FC63DAF-8483-4772-8E79-3D69D8477DE4") in dump
    run.run(["sfdisk", "-V", str(disk)])  # sfdisk's own consistency check (GPT CRCs, backup header)
    assert imagebuild.blkid(disk, 2048 * 512)["UUID"] == imagebuild._u(1)
    assert disk.stat().st_blocks * 512 < 4 * MiB


def test_wrap_swap_gets_a_swap_partition_and_refuses_tables(images: Images, tmp_path: Path) -> None:
    swap = imagebuild.mkfs("swap", tmp_path / "swap.img", 8 * MiB, imagebuild._u(99), "")
    disk = tmp_path / "swapdisk.img"
    assert dom0("image", "wrap", str(swap), "-o", str(disk), "--start-sector", "63").rc == 0
    assert "start=          63, size=       16384, type=82" in run.output(["sfdisk", "-d", str(disk)])
    r = dom0("image", "wrap", str(images.mbr2048.path), "-o", str(tmp_path / "again.img"))
    assert r.rc == 1
    assert "already has an MBR partition table" in r.err
    r = dom0("image", "wrap", str(swap), "-o", str(tmp_path / "g.img"), "--table", "gpt", "--start-sector", "2")
    assert r.rc == 1
    assert "not possible with GPT" in r.err
    assert not (tmp_path / "g.img").exists()
    assert not (tmp_path / "again.img").exists()
