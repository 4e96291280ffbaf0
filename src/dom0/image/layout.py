"""What a disk image holds: its partition table, partitions, filesystems and LVM volume groups, read as bytes.

`scan` never mounts, never needs root for an image file, and turns damage (truncation, tables pointing past the
end, looping extended chains, random bytes) into notes on the Layout or a one-line Dom0Error.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from dom0.errors import Dom0Error
from dom0.image import tables
from dom0.image.probe import Filesystem, probe
from dom0.image.source import ImageSource, MappedSource

if TYPE_CHECKING:
    from dom0.image import lvm

__all__ = [
    "Filesystem",
    "Layout",
    "LogicalVolume",
    "Partition",
    "VolumeGroup",
    "open_filesystem_source",
    "scan",
]

# Filesystems whose first sector looks like an MBR (boot sector with 0x55AA) but which are no partition table.
_BOOT_SECTOR_FILESYSTEMS = ("vfat", "ntfs")


@dataclass(frozen=True)
class Partition:
    """A partition: Linux `number` (logical ones from 5), `start_sector` in the table's sector size, `type` as
    fdisk names it ("0x83 Linux", "Linux filesystem"), the filesystem found in it; `kind` is primary, extended,
    logical or gpt; `name` the GPT partition name; `note` what is wrong with it, if anything."""

    number: int
    start_sector: int
    size_bytes: int
    type: str
    bootable: bool
    filesystem: Filesystem | None
    kind: str = "primary"
    name: str = ""
    note: str = ""


@dataclass(frozen=True)
class LogicalVolume:
    """An LVM logical volume; `segments` are (offset in the LV, length, offset in the image), all in bytes."""

    vg: str
    name: str
    size_bytes: int
    filesystem: Filesystem | None
    segments: tuple[tuple[int, int, int], ...]
    uuid: str = ""
    note: str = ""


@dataclass(frozen=True)
class VolumeGroup:
    """An LVM volume group: `pvs` are where its physical volumes lie ("partition 2"), or "missing <uuid>"."""

    name: str
    uuid: str
    pvs: tuple[str, ...]
    lvs: tuple[LogicalVolume, ...]


@dataclass(frozen=True)
class Layout:
    """Everything scan found; `filesystems` lists every filesystem in order: whole disk, partitions, LVs."""

    partition_table: str
    sector_size: int
    partitions: tuple[Partition, ...]
    filesystems: tuple[Filesystem, ...]
    lvm: tuple[VolumeGroup, ...]
    size: int = 0
    notes: tuple[str, ...] = ()

    def partition(self, number: int) -> Partition:
        """The partition with this number, or a Dom0Error naming the ones there are."""
        for p in self.partitions:
            if p.number == number:
                return p
        have = ", ".join(str(p.number) for p in self.partitions) or "none"
        raise Dom0Error(f"there is no partition {number} (partitions: {have})", "see dom0 image inspect")

    def logical_volume(self, spec: str) -> LogicalVolume:
        """The LV named "VG/LV" (or "LV" when only one VG has it), or a Dom0Error naming the ones there are."""
        vg_name, _, lv_name = spec.rpartition("/")
        matches = [lv for vg in self.lvm for lv in vg.lvs if lv.name == lv_name and vg_name in ("", lv.vg)]
        if len(matches) == 1:
            return matches[0]
        have = ", ".join(f"{lv.vg}/{lv.name}" for vg in self.lvm for lv in vg.lvs) or "none"
        if matches:
            raise Dom0Error(f"{spec} names more than one logical volume ({have})", "give it as VG/LV")
        raise Dom0Error(f"there is no logical volume {spec} (logical volumes: {have})", "see dom0 image inspect")


def _probe_range(source: ImageSource, offset: int, size: int, location: str) -> tuple[Filesystem | None, str]:
    """The filesystem in [offset, offset+size) of `source`, and a note if that range is cut short by the image end."""
    if offset >= source.size:
        return None, "starts past the end of the image (truncated image?)"
    available = min(size, source.size - offset)
    note = ""
    if available < size:
        note = f"extends past the end of the image ({size - available} bytes missing: truncated image?)"
    fs = probe(source.window(offset, available))
    if fs is None:
        return None, note
    return replace(fs, offset=offset, location=location), note


def _partitions(source: ImageSource, table: tables.Table) -> list[Partition]:
    out = []
    ss = table.sector_size
    for raw in table.partitions:
        fs: Filesystem | None = None
        note = ""
        if raw.kind != "extended":
            fs, note = _probe_range(source, raw.start * ss, raw.count * ss, f"partition {raw.number}")
        elif raw.start * ss >= source.size:
            note = "starts past the end of the image (truncated image?)"
        out.append(
            Partition(
                number=raw.number,
                start_sector=raw.start,
                size_bytes=raw.count * ss,
                type=raw.type,
                bootable=raw.bootable,
                filesystem=fs,
                kind=raw.kind,
                name=raw.name,
                note=note,
            )
        )
    return out


def _volume_groups(source: ImageSource, members: list[Filesystem]) -> tuple[list[VolumeGroup], list[Filesystem]]:
    """The VGs whose PVs are among `members`, with their LVs' filesystems probed through the extent mapping."""
    # Only an image with a PV pays for the LVM reader's classes (most guest images have none).
    from dom0.image import lvm

    found: list[tuple[Filesystem, lvm.PhysicalVolume]] = []
    for fs in members:
        pv = lvm.read_pv(source, fs.offset)
        if pv is not None:
            found.append((fs, pv))
    # The newest metadata (highest seqno) of each VG describes it; PVs of one VG all carry a copy.
    groups: dict[str, lvm.GroupInfo] = {}
    for _, pv in found:
        info = lvm.group_info(pv.metadata) if pv.metadata else None
        if info is not None and (info.uuid not in groups or groups[info.uuid].seqno < info.seqno):
            groups[info.uuid] = info
    by_uuid = {pv.uuid: (fs, pv) for fs, pv in found}
    vgs: list[VolumeGroup] = []
    filesystems: list[Filesystem] = []
    for info in groups.values():
        lvm.check_mapping(info)
        extent = info.extent_size * lvm.SECTOR
        pv_places: dict[str, int] = {}  # metadata PV name -> image offset of its first extent
        pv_words: list[str] = []
        capacity = 0  # bytes the VG's PVs in this image hold, by their own labels (a truncated image keeps them)
        for pv_name, (pv_uuid, pe_start) in info.pvs.items():
            if pv_uuid in by_uuid:
                fs, pv = by_uuid[pv_uuid]
                pv_places[pv_name] = pv.offset + pe_start * lvm.SECTOR
                capacity += pv.size or max(0, source.size - pv.offset)
                pv_words.append(fs.location)
            else:
                pv_words.append(f"missing {pv_uuid}")
        lvs: list[LogicalVolume] = []
        for lv in info.lvs:
            segments: list[tuple[int, int, int]] = []
            note = ""
            if lv.kind != "linear":
                note = f"{lv.kind} logical volume: only linear ones are read"
            for seg in lv.segments:
                if seg.pv not in pv_places:
                    note = note or f"part of it is on a physical volume not in this image ({seg.pv})"
                    continue
                segments.append(
                    (seg.start_extent * extent, seg.extents * extent, pv_places[seg.pv] + seg.pv_extent * extent)
                )
            size = lv.extents * extent
            if not note and size > capacity:
                raise Dom0Error(
                    f"logical volume {info.name}/{lv.name} is {size} bytes, more than its physical volumes hold "
                    f"({capacity} bytes)",
                    "the LVM metadata is damaged (vgcfgrestore restores an older copy); dom0 will not read this VG",
                )
            lv_fs: Filesystem | None = None
            if not note and segments and extent > 0:
                location = f"logical volume {info.name}/{lv.name}"
                mapped = _lv_source(source, f"{info.name}/{lv.name}", size, segments)
                probed = probe(mapped)
                if probed is not None:
                    lv_fs = replace(probed, offset=segments[0][2], location=location)
                    filesystems.append(lv_fs)
                if any(img + length > source.size for _, length, img in segments):
                    note = "extends past the end of the image (truncated image?)"
            lvs.append(LogicalVolume(info.name, lv.name, size, lv_fs, tuple(segments), lv.uuid, note))
        vgs.append(VolumeGroup(info.name, info.uuid, tuple(pv_words), tuple(lvs)))
    return vgs, filesystems


