"""LVM for cloning: snapshot the running guest's LV, create the clone's LV, copy, and remove by UUID only.

Everything goes through the lvm2 commands (`lvs`/`vgs --reportformat json --units b --nosuffix`, lvcreate,
lvremove). An LV this run created is recorded with its UUID; lvremove is given both its name and a
`--select lv_uuid=...` filter, so a different LV that took the name in between is never removed.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from dom0 import run
from dom0.errors import CommandError, Dom0Error
from dom0.model import Progress, no_progress
from dom0.storage.base import Created, CreatedKind, Volume, VolumeKind
from dom0.storage.files import data_ranges

MiB = 1 << 20
SNAPSHOT_MIN = 256 * MiB
SNAPSHOT_SHARE = 0.15  # of the origin: what a busy guest may write during the copy
BLOCK = 1 << 20
_ZEROS = bytes(BLOCK)
# BLKZEROOUT = _IO(0x12, 127): the device zeroes a range itself (WRITE ZEROES / discard where it can).
BLKZEROOUT = 0x127F

LV_FIELDS = "lv_name,vg_name,lv_uuid,lv_size,lv_attr,lv_path,origin,snap_percent,data_percent,segtype,pool_lv"
VG_FIELDS = "vg_name,vg_uuid,vg_size,vg_free,vg_extent_size,vg_free_count"
# What lvcreate accepts as a name, minus a leading '-' (which would read as an option).
_NAME = re.compile(r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}")


@dataclass(frozen=True)
class LogicalVolume:
    """One row of `lvs` (sizes in bytes; percentages None when lvs leaves them empty)."""

    name: str
    vg: str
    uuid: str
    size_bytes: int
    attr: str
    path: str
    origin: str = ""
    snap_percent: float | None = None
    data_percent: float | None = None
    segtype: str = ""
    pool_lv: str = ""

    @property
    def is_snapshot(self) -> bool:
        return self.attr[:1] in ("s", "S") or (self.segtype == "thin" and bool(self.origin))

    @property
    def is_invalid(self) -> bool:
        """An old-style snapshot that overflowed (or failed): lv_attr state 'I', or 'S' while suspended."""
        return len(self.attr) > 4 and self.attr[4] in ("I", "S")


@dataclass(frozen=True)
class VolumeGroup:
    name: str
    uuid: str
    size_bytes: int
    free_bytes: int
    extent_bytes: int
    free_extents: int


def _bytes(value: object) -> int:
    text = str(value or "0").strip().rstrip("Bb")
    try:
        return int(float(text)) if "." in text else int(text)
    except ValueError:
        return 0


def _percent(value: object) -> float | None:
    text = str(value or "").strip().rstrip("%")
    try:
        return float(text) if text else None
    except ValueError:
        return None


def parse_report(text: str, key: str) -> list[dict[str, str]]:
    """The rows under `key` ("lv", "vg") of an lvm2 JSON report (several reports are concatenated)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Dom0Error("lvm2 printed a report dom0 cannot read", "check the lvm2 installation") from exc
    rows: list[dict[str, str]] = []
    for report in doc.get("report", []) if isinstance(doc, dict) else []:
        for row in report.get(key, []) if isinstance(report, dict) else []:
            if isinstance(row, dict):
                rows.append({str(k): str(v) for k, v in row.items()})
    return rows


def parse_lv(row: dict[str, str]) -> LogicalVolume:
    return LogicalVolume(
        name=row.get("lv_name", ""),
        vg=row.get("vg_name", ""),
        uuid=row.get("lv_uuid", ""),
        size_bytes=_bytes(row.get("lv_size")),
        attr=row.get("lv_attr", ""),
        path=row.get("lv_path", ""),
        origin=row.get("origin", ""),
        snap_percent=_percent(row.get("snap_percent")),
        data_percent=_percent(row.get("data_percent")),
        segtype=row.get("segtype", ""),
        pool_lv=row.get("pool_lv", ""),
    )


def parse_vg(row: dict[str, str]) -> VolumeGroup:
    return VolumeGroup(
        name=row.get("vg_name", ""),
        uuid=row.get("vg_uuid", ""),
        size_bytes=_bytes(row.get("vg_size")),
        free_bytes=_bytes(row.get("vg_free")),
        extent_bytes=_bytes(row.get("vg_extent_size")),
        free_extents=_bytes(row.get("vg_free_count")),
    )


