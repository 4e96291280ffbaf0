"""MBR (with the extended/logical chain) and GPT partition tables, read with every pointer checked.

dissect.volume reads these too, but recurses down an extended chain without a loop guard, numbers logical
partitions by table slot instead of from 5, trusts a GPT's entry count and drops a GPT partition's last sector;
the tables are simple enough to walk here with the guards this tool promises (loops, caps, bounds).
"""

from __future__ import annotations

import struct
import uuid as uuidlib
import zlib
from dataclasses import dataclass

from dom0.image.source import ImageSource

EXTENDED_TYPES = (0x05, 0x0F, 0x85)
# Linux stops far below this; a longer chain is a loop that does not revisit the same sector.
MAX_LOGICAL = 128
# 128 entries of 128 bytes is the norm; a few tools make more. A bigger array is damage.
MAX_GPT_ARRAY = 1024 * 1024

MBR_TYPES = {
    0x00: "Empty",
    0x01: "FAT12",
    0x04: "FAT16 <32M",
    0x05: "Extended",
    0x06: "FAT16",
    0x07: "HPFS/NTFS/exFAT",
    0x0B: "W95 FAT32",
    0x0C: "W95 FAT32 (LBA)",
    0x0E: "W95 FAT16 (LBA)",
    0x0F: "W95 Ext'd (LBA)",
    0x11: "Hidden FAT12",
    0x12: "Compaq diagnostics",
    0x14: "Hidden FAT16 <32M",
    0x16: "Hidden FAT16",
    0x17: "Hidden HPFS/NTFS",
    0x1B: "Hidden W95 FAT32",
    0x1C: "Hidden W95 FAT32 (LBA)",
    0x1E: "Hidden W95 FAT16 (LBA)",
    0x27: "Hidden NTFS WinRE",
    0x42: "SFS",
    0x82: "Linux swap",
    0x83: "Linux",
    0x85: "Linux extended",
    0x86: "NTFS volume set",
    0x87: "NTFS volume set",
    0x8E: "Linux LVM",
    0xA5: "FreeBSD",
    0xA6: "OpenBSD",
    0xA8: "Darwin UFS",
    0xA9: "NetBSD",
    0xAF: "HFS / HFS+",
    0xBE: "Solaris boot",
    0xBF: "Solaris",
    0xDA: "Non-FS data",
    0xEE: "GPT",
    0xEF: "EFI (FAT-12/16/32)",
    0xFB: "VMware VMFS",
    0xFC: "VMware VMKCORE",
    0xFD: "Linux raid autodetect",
}

GPT_TYPES = {
    "0FC63DAF-8483-4772-8E79-3D69D8477DE4": "Linux filesystem",
    "C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "EFI System",
    "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
    "E6D6D379-F507-44C2-A23C-238F2A3DF928": "Linux LVM",
    "21686148-6449-6E6F-744E-656564454649": "BIOS boot",
    "A19D880F-05FC-4D3B-A006-743F0F84911E": "Linux RAID",
    "44479540-F297-41B2-9AF7-D131D5F0458A": "Linux root (x86)",
    "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": "Linux root (x86-64)",
    "B921B045-1DF0-41C3-AF44-4C6F280D3FAE": "Linux root (ARM-64)",
    "933AC7E1-2EB4-4F13-B844-0E14E2AEF915": "Linux home",
    "3B8F8425-20E0-4F3B-907F-1A25A76F98E8": "Linux server data",
    "BC13C2FF-59E6-4262-A352-B275FD6F7172": "Linux extended boot",
    "CA7D7CCB-63ED-4C53-861C-1742536059CC": "Linux LUKS",
    "8DA63339-0007-60C0-C436-083AC8230908": "Linux reserved",
    "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "Microsoft basic data",
    "E3C9E316-0B5C-4DB8-817D-F92DF00215AE": "Microsoft reserved",
    "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC": "Windows recovery environment",
    "516E7CB4-6ECF-11D6-8FF8-00022D09712B": "FreeBSD data",
    "48465300-0000-11AA-AA11-00306543ECAC": "Apple HFS/HFS+",
}

GPT_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
GPT_SWAP = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
GPT_LVM = "E6D6D379-F507-44C2-A23C-238F2A3DF928"


def mbr_type_name(code: int) -> str:
    """'0x83 Linux', as fdisk names MBR partition types (just the hex id when unknown)."""
    name = MBR_TYPES.get(code)
    return f"0x{code:02x} {name}" if name else f"0x{code:02x}"


def gpt_type_name(guid: str) -> str:
    """The name of a GPT partition type GUID ('Linux filesystem'), or the GUID itself when unknown."""
    return GPT_TYPES.get(guid.upper(), guid.lower())


@dataclass(frozen=True)
class RawPartition:
    """A table entry: `start`/`count` in sectors; `kind` is primary, extended, logical or gpt."""

    number: int
    start: int
    count: int
    type: str
    bootable: bool
    kind: str
    name: str = ""


@dataclass(frozen=True)
class Table:
    """What a partition table says, plus anything wrong with it found on the way."""

    scheme: str
    sector_size: int
    partitions: tuple[RawPartition, ...]
    notes: tuple[str, ...] = ()


def _mbr_entries(sector: bytes) -> list[tuple[int, int, int, int]]:
    """(boot flag, type, start, count) for the four slots of an MBR or EBR."""
    return [struct.unpack_from("<B3xB3xII", sector, 446 + 16 * i) for i in range(4)]


def is_mbr(sector: bytes) -> bool:
    """Whether a first sector carries an MBR table (signature, and boot flags that are 0x00 or 0x80 as blkid asks)."""
    if len(sector) < 512 or sector[510:512] != b"\x55\xaa":
        return False
    return all(boot in (0x00, 0x80) for boot, *_ in _mbr_entries(sector))