def _lv_source(source: ImageSource, name: str, size: int, segments: list[tuple[int, int, int]]) -> MappedSource:
    return MappedSource(
        f"{source.name}:{name}", size, [(lv_off, length, source, img) for lv_off, length, img in segments]
    )


def _scan(source: ImageSource) -> Layout:
    sector0 = source.read_at(0, 512)
    whole = probe(source)
    table: tables.Table | None = None
    if whole is not None and whole.type in _BOOT_SECTOR_FILESYSTEMS:
        table = None
    elif tables.is_protective(sector0):
        table = tables.read_gpt(source)
    elif tables.is_mbr(sector0):
        mbr = tables.read_mbr(source, sector0)
        # A whole-disk filesystem wins over an empty table; an ISO may carry a hybrid MBR as well.
        if whole is None or whole.type == "iso9660" or mbr.partitions:
            table = mbr
    filesystems: list[Filesystem] = []
    partitions: list[Partition] = []
    notes: list[str] = []
    if table is None:
        if whole is not None:
            whole = replace(whole, location="whole disk")
            filesystems.append(whole)
            if whole.size > source.size:
                notes.append(f"the filesystem is {whole.size - source.size} bytes larger than the image (truncated?)")
        scheme, ss = "none", 512
    else:
        if whole is not None and whole.type == "iso9660":
            filesystems.append(replace(whole, location="whole disk"))
        partitions = _partitions(source, table)
        filesystems.extend(p.filesystem for p in partitions if p.filesystem is not None)
        scheme, ss = table.scheme, table.sector_size
        notes.extend(table.notes)
    members = [fs for fs in filesystems if fs.type == "LVM2_member"]
    vgs, lv_filesystems = _volume_groups(source, members) if members else ([], [])
    filesystems.extend(lv_filesystems)
    return Layout(scheme, ss, tuple(partitions), tuple(filesystems), tuple(vgs), source.size, tuple(notes))


