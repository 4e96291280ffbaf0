"""Partitions ⇄ whole-disk images: cut one filesystem out of a partitioned image, or wrap one in a partition table.

What admins did with `dd skip=63`, but found from the table, sparse where the source is sparse, written to
OUT.partial, fsynced, verified by probing the result, and only then given its name (never over an existing file).
"""

from __future__ import annotations

import os
import struct
import uuid as uuidlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dom0.errors import Dom0Error
from dom0.image import tables
from dom0.image.layout import Filesystem, Layout, open_filesystem_source, scan
from dom0.image.probe import probe
from dom0.image.source import ImageSource, MappedSource, Window, open_image
from dom0.model import Progress, no_progress

CHUNK = 1024 * 1024
_ZEROS = bytes(CHUNK)
GPT_ENTRIES = 128
GPT_ENTRY_SIZE = 128
GPT_ARRAY_SECTORS = GPT_ENTRIES * GPT_ENTRY_SIZE // 512


@dataclass(frozen=True)
class Plan:
    """What extract or wrap will do: copy `ranges` (offset, length in the source) to `target` at `target_offset`."""

    action: str
    source: str
    what: str
    ranges: tuple[tuple[int, int], ...]
    size: int
    target: str
    target_offset: int
    target_size: int
    filesystem: Filesystem
    table: str = ""
    start_sector: int = 0


def plan_extract(
    source: ImageSource, layout: Layout, out: Path, *, partition: int | None = None, lv: str | None = None
) -> tuple[Plan, ImageSource]:
    """The plan for `dom0 image extract` and the bytes it will copy (one of partition / lv must be given)."""
    if partition is not None:
        part = layout.partition(partition)
        if part.kind == "extended":
            raise Dom0Error(
                f"partition {partition} is the extended partition: it holds logical partitions, not a filesystem",
                "extract one of the logical partitions (5, 6, ...)",
            )
        fs, what = part.filesystem, f"partition {partition}"
    elif lv is not None:
        volume = layout.logical_volume(lv)
        fs, what = volume.filesystem, f"logical volume {volume.vg}/{volume.name}"
        if volume.note:
            raise Dom0Error(f"{what}: {volume.note}", "see dom0 image inspect")
    else:
        raise Dom0Error(
            "say what to extract: --partition N or --lv VG/LV",
            "see dom0 image inspect",
        )
    if fs is None:
        raise Dom0Error(
            f"{what} holds no filesystem dom0 recognises, so the copy could not be verified",
            "see dom0 image inspect for what is there",
        )
    data = open_filesystem_source(source, layout, fs)
    plan = Plan(
        action="extract",
        source=source.name,
        what=what,
        ranges=_ranges(data),
        size=data.size,
        target=str(out),
        target_offset=0,
        target_size=data.size,
        filesystem=fs,
    )
    return plan, data


def _ranges(data: ImageSource) -> tuple[tuple[int, int], ...]:
    """Where in the image `data`'s bytes come from."""
    if isinstance(data, Window):
        return ((data.offset, data.size),)
    if isinstance(data, MappedSource):
        return tuple((parent_off, size) for _, size, _, parent_off in data.segments)
    return ((0, data.size),)


def plan_wrap(fs_source: ImageSource, out: Path, *, table: str = "mbr", start_sector: int = 2048) -> Plan:
    """The plan for `dom0 image wrap`: FS in partition 1 of a new disk with an MBR or GPT table."""
    if table not in ("mbr", "gpt"):
        raise Dom0Error(f"unknown partition table {table!r}", "use --table mbr or --table gpt")
    layout = scan(fs_source)
    if layout.partition_table != "none":
        raise Dom0Error(
            f"{fs_source.name} already has a{'n' if layout.partition_table == 'mbr' else ''} "
            f"{layout.partition_table.upper()} partition table",
            "wrap takes a whole-disk filesystem (dom0 image extract makes one)",
        )
    fs = probe(fs_source)
    if fs is None:
        raise Dom0Error(f"{fs_source.name} holds no filesystem dom0 recognises", "wrap takes a whole-disk filesystem")
    minimum = 34 if table == "gpt" else 1
    if start_sector < minimum or start_sector > 2**32 - 1:
        raise Dom0Error(f"--start-sector {start_sector} is not possible with {table.upper()}", f"use {minimum} or more")
    count = (fs_source.size + 511) // 512
    total = start_sector + count + (GPT_ARRAY_SECTORS + 1 if table == "gpt" else 0)
    if table == "mbr" and start_sector + count > 2**32 - 1:
        raise Dom0Error("the filesystem is too large for an MBR partition table (2 TiB)", "use --table gpt")
    return Plan(
        action="wrap",
        source=fs_source.name,
        what="filesystem",
        ranges=((0, fs_source.size),),
        size=fs_source.size,
        target=str(out),
        target_offset=start_sector * 512,
        target_size=total * 512,
        filesystem=fs,
        table=table,
        start_sector=start_sector,
    )


