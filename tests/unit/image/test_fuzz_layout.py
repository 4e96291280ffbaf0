"""Damaged images never crash or hang scan(): mutated MBR/EBR/GPT, superblocks, LVM labels and metadata, truncation
and random bytes give a Layout or a one-line Dom0Error, each within a second. Also the synthetic LVM PV's mapping."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unitkit import dom0

from dom0.errors import Dom0Error
from dom0.image.extract import Plan, partition_table
from dom0.image.layout import Layout, open_filesystem_source, scan
from dom0.image.probe import Filesystem, probe
from dom0.image.source import BytesSource

SIZE = 512 * 1024
KiB = 1024


def _entry(sector: bytearray, slot: int, code: int, start: int, count: int, *, boot: int = 0) -> None:
    off = 446 + 16 * slot
    sector[off] = boot
    sector[off + 4] = code
    sector[off + 8 : off + 16] = struct.pack("<II", start, count)
    sector[510:512] = b"\x55\xaa"


def _ext(disk: bytearray, at: int, uuid: bytes) -> None:
    sb = at + 1024
    struct.pack_into("<II", disk, sb, 16, 64)  # inodes, blocks
    struct.pack_into("<I", disk, sb + 0x18, 0)  # 1 KiB blocks
    struct.pack_into("<H", disk, sb + 0x38, 0xEF53)
    struct.pack_into("<III", disk, sb + 0x5C, 4, 0x2C2, 3)  # journal, extents+64bit+flex_bg
    disk[sb + 0x68 : sb + 0x78] = uuid
    disk[sb + 0x78 : sb + 0x7C] = b"root"


def mbr_disk() -> bytes:
    """Primary 1 (ext4), extended 2 with logicals 5 (ext4) and 6 (swap)."""
    disk = bytearray(SIZE)
    mbr = bytearray(512)
    _entry(mbr, 0, 0x83, 8, 120, boot=0x80)
    _entry(mbr, 1, 0x05, 128, 800)
    disk[0:512] = mbr
    ebr1, ebr2 = bytearray(512), bytearray(512)
    _entry(ebr1, 0, 0x83, 8, 200)
    _entry(ebr1, 1, 0x05, 300, 400)
    _entry(ebr2, 0, 0x82, 8, 200)
    disk[128 * 512 : 129 * 512] = ebr1
    disk[428 * 512 : 429 * 512] = ebr2
    _ext(disk, 8 * 512, b"\x11" * 16)
    _ext(disk, 136 * 512, b"\x22" * 16)
    swap = 436 * 512
    disk[swap + 4086 : swap + 4096] = b"SWAPSPACE2"
    struct.pack_into("<II", disk, swap + 1024, 1, 24)
    return bytes(disk)


def gpt_disk() -> bytes:
    """A GPT made by wrap's own table writer, with an ext4 superblock in partition 1."""
    fs = Filesystem("ext4", "", "", 0, 100 * KiB, "")
    plan = Plan("wrap", "", "", (), 100 * KiB, "", 64 * 512, SIZE, fs, "gpt", 64)
    disk = bytearray(SIZE)
    for offset, data in partition_table(plan):
        disk[offset : offset + len(data)] = data
    _ext(disk, 64 * 512, b"\x33" * 16)
    return bytes(disk)


LVM_TEXT = b"""vg0 {
id = "vgvgvg-1111-2222-3333-4444-5555-666666"
seqno = 3
status = ["RESIZEABLE", "READ", "WRITE"]
extent_size = 64
physical_volumes {
pv0 {
id = "AbCdEf-1234-5678-90Ab-CdEf-1234-567890"
pe_start = 128
pe_count = 10
}
}
logical_volumes {
root {
id = "lvlvlv-1111-2222-3333-4444-5555-666666"
status = ["READ", "WRITE", "VISIBLE"]
segment_count = 2
segment1 {
start_extent = 0
extent_count = 1
type = "striped"
stripe_count = 1
stripes = [
"pv0", 2
]
}
segment2 {
start_extent = 1
extent_count = 1
type = "striped"
stripe_count = 1
stripes = [
"pv0", 0
]
}
}
}
}
"""