def _report(command: str, fields: str, *args: str) -> tuple[int, list[dict[str, str]], str]:
    cmd = [command, "--reportformat", "json", "--units", "b", "--nosuffix", "-o", fields, *args]
    proc = run.run(cmd, check=False, timeout=120)
    err = proc.stderr.decode(errors="replace")
    rows = parse_report(proc.stdout.decode(errors="replace") or "{}", "lv" if command == "lvs" else "vg")
    return proc.returncode, rows, err


def _lvm_error(what: str, err: str) -> Dom0Error:
    lines = [ln.strip() for ln in err.splitlines() if ln.strip() and "leaked on" not in ln]
    return Dom0Error(f"{what}: {lines[-1] if lines else 'lvm2 failed'}", "check the volume group with vgs and lvs")


def vg_info(vg: str) -> VolumeGroup:
    """Size and free space of volume group `vg`; Dom0Error when there is none."""
    _check_name(vg, "volume group")
    rc, rows, err = _report("vgs", VG_FIELDS, vg)
    if rc != 0 or not rows:
        raise _lvm_error(f"cannot read volume group {vg}", err)
    return parse_vg(rows[0])


def vg_free_bytes(vg: str) -> int:
    return vg_info(vg).free_bytes


def lv_info(vg: str, name: str) -> LogicalVolume | None:
    """The LV `vg`/`name`, or None when there is no such LV (Dom0Error when lvm2 itself fails)."""
    _check_name(vg, "volume group")
    _check_name(name, "logical volume")
    rc, rows, err = _report("lvs", LV_FIELDS, f"{vg}/{name}")
    if rows:
        return parse_lv(rows[0])
    if "Failed to find logical volume" in err:
        return None
    if rc != 0:
        raise _lvm_error(f"cannot read LV {vg}/{name}", err)
    return None


def lv_by_uuid(uuid: str) -> LogicalVolume | None:
    """The LV whose UUID is `uuid`, wherever it now is, or None."""
    if not uuid:
        return None
    rc, rows, err = _report("lvs", LV_FIELDS, "--select", f"lv_uuid={uuid}")
    if rc != 0 and not rows:
        raise _lvm_error(f"cannot look up LV {uuid}", err)
    found = [lv for lv in map(parse_lv, rows) if lv.uuid == uuid]
    return found[0] if found else None


def lv_of_device(path: Path) -> LogicalVolume | None:
    """The LV behind block device `path` (/dev/VG/LV or /dev/mapper/VG-LV), or None (not an LV, or no lvm2)."""
    try:
        rc, rows, _err = _report("lvs", LV_FIELDS, str(path))
    except (CommandError, Dom0Error):
        return None
    return parse_lv(rows[0]) if rc == 0 and len(rows) == 1 else None


def _check_name(name: str, what: str) -> None:
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise Dom0Error(f"{name!r} is not a valid {what} name", "use letters, digits and + _ . - (not first)")


def snapshot_size(origin: Volume, free_bytes: int | None = None) -> int:
    """How big a snapshot of LV `origin` to make (see snapshot_bytes); free space read from its VG unless given."""
    if origin.segtype == "thin":
        return 0  # thin snapshots take their space from the pool as they diverge
    free = vg_free_bytes(origin.vg) if free_bytes is None else free_bytes
    return snapshot_bytes(origin.size_bytes, free)


