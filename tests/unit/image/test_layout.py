"""scan() on real images made by sfdisk, mkfs.*, mkswap and lvm2: every field, checked against what built them."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import imagebuild
import pytest
from imagebuild import Image, Images
from unitkit import dom0

from dom0.errors import Dom0Error
from dom0.image.layout import Layout, open_filesystem_source, scan
from dom0.image.probe import probe
from dom0.image.source import BytesSource, open_image

MiB = 1024 * 1024


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    return imagebuild.session_images(tmp_path_factory.getbasetemp() / "dom0-images")


def _scan(path: Path) -> Layout:
    with open_image(path) as src:
        return scan(src)


def _check(image: Image, layout: Layout) -> None:
    assert layout.partition_table == image.table
    assert layout.sector_size == 512
    by_number = {p.number: p for p in layout.partitions}
    assert sorted(by_number) == sorted(int(str(e["number"])) for e in image.partitions)
    for expected in image.partitions:
        p = by_number[int(str(expected["number"]))]
        for key, value in expected.items():
            if key == "filesystem":
                assert p.filesystem is value
            else:
                assert getattr(p, key) == value, (p, key)
    found = [(f.type, f.uuid, f.label, f.offset, f.location, f.version) for f in layout.filesystems]
    wanted = [(f.type, f.uuid, f.label, f.offset, f.location, f.version) for f in image.filesystems]
    if image.lvm:  # the PV's UUID is made by pvcreate: compare with blkid's instead
        pv = imagebuild.blkid(image.path, image.filesystems[0].offset)["UUID"]
        wanted[0] = ("LVM2_member", pv, "", *wanted[0][3:])
    assert found == wanted
    # Each filesystem is exactly where blkid (probing that offset itself) sees the same one.
    for fs in layout.filesystems:
        if not fs.location.startswith("logical volume"):
            seen = imagebuild.blkid(image.path, fs.offset)
            assert (seen.get("TYPE"), seen.get("UUID", ""), seen.get("LABEL", "")) == (fs.type, fs.uuid, fs.label)


@pytest.mark.parametrize("name", ["mbr63", "mbr2048", "extended", "gpt", "whole"])
def test_layouts_match_what_built_them(images: Images, name: str) -> None:
    image = getattr(images, name)
    _check(image, _scan(image.path))


def test_partition_fields_of_the_seed_layout(images: Images) -> None:
    p1, p2 = _scan(images.mbr63.path).partitions
    assert (p1.number, p1.start_sector, p1.size_bytes, p1.type, p1.bootable, p1.kind) == (
        1,
        63,
        40 * MiB,
        "0x83 Linux",
        True,
        "primary",
    )
    assert p1.filesystem is not None
    assert p1.filesystem.offset == 63 * 512
    assert p1.filesystem.size == 40 * MiB  # from the ext3 superblock: blocks * block size
    assert (p2.type, p2.bootable, p2.note) == ("0x82 Linux swap", False, "")


def test_logical_partitions_are_numbered_from_five(images: Images) -> None:
    layout = _scan(images.extended.path)
    assert [(p.number, p.kind) for p in layout.partitions] == [
        (1, "primary"),
        (2, "extended"),
        (5, "logical"),
        (6, "logical"),
    ]
    assert layout.partitions[1].filesystem is None
    assert layout.partitions[1].size_bytes == (131072 - 34816) * 512
    assert layout.notes == ()


def test_gpt_names_and_types(images: Images) -> None:
    layout = _scan(images.gpt.path)
    assert [p.type for p in layout.partitions] == [
        "BIOS boot",
        "Linux filesystem",
        "Linux swap",
        "EFI System",
        "Linux filesystem",
        "Linux filesystem",
    ]
    assert [p.name for p in layout.partitions][:2] == ["bios", "root"]
    # sfdisk's size is exact: the last sector of each partition counts (GPT's last LBA is inclusive).
    assert layout.partitions[4].size_bytes == 300 * MiB


def test_lvm_two_logical_volumes(images: Images) -> None:
    if images.lvm is None:
        pytest.skip(images.lvm_skip)
    image = images.lvm
    layout = _scan(image.path)
    _check(image, layout)
    (vg,) = layout.lvm
    expected = image.lvm[0]
    assert vg.name == expected["name"]
    assert vg.pvs == ("partition 1",)
    assert vg.uuid.count("-") == 6
    sizes = {lv.name: lv.size_bytes for lv in vg.lvs}
    assert sizes == expected["lvs"]
    root = next(lv for lv in vg.lvs if lv.name == "root")
    runs = expected["runs"]
    assert isinstance(runs, dict)
    # root was extended after swap was made: two runs of extents, mapped back to the offsets lvs reported.
    assert [(lv_off, img) for lv_off, _, img in root.segments] == runs["root"]
    assert root.note == ""
    with open_image(image.path) as src:
        assert root.filesystem is not None
        data = open_filesystem_source(src, layout, root.filesystem)
        assert data.size == 16 * MiB
        # The byte at 8 MiB inside the LV comes from the second run, not from right after the first.
        fs_file = image.path.parent / "lvroot"
        with fs_file.open("rb") as fh:
            fh.seek(8 * MiB)
            want = fh.read(4096)
        assert data.read_at(8 * MiB, 4096) == want


def test_qcow2_and_its_overlay_read_like_the_raw_image(images: Images) -> None:
    raw = _scan(images.mbr2048.path)
    for path in (images.qcow2, images.overlay):
        with open_image(path) as src:
            assert src.kind == "qcow2 image"
            assert src.size == 48 * MiB
            assert scan(src) == raw


def test_scan_is_fast(images: Images) -> None:
    start = time.perf_counter()
    for name in ("mbr63", "extended", "gpt"):
        _scan(getattr(images, name).path)
    assert time.perf_counter() - start < 0.5


def test_truncated_image_is_reported_not_raised(images: Images, tmp_path: Path) -> None:
    cut = tmp_path / "cut.img"
    shutil.copyfile(images.mbr63.path, cut)
    os.truncate(cut, 63 * 512 + 20 * MiB)  # half of partition 1 and none of partition 2
    layout = _scan(cut)
    p1, p2 = layout.partitions
    assert p1.filesystem is not None
    assert p1.filesystem.type == "ext3"
    assert "extends past the end of the image" in p1.note
    assert p2.filesystem is None
    assert "starts past the end of the image" in p2.note
    r = dom0("image", "inspect", str(cut))
    assert r.rc == 0
    assert "truncated image?" in r.out


def test_random_bytes_and_empty_give_an_empty_layout() -> None:
    for data in (b"", os.urandom(3 * 512), bytes(70000)):
        layout = scan(BytesSource(data))
        assert (layout.partition_table, layout.partitions, layout.filesystems, layout.lvm) == ("none", (), (), ())


def test_looping_extended_chain_stops_with_a_note() -> None:
    disk = bytearray(64 * 512)

    def entry(sector: bytearray, slot: int, code: int, start: int, count: int) -> None:
        off = 446 + 16 * slot
        sector[off + 4] = code
        sector[off + 8 : off + 16] = start.to_bytes(4, "little") + count.to_bytes(4, "little")

    mbr = bytearray(512)
    entry(mbr, 0, 0x05, 8, 50)
    mbr[510:512] = b"\x55\xaa"
    ebr1 = bytearray(512)
    entry(ebr1, 0, 0x83, 1, 4)
    entry(ebr1, 1, 0x05, 10, 10)  # next EBR at 8 + 10 = 18
    ebr1[510:512] = b"\x55\xaa"
    ebr2 = bytearray(512)
    entry(ebr2, 0, 0x83, 1, 4)
    entry(ebr2, 1, 0x05, 0, 10)  # back to the first EBR at 8: a loop
    ebr2[510:512] = b"\x55\xaa"
    disk[0:512], disk[8 * 512 : 9 * 512], disk[18 * 512 : 19 * 512] = mbr, ebr1, ebr2
    start = time.perf_counter()
    layout = scan(BytesSource(bytes(disk)))
    assert time.perf_counter() - start < 0.1
    assert [(p.number, p.start_sector) for p in layout.partitions] == [(1, 8), (5, 9), (6, 19)]
    assert any("loops back to sector 8" in n for n in layout.notes)


def test_missing_partition_and_lv_names_say_what_exists(images: Images) -> None:
    layout = _scan(images.extended.path)
    with pytest.raises(Dom0Error, match=r"no partition 3 \(partitions: 1, 2, 5, 6\)"):
        layout.partition(3)
    with pytest.raises(Dom0Error, match="no logical volume vg/root"):
        layout.logical_volume("vg/root")


def test_inspect_json_keys(images: Images) -> None:
    r = dom0("image", "inspect", "--json", str(images.extended.path))
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    assert doc["partition_table"] == "mbr"
    assert doc["format"] == "raw image"
    assert doc["size_bytes"] == 64 * MiB
    assert doc["operating_systems"] == []
    p5 = doc["partitions"][2]
    assert p5 == {
        "number": 5,
        "start_sector": 36864,
        "size_bytes": 24 * MiB,
        "type": "0x83 Linux",
        "bootable": False,
        "kind": "logical",
        "name": "",
        "filesystem": "ext4",
        "uuid": imagebuild._u(6),
        "label": "five",
        "note": "",
    }
    assert doc["filesystems"][2] == {
        "type": "swap",
        "uuid": imagebuild._u(7),
        "label": "six",
        "version": "1",
        "location": "partition 6",
        "offset": 88064 * 512,
        "size_bytes": 8 * MiB,
    }
    assert doc["lvm"] == []


def test_inspect_json_lvm(images: Images) -> None:
    if images.lvm is None:
        pytest.skip(images.lvm_skip)
    doc = json.loads(dom0("image", "inspect", "--json", str(images.lvm.path)).out)
    (vg,) = doc["lvm"]
    assert vg["name"] == images.lvm.lvm[0]["name"]
    assert vg["pvs"] == ["partition 1"]
    lvs = {lv["name"]: lv for lv in vg["lvs"]}
    assert lvs["root"]["filesystem"] == "ext4"
    assert lvs["root"]["label"] == "lvroot"
    assert lvs["root"]["size_bytes"] == 16 * MiB
    assert len(lvs["root"]["segments"]) == 2
    assert lvs["swap"]["filesystem"] == "swap"
    assert lvs["swap"]["uuid"] == imagebuild._u(15)
    assert [f["location"] for f in doc["filesystems"]][1:] == [
        f"logical volume {vg['name']}/root",
        f"logical volume {vg['name']}/swap",
    ]


def test_inspect_human_summary(images: Images) -> None:
    r = dom0("image", "inspect", str(images.mbr63.path))
    assert r.rc == 0, r.err
    lines = r.out.splitlines()
    assert lines[0] == f"{images.mbr63.path}: 64.0 MiB raw image, MBR partition table"
    assert lines[1].split() == [
        "1",
        "start",
        "63",
        "40.0",
        "MiB",
        "0x83",
        "Linux",
        "ext3",
        '"root"',
        imagebuild._u(1),
        "(bootable)",
    ]
    assert lines[2].split()[:6] == ["2", "start", "81983", "16.0", "MiB", "0x82"]


def test_inspect_whole_disk_and_errors(images: Images, tmp_path: Path) -> None:
    r = dom0("image", "inspect", str(images.whole.path))
    assert "no partition table" in r.out
    assert f'ext4 "whole" {imagebuild._u(13)}' in r.out
    r = dom0("image", "inspect", str(tmp_path / "nope.img"))
    assert (r.rc, r.out) == (1, "")
    assert r.err.startswith("dom0: error: ")
    assert "no such file" in r.err
    assert "hint:" in r.err


def test_probe_of_whole_disk_matches_scan(images: Images) -> None:
    with open_image(images.whole.path) as src:
        fs = probe(src)
        assert fs is not None
        assert scan(src).filesystems == (fs.__class__(**{**fs.__dict__, "location": "whole disk"}),)


def test_inspect_names_the_operating_system_on_the_seed_layout(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "boot").mkdir()
    (tree / "etc" / "fedora-release").write_text("Fedora Core release 5 (Bordeaux)\n")
    (tree / "etc" / "redhat-release").write_text("Fedora Core release 5 (Bordeaux)\n")
    (tree / "etc" / "hostname").write_text("fc5guest\n")
    (tree / "boot" / "vmlinuz-2.6.15-1.2054_FC5").write_bytes(b"kernel")
    fs = imagebuild.mkfs("ext3", tmp_path / "fs.img", 16 * MiB, imagebuild._u(50), "root", tree=tree)
    disk = tmp_path / "disk.img"
    assert dom0("image", "wrap", str(fs), "-o", str(disk), "--start-sector", "63").rc == 0
    r = dom0("image", "inspect", str(disk))
    assert r.rc == 0, r.err
    line = "  operating system on partition 1: Fedora Core 5 (fedora5), rpm, yum: use rpm/yum, not dpkg/apt-get"
    assert line in r.out
    doc = json.loads(dom0("image", "inspect", "--json", str(disk)).out)
    (system,) = doc["operating_systems"]
    assert (system["distro"], system["version"], system["package_format"]) == ("fedora", "5", "rpm")
    assert system["hostname"] == "fc5guest"
    assert system["kernels"][0]["kernel"] == "/boot/vmlinuz-2.6.15-1.2054_FC5"