def lvm_disk(text: bytes = LVM_TEXT) -> bytes:
    """A whole-disk PV (64 KiB pe_start, 32 KiB extents) with LV root whose two extents are stored swapped."""
    disk = bytearray(SIZE)
    label = 512
    disk[label : label + 8] = b"LABELONE"
    struct.pack_into("<QII", disk, label + 8, 1, 0, 32)
    disk[label + 24 : label + 32] = b"LVM2 001"
    disk[label + 32 : label + 64] = b"AbCdEf1234567890AbCdEf1234567890"
    struct.pack_into("<Q", disk, label + 64, SIZE)
    struct.pack_into("<QQQQ", disk, label + 72, 64 * KiB, 0, 0, 0)  # data area, end of list
    struct.pack_into("<QQQQ", disk, label + 104, 4096, 60 * KiB, 0, 0)  # metadata area, end
    mda = 4096
    disk[mda + 4 : mda + 20] = b" LVM2 x[5A%r0N*>"
    struct.pack_into("<IQQ", disk, mda + 20, 1, mda, 60 * KiB)
    struct.pack_into("<QQII", disk, mda + 40, 512, len(text), zlib.crc32(text), 0)
    disk[mda + 512 : mda + 512 + len(text)] = text
    extent = 32 * KiB
    first_pe = 64 * KiB
    # LV extent 0 lives on PV extent 2, LV extent 1 on PV extent 0: an ext4 superblock at LV offset 0.
    lv0 = bytearray(extent)
    _ext(lv0, 0, b"\x44" * 16)
    disk[first_pe + 2 * extent : first_pe + 3 * extent] = lv0
    disk[first_pe : first_pe + extent] = b"second extent".ljust(extent, b"\0")
    return bytes(disk)


SEEDS = {"mbr": mbr_disk(), "gpt": gpt_disk(), "lvm": lvm_disk()}
# Where the structures are, so mutations land where parsers look rather than in empty space.
HOT = {
    "mbr": [(0, 512), (128 * 512, 129 * 512), (428 * 512, 429 * 512), (8 * 512 + 1024, 8 * 512 + 1400)],
    "gpt": [(0, 512), (512, 1024), (1024, 2048), (SIZE - 512, SIZE), (64 * 512 + 1024, 64 * 512 + 1400)],
    "lvm": [(512, 1024), (4096, 4096 + 600), (4096 + 512, 4096 + 512 + len(LVM_TEXT)), (128 * KiB, 128 * KiB + 1400)],
}


def _scan_bounded(data: bytes) -> Layout | None:
    start = time.perf_counter()
    message = ""
    layout: Layout | None = None
    try:
        layout = scan(BytesSource(data, "fuzz.img"))
    except Dom0Error as exc:
        message = exc.message
    assert time.perf_counter() - start < 1.0
    assert "\n" not in message
    return layout


def test_seeds_read_as_built() -> None:
    mbr = scan(BytesSource(SEEDS["mbr"]))
    assert [(p.number, p.start_sector, p.kind) for p in mbr.partitions] == [
        (1, 8, "primary"),
        (2, 128, "extended"),
        (5, 136, "logical"),
        (6, 436, "logical"),
    ]
    assert [f.type for f in mbr.filesystems] == ["ext4", "ext4", "swap"]
    gpt = scan(BytesSource(SEEDS["gpt"]))
    assert gpt.partition_table == "gpt"
    assert gpt.notes == ()
    assert [(p.number, p.start_sector, p.type) for p in gpt.partitions] == [(1, 64, "Linux filesystem")]


