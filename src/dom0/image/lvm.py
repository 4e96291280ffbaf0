"""LVM2 physical volumes: the label and metadata area read with bounds checks, the text parsed by dissect.volume.

dissect's own LVM2Device reads descriptor lists until it meets zeros and trusts the metadata size it finds, which on a
damaged PV can mean reading the whole disk; so the binary framing is read here and only the text goes to dissect.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from typing import Any

from dom0.errors import Dom0Error
from dom0.image.source import ImageSource

SECTOR = 512
# LVM's default metadata area is 1 MiB; the text inside is far smaller. Anything larger is damage.
MAX_METADATA = 4 * 1024 * 1024
MAX_DESCRIPTORS = 16


@dataclass(frozen=True)
class PhysicalVolume:
    """One PV found on the image: its UUID (without dashes), where its bytes start, and its VG's metadata."""

    uuid: str
    offset: int
    size: int
    metadata: dict[str, Any] | None


@dataclass(frozen=True)
class Segment:
    """A linear run of an LV: `extents` extents starting at `start_extent` of the LV, on `pv` at `pv_extent`."""

    start_extent: int
    extents: int
    pv: str
    pv_extent: int


@dataclass(frozen=True)
class VolumeInfo:
    """An LV as its VG's metadata describes it."""

    name: str
    uuid: str
    extents: int
    segments: tuple[Segment, ...]
    kind: str


@dataclass(frozen=True)
class GroupInfo:
    """A VG as its metadata describes it: PVs by metadata name → (PV UUID, pe_start in sectors)."""

    name: str
    uuid: str
    seqno: int
    extent_size: int
    pvs: dict[str, tuple[str, int]]
    lvs: tuple[VolumeInfo, ...]


def read_pv(source: ImageSource, offset: int) -> PhysicalVolume | None:
    """The PV whose label is in the first four sectors of source[offset:], or None if there is none."""
    head = source.read_at(offset, 4 * SECTOR)
    for sector in range(4):
        label = head[sector * SECTOR : (sector + 1) * SECTOR]
        if len(label) == SECTOR and label[:8] == b"LABELONE" and label[24:32] == b"LVM2 001":
            break
    else:
        return None
    hdr = struct.unpack_from("<I", label, 20)[0]
    if hdr < 32 or hdr + 40 > SECTOR:
        return None
    uuid = label[hdr : hdr + 32].decode("ascii", errors="replace")
    dev_size = struct.unpack_from("<Q", label, hdr + 32)[0]
    # Two zero-terminated lists follow: data areas, then metadata areas (offset, size pairs).
    pos = hdr + 40
    lists: list[list[tuple[int, int]]] = []
    for _ in range(2):
        items: list[tuple[int, int]] = []
        while pos + 16 <= SECTOR and len(items) < MAX_DESCRIPTORS:
            off, size = struct.unpack_from("<QQ", label, pos)
            pos += 16
            if off == 0 and size == 0:
                break
            items.append((off, size))
        lists.append(items)
    metadata = None
    for mda_off, mda_size in lists[1] if len(lists) > 1 else []:
        metadata = _read_metadata(source, offset, mda_off, mda_size)
        if metadata is not None:
            break
    return PhysicalVolume(uuid=uuid, offset=offset, size=dev_size, metadata=metadata)


def _read_metadata(source: ImageSource, pv_offset: int, mda_off: int, mda_size: int) -> dict[str, Any] | None:
    header = source.read_at(pv_offset + mda_off, SECTOR)
    if len(header) < 64 or header[4:20] != b" LVM2 x[5A%r0N*>":
        return None
    # raw_locn entries: offset (from the mda start), size, checksum, flags; the first live one holds the text.
    pos = 40
    while pos + 24 <= len(header):
        off, size, _crc, flags = struct.unpack_from("<QQII", header, pos)
        pos += 24
        if off == 0 and size == 0:
            return None
        if flags & 1:  # RAW_LOCN_IGNORED
            continue
        if size > MAX_METADATA or off >= mda_size:
            return None
        text = source.read_at(pv_offset + mda_off + off, size)
        if off + size > mda_size:  # the text wraps around to just after the mda header
            text = text[: mda_size - off] + source.read_at(pv_offset + mda_off + SECTOR, off + size - mda_size)
        return parse_metadata_text(text.rstrip(b"\0").decode("utf-8", errors="replace"))
    return None