def copy_sparse(data: ImageSource, fd: int, offset: int, progress: Progress = no_progress) -> int:
    """Copy `data` into file `fd` at `offset`, skipping holes and all-zero blocks; the bytes actually written."""
    written = 0
    for start, length in data.data_extents():
        pos, end = start, start + length
        while pos < end:
            chunk = data.read_at(pos, min(CHUNK, end - pos))
            if not chunk:
                raise Dom0Error(f"{data.name}: short read at byte {pos}", "the image may be truncated")
            if chunk != _ZEROS[: len(chunk)]:
                view = memoryview(chunk)
                while view:
                    n = os.pwrite(fd, view, offset + pos)
                    view = view[n:]
                    pos += n
                    written += n
            else:
                pos += len(chunk)
            progress(pos)
    return written


def _write_new(out: Path, size: int, fill: Callable[[int], None], verify: Callable[[Path], None]) -> None:
    """Create OUT.partial, fill and fsync it, verify it, then link it to OUT (never replacing an existing OUT)."""
    if out.exists() or out.is_symlink():
        raise Dom0Error(f"{out} already exists; not overwriting it", "choose another output name or remove it first")
    partial = out.with_name(out.name + ".partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError as exc:
        raise Dom0Error(f"{partial} exists (left by an interrupted run?)", f"remove {partial} and try again") from exc
    except OSError as exc:
        raise Dom0Error(f"cannot create {partial}: {exc.strerror}", "check the output directory") from exc
    try:
        try:
            os.ftruncate(fd, size)
            fill(fd)
            os.fsync(fd)
        except OSError as exc:  # no space, or a size the output filesystem cannot hold (EFBIG)
            raise Dom0Error(
                f"cannot write {partial} ({size} bytes): {exc.strerror}", "check free space on the output filesystem"
            ) from exc
        finally:
            os.close(fd)
        verify(partial)
        try:
            os.link(partial, out)  # fails if OUT appeared meanwhile: no overwrite even in a race
            os.unlink(partial)
        except FileExistsError as exc:
            raise Dom0Error(f"{out} already exists; not overwriting it", "choose another output name") from exc
        except OSError:
            if out.exists():
                raise
            os.rename(partial, out)  # a filesystem without hard links
        dir_fd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _same(found: Filesystem | None, want: Filesystem) -> bool:
    return found is not None and found.type == want.type and found.uuid == want.uuid


def extract(plan: Plan, data: ImageSource, progress: Progress = no_progress) -> int:
    """Carry out an extract plan; the bytes written (zeros and holes are left as holes)."""
    out = Path(plan.target)
    written = 0

    def fill(fd: int) -> None:
        nonlocal written
        written = copy_sparse(data, fd, 0, progress)

    def verify(path: Path) -> None:
        with open_image(path, format="raw") as result:  # what was just written is raw, whatever it holds
            found = probe(result)
        if not _same(found, plan.filesystem):
            got = f"{found.type} {found.uuid}" if found else "nothing recognisable"
            raise Dom0Error(
                f"verification failed: {path} holds {got}, expected {plan.filesystem.type} {plan.filesystem.uuid}",
                "the source image may be damaged or changing; the partial output was removed",
            )

    _write_new(out, plan.target_size, fill, verify)
    return written


def _mbr(entry_type: int, start: int, count: int, disk_id: int) -> bytes:
    sector = bytearray(512)
    struct.pack_into("<I", sector, 440, disk_id)
    # CHS fields say "beyond CHS" (as fdisk writes for LBA-addressed partitions); only the LBA fields matter.
    struct.pack_into("<B3sB3sII", sector, 446, 0, b"\xfe\xff\xff", entry_type, b"\xfe\xff\xff", start, count)
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def _gpt_header(
    my: int, alt: int, *, first: int, last: int, disk: uuidlib.UUID, array_lba: int, array_crc: int
) -> bytes:
    fields = (b"EFI PART", 0x00010000, 92, 0, 0, my, alt, first, last, disk.bytes_le, array_lba)
    tail = (GPT_ENTRIES, GPT_ENTRY_SIZE, array_crc)
    hdr = struct.pack("<8sIIIIQQQQ16sQIII", *fields, *tail)
    crc = zlib.crc32(hdr)
    return (hdr[:16] + struct.pack("<I", crc) + hdr[20:]).ljust(512, b"\0")


def partition_table(plan: Plan) -> list[tuple[int, bytes]]:
    """The (offset, bytes) pieces of the new disk's partition table for a wrap plan."""
    start = plan.start_sector
    count = (plan.size + 511) // 512
    total = plan.target_size // 512
    fs_type = plan.filesystem.type
    if plan.table == "mbr":
        code = 0x82 if fs_type == "swap" else 0x8E if fs_type == "LVM2_member" else 0x83
        return [(0, _mbr(code, start, count, uuidlib.uuid4().int & 0xFFFFFFFF))]
    guid = tables.GPT_SWAP if fs_type == "swap" else tables.GPT_LVM if fs_type == "LVM2_member" else tables.GPT_LINUX
    entry = bytearray(GPT_ENTRY_SIZE)
    entry[0:16] = uuidlib.UUID(guid).bytes_le
    entry[16:32] = uuidlib.uuid4().bytes_le
    struct.pack_into("<QQQ", entry, 32, start, start + count - 1, 0)
    array = bytes(entry).ljust(GPT_ENTRIES * GPT_ENTRY_SIZE, b"\0")
    array_crc = zlib.crc32(array)
    disk = uuidlib.uuid4()
    first, last = 2 + GPT_ARRAY_SECTORS, total - 2 - GPT_ARRAY_SECTORS
    backup_array = total - 1 - GPT_ARRAY_SECTORS
    protective = _mbr(0xEE, 1, min(total - 1, 0xFFFFFFFF), 0)
    return [
        (0, protective),
        (512, _gpt_header(1, total - 1, first=first, last=last, disk=disk, array_lba=2, array_crc=array_crc)),
        (1024, array),
        (backup_array * 512, array),
        (
            (total - 1) * 512,
            _gpt_header(total - 1, 1, first=first, last=last, disk=disk, array_lba=backup_array, array_crc=array_crc),
        ),
    ]


def wrap(plan: Plan, fs_source: ImageSource, progress: Progress = no_progress) -> int:
    """Carry out a wrap plan; the bytes written."""
    out = Path(plan.target)
    written = 0

    def fill(fd: int) -> None:
        nonlocal written
        for offset, data in partition_table(plan):
            os.pwrite(fd, data, offset)
            written += len(data)
        written += copy_sparse(fs_source, fd, plan.target_offset, progress)

    def verify(path: Path) -> None:
        with open_image(path, format="raw") as result:  # what was just written is raw, whatever it holds
            layout = scan(result)
        parts = [p for p in layout.partitions if p.number == 1]
        ok = (
            layout.partition_table == plan.table
            and parts
            and parts[0].start_sector == plan.start_sector
            and _same(parts[0].filesystem, plan.filesystem)
        )
        if not ok:
            raise Dom0Error(
                f"verification failed: {path} does not read back as {plan.table.upper()} with partition 1 holding "
                f"{plan.filesystem.type} {plan.filesystem.uuid}",
                "the partial output was removed; report this as a bug",
            )

    _write_new(out, plan.target_size, fill, verify)
    return written