def test_synthetic_lvm_maps_extents_through_the_metadata() -> None:
    src = BytesSource(SEEDS["lvm"])
    layout = scan(src)
    (vg,) = layout.lvm
    assert (vg.name, vg.pvs) == ("vg0", ("whole disk",))
    (root,) = vg.lvs
    assert root.segments == ((0, 32 * KiB, 64 * KiB + 64 * KiB), (32 * KiB, 32 * KiB, 64 * KiB))
    assert root.filesystem is not None
    assert root.filesystem.uuid == "44444444-4444-4444-4444-444444444444"
    data = open_filesystem_source(src, layout, root.filesystem)
    assert data.read_at(32 * KiB, 13) == b"second extent"
    assert probe(data) is not None


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 24))):
        lo, hi = draw(st.sampled_from(HOT[name]))
        pos = draw(st.integers(lo, hi - 1))
        if draw(st.booleans()):
            data[pos] = draw(st.integers(0, 255))
        else:  # a whole field: a 32-bit value such as a start sector, count, offset or size
            value = draw(st.sampled_from([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 128, 0x80000000, 2, 63, 2048]))
            data[pos : pos + 4] = struct.pack("<I", value)[: len(data) - pos]
    cut = draw(st.one_of(st.just(len(data)), st.integers(0, len(data))))
    return bytes(data[:cut])


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_tables_and_superblocks(data: bytes) -> None:
    _scan_bounded(data)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=70000))
def test_random_bytes(data: bytes) -> None:
    _scan_bounded(data)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_mutated_lvm_metadata_text(data: st.DataObject) -> None:
    text = bytearray(LVM_TEXT)
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(text) - 1))
        text[pos] = data.draw(st.sampled_from(list(b'{}[]="\n,0123456789x -')))
    disk = bytearray(SEEDS["lvm"])
    disk[4096 + 512 : 4096 + 512 + len(text)] = text
    _scan_bounded(bytes(disk))


def _segment(n: int, start: int, count: int, pv_extent: int) -> str:
    return (
        f'segment{n} {{\nstart_extent = {start}\nextent_count = {count}\ntype = "striped"\nstripe_count = 1\n'
        f'stripes = [\n"pv0", {pv_extent}\n]\n}}\n'
    )


def _lv(name: str, segments: list[tuple[int, int, int]]) -> str:
    body = "".join(_segment(i + 1, *seg) for i, seg in enumerate(segments))
    return f'{name} {{\nid = "{name}-1111-2222-3333-4444-5555-666666"\nsegment_count = {len(segments)}\n{body}}}\n'


def _with_lvs(*lvs: str) -> bytes:
    head, _, _ = LVM_TEXT.decode().partition("logical_volumes {")
    return f"{head}logical_volumes {{\n{''.join(lvs)}}}\n}}\n".encode()


@pytest.mark.parametrize(
    ("lvs", "message"),
    [
        # 20 segments over the same PV extent: a 512 KiB image read as a 640 KiB LV of one extent copied 20 times
        ([_lv("root", [(i, 1, 2) for i in range(20)])], "logical volume vg0/root: extent 2 of pv0 is mapped twice"),
        ([_lv("root", [(0, 2, 0), (1, 1, 5)])], "logical volume vg0/root: segments overlap at extent 1"),
        (
            [_lv("root", [(0, 2, 2)]), _lv("data", [(0, 1, 3)])],
            "logical volume vg0/root and vg0/data: extent 3 of pv0 is mapped twice",
        ),
        ([_lv("root", [(0, 1, 2), (100000, 1, 4)])], "logical volume vg0/root is 3276832768 bytes, more than"),
    ],
)
def test_overlapping_or_oversized_lvs_are_refused(tmp_path: Path, lvs: list[str], message: str) -> None:
    disk = tmp_path / "lvm.img"
    disk.write_bytes(lvm_disk(_with_lvs(*lvs)))
    for args in (("inspect",), ("extract", "--lv", "vg0/root", "-o", str(tmp_path / "out.img"))):
        result = dom0("image", args[0], str(disk), *args[1:])
        assert result.rc == 1, result
        assert result.err.splitlines()[0].startswith(f"dom0: error: {message}"), result.err
        assert "LVM metadata is damaged" in result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lvm.img"]


def test_well_formed_lvs_built_by_the_same_text_still_read() -> None:
    layout = scan(BytesSource(lvm_disk(_with_lvs(_lv("root", [(0, 1, 2), (1, 1, 0)]), _lv("data", [(0, 2, 3)])))))
    (vg,) = layout.lvm
    assert [(lv.name, lv.size_bytes) for lv in vg.lvs] == [("root", 64 * KiB), ("data", 64 * KiB)]