def snapshot_bytes(origin_bytes: int, free_bytes: int) -> int:
    """How big a snapshot of an `origin_bytes` LV to make: room for 15 % of it to be rewritten during the copy
    (at least 256 MiB, never more than the origin needs), capped by the VG's free space.

    Dom0Error when the VG cannot hold even the minimum."""
    want = min(max(SNAPSHOT_MIN, int(origin_bytes * SNAPSHOT_SHARE)), origin_bytes + origin_bytes // 100 + 4 * MiB)
    least = min(SNAPSHOT_MIN, want)
    if free_bytes < least:
        raise Dom0Error(
            f"the volume group has {free_bytes // MiB} MiB free; a snapshot needs at least {least // MiB} MiB",
            "free extents in the VG (vgextend, or remove an unused LV), or clone with --pause or --offline",
        )
    return min(want, free_bytes)


def _check_free(vg: VolumeGroup, need: int, what: str) -> None:
    extents = -(-need // max(1, vg.extent_bytes))
    if extents > vg.free_extents:
        raise Dom0Error(
            f"volume group {vg.name} has {vg.free_extents} free extents ({vg.free_bytes // MiB} MiB); "
            f"{what} needs {extents} ({extents * vg.extent_bytes // MiB} MiB)",
            "free extents in the VG (vgextend, or remove an unused LV), or put the clone elsewhere",
        )


def _refuse_existing(vg: str, name: str) -> None:
    if lv_info(vg, name) is not None:
        raise Dom0Error(f"LV {vg}/{name} already exists", "choose another name; dom0 never overwrites an LV")


def _size_arg(size_bytes: int) -> str:
    """`size_bytes` for lvcreate, rounded up to whole sectors: lvcreate rejects a byte size that is not a multiple
    of 512 ("Error during parsing of command line"); it rounds up to whole extents itself."""
    return f"{-(-size_bytes // 512) * 512}b"


def _lvcreate(vg: str, name: str, args: list[str], what: str) -> Created:
    try:
        run.run(["lvcreate", "--yes", "--name", name, *args], timeout=300)
    except CommandError as exc:
        raise _lvm_error(f"cannot create {what} {vg}/{name}", exc.stderr) from exc
    lv = lv_info(vg, name)
    if lv is None or not lv.uuid:
        raise Dom0Error(
            f"lvcreate made {vg}/{name} but it cannot be read back",
            f"check it with lvs {vg}/{name} and remove it by hand if this run made it",
        )
    return Created(CreatedKind.LV, Path(lv.path or f"/dev/{vg}/{name}"), lv_uuid=lv.uuid, vg=vg, lv=name)


def create_lv(vg: str, name: str, size_bytes: int, thin_pool: str = "") -> Created:
    """A new LV of at least `size_bytes` (a thin LV in `thin_pool` when given); refused if the name is taken."""
    _check_name(vg, "volume group")
    _check_name(name, "logical volume")
    _refuse_existing(vg, name)
    if thin_pool:
        _check_name(thin_pool, "thin pool")
        return _lvcreate(vg, name, ["--virtualsize", _size_arg(size_bytes), "--thinpool", f"{vg}/{thin_pool}"], "LV")
    _check_free(vg_info(vg), size_bytes, f"LV {name}")
    return _lvcreate(vg, name, ["--size", _size_arg(size_bytes), vg], "LV")


def snapshot(origin: Volume, name: str, size_bytes: int) -> Created:
    """A snapshot `name` of the LV `origin`, in its VG; free extents are checked first.

    A thin origin gets a thin snapshot (no size; activated despite the skip flag thin snapshots get)."""
    if origin.kind is not VolumeKind.LV or not origin.vg or not origin.lv:
        raise Dom0Error(f"{origin.path} is not an LVM logical volume", "use --mode copy with --pause or --offline")
    _check_name(name, "logical volume")
    _refuse_existing(origin.vg, name)
    target = f"{origin.vg}/{origin.lv}"
    if origin.segtype == "thin":
        return _lvcreate(origin.vg, name, ["--snapshot", "--setactivationskip", "n", target], "snapshot")
    _check_free(vg_info(origin.vg), size_bytes, f"snapshot {name}")
    return _lvcreate(origin.vg, name, ["--snapshot", "--size", _size_arg(size_bytes), target], "snapshot")


def snapshot_overflowed(c: Created) -> bool:
    """Whether the snapshot `c` can no longer be trusted: invalid (overflowed), 100 % full, or gone."""
    lv = lv_by_uuid(c.lv_uuid)
    if lv is None:
        return True
    if lv.is_invalid:
        return True
    # A thin snapshot's percentage is how much of it is provisioned, not how full an exception store is.
    return lv.segtype != "thin" and (lv.snap_percent or 0.0) >= 100.0


def remove_lv(c: Created) -> None:
    """lvremove the LV `c` records, only while an LV with its name still has its UUID; gone already is fine."""
    if not c.lv_uuid:
        raise Dom0Error(f"no UUID recorded for LV {c.vg}/{c.lv}; not removing it", "remove it by hand if needed")
    lv = lv_by_uuid(c.lv_uuid)
    if lv is None:
        return
    # Name and --select together: lvm2 removes the named LV only if it also matches the UUID.
    try:
        run.run(["lvremove", "--yes", "--select", f"lv_uuid={c.lv_uuid}", f"{lv.vg}/{lv.name}"], timeout=300)
    except CommandError as exc:
        raise _lvm_error(f"cannot remove LV {lv.vg}/{lv.name}", exc.stderr) from exc
    if lv_by_uuid(c.lv_uuid) is not None:
        raise Dom0Error(f"LV {lv.vg}/{lv.name} is still there after lvremove", f"check it with lvs {lv.vg}")


def zero_range(fd: int, start: int, end: int, block_device: bool) -> None:
    """Make bytes [start, end) of the open `fd` read as zeros: the device zeroes them itself where it can."""
    if block_device and start % 512 == 0 and end % 512 == 0:
        try:
            fcntl.ioctl(fd, BLKZEROOUT, struct.pack("QQ", start, end - start))
            return
        except OSError:
            pass  # a device without the ioctl: write the zeros
    pos = start
    while pos < end:
        pos += os.pwrite(fd, _ZEROS[: min(BLOCK, end - pos)], pos)


def _open_target(dst: Path, size: int) -> tuple[int, bool]:
    try:
        st = os.stat(dst)
        block = stat.S_ISBLK(st.st_mode)
        # O_EXCL on a block device: refused while it is mounted or open exclusively elsewhere.
        fd = os.open(dst, os.O_WRONLY | os.O_CLOEXEC | (os.O_EXCL if block else 0))
    except OSError as exc:
        hint = "is it mounted or in use?" if exc.errno == errno.EBUSY else "check the LV exists and is active"
        raise Dom0Error(f"cannot open {dst} for writing: {exc.strerror}", hint) from exc
    room = os.lseek(fd, 0, os.SEEK_END)
    if room < size:
        os.close(fd)
        raise Dom0Error(f"{dst} holds {room} bytes, the copy needs {size}", "create the target at least as large")
    return fd, block


def copy_to_lv(
    src: Path, dst: Path, size: int, progress: Progress = no_progress, *, dst_reads_zero: bool = False
) -> None:
    """Copy the first `size` bytes of `src` onto the existing device `dst` (an LV), block by block.

    Zeros are only skipped where `dst_reads_zero` says the target already reads as zeros (a new thin LV); on any
    other target they are written (BLKZEROOUT where the device offers it), since old data may lie there.
    """
    try:
        src_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise Dom0Error(f"cannot read {src}: {exc.strerror}", "check the snapshot is active") from exc
    try:
        dst_fd, block = _open_target(dst, size)
        try:
            pos = 0
            for start, end in data_ranges(src_fd, size):
                if pos < start and not dst_reads_zero:
                    zero_range(dst_fd, pos, start, block)
                pos = start
                while pos < end:
                    chunk = os.pread(src_fd, min(BLOCK, end - pos), pos)
                    if not chunk:
                        raise Dom0Error(f"short read at byte {pos} of {src}", "the source is smaller than expected")
                    if chunk != _ZEROS[: len(chunk)]:
                        view, at = memoryview(chunk), pos
                        while view:
                            n = os.pwrite(dst_fd, view, at)
                            view, at = view[n:], at + n
                    elif not dst_reads_zero:
                        zero_range(dst_fd, pos, pos + len(chunk), block)
                    pos += len(chunk)
                    progress(pos)
            if pos < size and not dst_reads_zero:
                zero_range(dst_fd, pos, size, block)
            os.fsync(dst_fd)
        except OSError as exc:
            if exc.errno == errno.EIO:
                raise Dom0Error(
                    f"I/O error copying {src} to {dst}",
                    "if the source is a snapshot it may have overflowed: retry with a larger one or with --pause",
                ) from exc
            raise Dom0Error(f"copying {src} to {dst} failed: {exc.strerror}", "check both devices") from exc
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)
    progress(size)