def scan(source: ImageSource) -> Layout:
    """The partition table, partitions, filesystems and LVM of `source`; an empty Layout when nothing is there."""
    try:
        return _scan(source)
    except (struct.error, ValueError, OverflowError, IndexError) as exc:
        raise Dom0Error(f"{source.name}: cannot make sense of this image ({exc})", "the image may be damaged") from exc


def open_filesystem_source(source: ImageSource, layout: Layout, fs: Filesystem) -> ImageSource:
    """The bytes that hold `fs`: its whole partition, its LV (through the extent mapping) or the whole disk."""
    for p in layout.partitions:
        if p.filesystem == fs:
            return source.window(p.start_sector * layout.sector_size, p.size_bytes)
    for vg in layout.lvm:
        for lv in vg.lvs:
            if lv.filesystem == fs:
                for _, length, img in lv.segments:
                    if img + length > source.size:
                        raise Dom0Error(
                            f"logical volume {vg.name}/{lv.name} extends past the end of {source.name}",
                            "the image may be truncated",
                        )
                return _lv_source(source, f"{vg.name}/{lv.name}", lv.size_bytes, list(lv.segments))
    if fs.location == "whole disk":
        return source
    raise Dom0Error(f"{fs.type} filesystem at byte {fs.offset} is not in this layout", "scan the image again")