def parse_metadata_text(text: str) -> dict[str, Any] | None:
    """LVM's metadata text as a dict (dissect.volume's parser); None when it is not valid metadata."""
    from dissect.volume.lvm.physical import parse_metadata

    try:
        parsed: Any = parse_metadata(text)
    except Exception:  # its parser is written for valid metadata; damaged text raises many kinds of error
        return None
    return parsed if isinstance(parsed, dict) else None


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(value)
    return value


def group_info(metadata: dict[str, Any]) -> GroupInfo | None:
    """The VG described by parsed metadata, keeping only what can be read (linear and 1-stripe segments)."""
    groups = [(k, v) for k, v in metadata.items() if isinstance(v, dict)]
    if len(groups) != 1:
        return None
    name, vg = groups[0]
    try:
        extent_size = _int(vg.get("extent_size"))
        pvs: dict[str, tuple[str, int]] = {}
        for pv_name, pv in (vg.get("physical_volumes") or {}).items():
            if isinstance(pv, dict):
                pvs[str(pv_name)] = (str(pv.get("id", "")).replace("-", ""), _int(pv.get("pe_start", 0)))
        lvs: list[VolumeInfo] = []
        for lv_name, lv in (vg.get("logical_volumes") or {}).items():
            if not isinstance(lv, dict):
                continue
            segments: list[Segment] = []
            kinds: set[str] = set()
            total = 0
            for seg in lv.values():
                if not isinstance(seg, dict):
                    continue
                kind = str(seg.get("type", ""))
                kinds.add(kind)
                start, count = _int(seg.get("start_extent", 0)), _int(seg.get("extent_count", 0))
                total = max(total, start + count)
                stripes = seg.get("stripes")
                if kind in ("striped", "linear") and isinstance(stripes, list) and len(stripes) == 2:
                    segments.append(Segment(start, count, str(stripes[0]), _int(stripes[1])))
            lvs.append(
                VolumeInfo(
                    name=str(lv_name),
                    uuid=str(lv.get("id", "")),
                    extents=total,
                    segments=tuple(sorted(segments, key=lambda s: s.start_extent)),
                    kind="linear" if kinds <= {"striped", "linear"} else ",".join(sorted(kinds)),
                )
            )
        return GroupInfo(
            name=str(name),
            uuid=str(vg.get("id", "")),
            seqno=_int(vg.get("seqno", 0)),
            extent_size=extent_size,
            pvs=pvs,
            lvs=tuple(lvs),
        )
    except (ValueError, TypeError, AttributeError):
        return None


def check_mapping(info: GroupInfo) -> None:
    """Refuse metadata that maps an LV extent twice or a PV extent to two places: LVM never writes that, and
    a few overlapping segments would turn a small image into a large copy of the same bytes."""
    hint = "the LVM metadata is damaged (vgcfgrestore restores an older copy); dom0 will not read this VG"
    owners: list[tuple[str, int, int, str]] = []  # (pv, first extent, end, LV)
    for lv in info.lvs:
        end = 0
        for seg in sorted(lv.segments, key=lambda s: s.start_extent):
            if seg.start_extent < end:
                raise Dom0Error(
                    f"logical volume {info.name}/{lv.name}: segments overlap at extent {seg.start_extent}", hint
                )
            end = seg.start_extent + seg.extents
            if seg.extents:
                owners.append((seg.pv, seg.pv_extent, seg.pv_extent + seg.extents, lv.name))
    owners.sort()
    for (pv, _, end, name), (next_pv, start, _, other) in itertools.pairwise(owners):
        if pv == next_pv and start < end:
            both = name if name == other else f"{name} and {info.name}/{other}"
            raise Dom0Error(f"logical volume {info.name}/{both}: extent {start} of {pv} is mapped twice", hint)