def is_protective(sector: bytes) -> bool:
    """Whether an MBR is the protective (or hybrid) MBR of a GPT disk."""
    return is_mbr(sector) and any(t == 0xEE for _, t, _, _ in _mbr_entries(sector))


def read_mbr(source: ImageSource, sector0: bytes) -> Table:
    """Primary partitions 1-4 and, through each extended partition's EBR chain, logical partitions from 5."""
    parts: list[RawPartition] = []
    notes: list[str] = []
    next_logical = 5
    for slot, (boot, code, start, count) in enumerate(_mbr_entries(sector0), 1):
        if code == 0 or count == 0:
            continue
        extended = code in EXTENDED_TYPES
        parts.append(
            RawPartition(slot, start, count, mbr_type_name(code), boot == 0x80, "extended" if extended else "primary")
        )
        if extended:
            logical, chain_notes = _walk_ebr(source, start, count, next_logical)
            parts.extend(logical)
            notes.extend(chain_notes)
            next_logical += len(logical)
    return Table("mbr", 512, tuple(parts), tuple(notes))


def _walk_ebr(source: ImageSource, ext_start: int, ext_count: int, first: int) -> tuple[list[RawPartition], list[str]]:
    """Follow the EBR chain of the extended partition at `ext_start`, guarding against loops and runaway chains."""
    found: list[RawPartition] = []
    visited: set[int] = set()
    lba = ext_start
    while True:
        if lba in visited:
            return found, [f"the extended partition's chain loops back to sector {lba}; stopped there"]
        if len(visited) >= MAX_LOGICAL:
            return found, [f"the extended partition's chain is longer than {MAX_LOGICAL}; stopped there"]
        visited.add(lba)
        ebr = source.read_at(lba * 512, 512)
        if len(ebr) < 512:
            return found, [f"the extended partition's chain points past the end of the image (sector {lba})"]
        if ebr[510:512] != b"\x55\xaa":
            # An extended partition whose first EBR is blank simply has no logical partitions yet.
            return found, [] if lba == ext_start else [f"no valid EBR at sector {lba}; logical partitions end there"]
        link: int | None = None
        data_done = False
        for boot, code, start, count in _mbr_entries(ebr):
            if code == 0 or count == 0:
                continue
            if code in EXTENDED_TYPES:
                link = start if link is None else link
            elif not data_done:
                data_done = True
                found.append(
                    RawPartition(first + len(found), lba + start, count, mbr_type_name(code), boot == 0x80, "logical")
                )
        if link is None:
            return found, []
        if link >= ext_count:
            return found, [f"the extended partition's chain points outside it (sector {ext_start + link})"]
        lba = ext_start + link


def _gpt_at(source: ImageSource, ss: int, lba: int) -> tuple[Table | None, str]:
    """The GPT whose header is at `lba`, or (None, why not)."""
    hdr = source.read_at(lba * ss, ss)
    if len(hdr) < 92 or hdr[:8] != b"EFI PART":
        return None, "no GPT header"
    hsize = struct.unpack_from("<I", hdr, 12)[0]
    if hsize < 92 or hsize > ss:
        return None, "GPT header has an impossible size"
    crc = struct.unpack_from("<I", hdr, 16)[0]
    if zlib.crc32(hdr[:16] + b"\0\0\0\0" + hdr[20:hsize]) != crc:
        return None, "GPT header checksum is wrong"
    first_usable, last_usable = struct.unpack_from("<QQ", hdr, 40)
    array_lba, count, esize, array_crc = struct.unpack_from("<QIII", hdr, 72)
    if esize < 128 or esize % 8 or count * esize > MAX_GPT_ARRAY:
        return None, "GPT entry array has an impossible size"
    array = source.read_at(array_lba * ss, count * esize)
    if len(array) < count * esize:
        return None, "GPT entry array lies past the end of the image"
    if zlib.crc32(array) != array_crc:
        return None, "GPT entry array checksum is wrong"
    parts: list[RawPartition] = []
    notes: list[str] = []
    for i in range(count):
        e = array[i * esize : i * esize + 128]
        if not any(e[:16]):
            continue
        first, last, attrs = struct.unpack_from("<QQQ", e, 32)
        if last < first:
            notes.append(f"GPT entry {i + 1} ends before it starts; skipped")
            continue
        guid = str(uuidlib.UUID(bytes_le=e[:16])).upper()
        name = e[56:128].decode("utf-16-le", errors="replace").split("\0", 1)[0]
        parts.append(RawPartition(i + 1, first, last - first + 1, gpt_type_name(guid), bool(attrs & 4), "gpt", name))
        if first < first_usable or last > last_usable:
            notes.append(f"GPT partition {i + 1} lies outside the usable area the header declares")
    return Table("gpt", ss, tuple(parts), tuple(notes)), ""


def read_gpt(source: ImageSource) -> Table:
    """The GPT (primary header, else the backup at the last sector; 512- or 4096-byte sectors)."""
    reasons = []
    for ss in (512, 4096):
        if source.size < 2 * ss:
            continue
        for lba, which in ((1, "primary"), (source.size // ss - 1, "backup")):
            table, why = _gpt_at(source, ss, lba)
            if table is not None:
                if which == "backup":
                    return Table(
                        "gpt", ss, table.partitions, ("the primary GPT is damaged; read the backup", *table.notes)
                    )
                return table
            if ss == 512 or why != "no GPT header":
                reasons.append(f"{which}: {why}")
    return Table("gpt", 512, (), (f"protective MBR but no readable GPT ({'; '.join(reasons[:2])})",))
