"""`dom0 export` / `dom0 import`: a guest carried to another host as a directory (the seed's removable media).

Export writes DIR/NAME/: the definition, each disk's contents compressed with zstd (holes read as zeros, which
cost almost nothing compressed), and manifest.json with sizes and SHA-256 checksums of both the raw contents and
the stored files. Swap disks are not exported: import makes them afresh with their UUID and label. Import checks
every stored file against the manifest before it writes anything, writes the disks sparse (as files or LVs),
defines the guest, and on any failure removes exactly what it created.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dom0 import storage
from dom0.clone.macs import fresh_macs, fresh_uuid
from dom0.control import paused_while
from dom0.errors import Dom0Error, GuestNotFound, GuestStateError, UsageError
from dom0.filedata import read_json, sha256_file
from dom0.hypervisor import Hypervisor
from dom0.hypervisor.domclone import CloneChange, DiskRewrite, clone_xml
from dom0.model import DiskSource, GuestState
from dom0.saves import codec
from dom0.saves.codec import Compression
from dom0.storage.files import data_ranges

FORMAT_VERSION = 1
CHUNK = 1 << 20
ZEROS = bytes(CHUNK)
BLOCK = 64 * 1024  # import skips writing all-zero blocks of this size: the new disk stays sparse
Progress = Callable[[int], None]
_COPIED = (DiskSource.FILE, DiskSource.BLOCK)


def _quiet(_: int) -> None:
    return None


@dataclass(frozen=True, slots=True)
class ExportedDisk:
    """One disk in an export: its contents compressed in `file`, or (swap) only what a new swap needs."""

    target: str
    file: str  # '' for swap
    format: str  # the format it had on the source host
    size_bytes: int
    raw_sha256: str = ""
    stored_bytes: int = 0
    stored_sha256: str = ""
    swap_uuid: str = ""
    swap_label: str = ""


@dataclass(frozen=True, slots=True)
class ExportManifest:
    """manifest.json of an export."""

    name: str
    uuid: str
    uri: str
    definition: str  # file name of the definition
    disks: tuple[ExportedDisk, ...]
    exported_at: str

    def to_json(self) -> dict[str, Any]:
        """As written to manifest.json."""
        doc = asdict(self)
        doc["format_version"] = FORMAT_VERSION
        return doc

    @classmethod
    def read(cls, directory: Path) -> ExportManifest:
        """Load and validate DIR/manifest.json; Dom0Error naming the problem."""
        path = directory / "manifest.json"
        doc = read_json(path, "give the directory `dom0 export` wrote (DIR/NAME)")
        if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION:
            raise Dom0Error(f"{path} is not a dom0 export manifest (version {FORMAT_VERSION})")
        try:
            disks = tuple(ExportedDisk(**d) for d in doc["disks"])
            manifest = cls(doc["name"], doc["uuid"], doc["uri"], doc["definition"], disks, doc["exported_at"])
        except (KeyError, TypeError) as exc:
            raise Dom0Error(f"{path} is not a valid dom0 export manifest: {exc}") from exc
        for name in [manifest.definition, *(d.file for d in disks if d.file)]:
            if "/" in name or name in (".", ".."):
                raise Dom0Error(f"{path} names {name!r}, which is not a file beside it")
        return manifest


# -- export ---------------------------------------------------------------------------------------------------


def export_guest(
    hv: Hypervisor, ref: str, directory: Path, *, pause: bool = False, bar: Callable[[str, int], Progress] | None = None
) -> tuple[Path, ExportManifest]:
    """Write the guest into DIR/NAME/ (which must not exist); its directory and manifest."""
    guest = hv.guest(ref)
    running = guest.state.is_active and guest.state is not GuestState.PAUSED
    if running and not pause:
        raise GuestStateError(
            f"{guest.name} is running: its disks would be exported torn",
            f"shut it down first (`dom0 shutdown --wait {guest.name}`), or add --pause",
        )
    out = directory / guest.name
    try:
        out.mkdir(parents=True, mode=0o700)
    except FileExistsError as exc:
        raise Dom0Error(f"{out} already exists", "export into another directory, or remove it first") from exc
    try:
        with paused_while(hv, guest.uuid, running):
            definition = hv.editable_definition(guest.uuid)
            ext = "cfg" if definition.lstrip().startswith(("#", "name", "type")) else "xml"
            (out / f"definition.{ext}").write_text(definition)
            disks = []
            for disk in hv.details(guest.uuid).disks:
                if disk.device != "disk" or disk.readonly or disk.source_kind is DiskSource.NONE:
                    continue
                if disk.source_kind not in _COPIED:
                    raise Dom0Error(
                        f"{disk.target} is a {disk.source_kind} disk ({disk.source}): dom0 exports files and block "
                        "devices only",
                        "give the guest the volume's path (`virsh vol-path`)",
                    )
                progress = bar(disk.target, 0) if bar else _quiet
                disks.append(_export_disk(Path(disk.source), disk.format, disk.target, out, progress))
        manifest = ExportManifest(
            guest.name, guest.uuid, hv.uri, f"definition.{ext}", tuple(disks),
            datetime.now(UTC).isoformat(timespec="seconds"),
        )  # fmt: skip
        (out / "manifest.json").write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    except BaseException:
        for p in out.iterdir():
            p.unlink()
        out.rmdir()
        raise
    return out, manifest


def _export_disk(path: Path, fmt: str, target: str, out: Path, progress: Progress) -> ExportedDisk:
    volume = storage.probe(path, fmt)
    swap = storage.swap_identity(path)
    if swap is not None:
        return ExportedDisk(target, "", volume.format, volume.size_bytes, swap_uuid=swap[0], swap_label=swap[1])
    name = f"{target}.raw.zst"
    raw_hash, stored_hash = hashlib.sha256(), hashlib.sha256()
    comp = codec.compressor(Compression.ZSTD, 3, os.cpu_count() or 1)
    stored = 0
    with storage.raw_view(path, volume.format) as view, open(out / name, "xb") as sink:
        fd = os.open(view, os.O_RDONLY)
        try:
            done = 0
            for data in _read_sparse(fd, volume.size_bytes):
                raw_hash.update(data)
                piece = comp.compress(data)
                stored_hash.update(piece)
                sink.write(piece)
                stored += len(piece)
                done += len(data)
                progress(done)
            tail = comp.flush()
            stored_hash.update(tail)
            sink.write(tail)
            stored += len(tail)
            sink.flush()
            os.fsync(sink.fileno())
        finally:
            os.close(fd)
    return ExportedDisk(
        target, name, volume.format, volume.size_bytes, raw_hash.hexdigest(), stored, stored_hash.hexdigest()
    )


def _read_sparse(fd: int, size: int) -> Iterator[bytes]:
    """The contents of the first `size` bytes, holes given as zeros without reading them."""
    pos = 0
    for start, end in data_ranges(fd, size):
        while pos < start:
            n = min(CHUNK, start - pos)
            yield ZEROS[:n]
            pos += n
        while pos < end:
            data = os.pread(fd, min(CHUNK, end - pos), pos)
            if not data:
                raise Dom0Error(f"the disk ended at byte {pos}, before its size {size}")
            yield data
            pos += len(data)
    while pos < size:
        n = min(CHUNK, size - pos)
        yield ZEROS[:n]
        pos += n


# -- import ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """Where an export goes on this host."""

    directory: Path
    manifest: ExportManifest
    name: str
    uuid: str
    macs: tuple[str, ...]
    destinations: tuple[tuple[ExportedDisk, str], ...]  # disk -> new path (file or /dev/VG/LV)
    vg: str  # '' when disks become files
    definition: str


def plan_import(
    hv: Hypervisor, directory: Path, *, name: str = "", storage_at: str = "", rng: random.Random | None = None
) -> ImportPlan:
    """Check the export (every checksum) and decide where everything goes; nothing is written."""
    manifest = ExportManifest.read(directory)
    for disk in manifest.disks:
        if disk.file:
            _verify(directory / disk.file, disk)
    new_name = name or manifest.name
    try:
        hv.guest(new_name)
    except GuestNotFound:
        pass
    else:
        raise Dom0Error(f"a guest named {new_name!r} already exists here", "import it under another name with --name")
    vg, folder = _storage(storage_at)
    destinations = []
    for disk in manifest.disks:
        dest = f"/dev/{vg}/{new_name}-{disk.target}" if vg else str(folder / f"{new_name}-{disk.target}.img")
        if Path(dest).exists():
            raise Dom0Error(
                f"{dest} already exists: importing would overwrite it", "choose another --name or --storage"
            )
        destinations.append((disk, dest))
    definition = (directory / manifest.definition).read_text()
    renamed = new_name != manifest.name
    rng = rng or random.SystemRandom()
    details_macs = _macs_of(definition)
    if renamed:  # a second copy on this host: it needs its own identity
        macs, new_uuid = fresh_macs(hv, (), len(details_macs), rng), fresh_uuid(rng)
    else:
        macs, new_uuid = details_macs, manifest.uuid
    change = CloneChange(
        name=new_name,
        uuid=new_uuid,
        macs=macs,
        disks={d.target: DiskRewrite(dest, bool(vg), "raw") for d, dest in destinations},
    )
    xml = clone_xml(definition, change).xml
    return ImportPlan(directory, manifest, new_name, new_uuid, macs, tuple(destinations), vg, xml)


def _macs_of(xml: str) -> tuple[str, ...]:
    from dom0.hypervisor.domxml import parse

    return tuple(n.mac for n in parse(xml).nics)


def _storage(where: str) -> tuple[str, Path]:
    """A volume group (when `where` names one) or a directory (default: libvirt's image directory)."""
    if where and not where.startswith("/"):
        try:
            storage.vg_info(where)
        except Dom0Error as exc:
            raise UsageError(f"--storage {where}: no such volume group", "give a directory (absolute) or a VG") from exc
        return where, Path()
    folder = Path(where or "/var/lib/libvirt/images")
    if not folder.is_dir():
        raise UsageError(f"--storage {folder} is not a directory")
    return "", folder


def _verify(path: Path, disk: ExportedDisk) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise Dom0Error(f"{path} is missing from the export") from exc
    if size != disk.stored_bytes:
        raise Dom0Error(f"{path} is damaged: {size} bytes, the manifest says {disk.stored_bytes}")
    if sha256_file(path) != disk.stored_sha256:
        raise Dom0Error(f"{path} is damaged: its checksum does not match the manifest's", "copy the export again")


def apply_import(hv: Hypervisor, plan: ImportPlan, bar: Callable[[str, int], Progress] | None = None) -> str:
    """Write the disks, define the guest; on failure remove what was created. The new guest's name."""
    created: list[storage.Created] = []
    defined = ""
    try:
        guest = hv.define(plan.definition)
        defined = guest.uuid
        for disk, dest in plan.destinations:
            progress = bar(disk.target, disk.size_bytes) if bar else _quiet
            if plan.vg:
                created.append(storage.create_lv(plan.vg, Path(dest).name, disk.size_bytes))
            if disk.swap_uuid or not disk.file:
                made = storage.make_swap(Path(dest), disk.size_bytes, disk.swap_uuid, disk.swap_label)
                if made is not None:
                    created.append(made)
                continue
            if not plan.vg:
                created.append(storage.create_file(Path(dest), disk.size_bytes))
            _write_disk(plan.directory / disk.file, Path(dest), disk, progress)
    except BaseException as exc:
        for c in reversed(created):
            with contextlib.suppress(Dom0Error):
                storage.remove_created(c)
        if defined:
            with contextlib.suppress(Dom0Error):
                hv.undefine(defined)
        if isinstance(exc, Dom0Error):
            raise Dom0Error(f"cannot import {plan.name}: {exc.message}; removed what it had created", exc.hint) from exc
        raise
    return plan.name


def _write_disk(stored: Path, dest: Path, disk: ExportedDisk, progress: Progress) -> None:
    """Decompress into `dest` (already created, `size_bytes` long), skipping all-zero blocks; check the checksum."""
    dec = codec.decompressor(Compression.ZSTD)
    digest = hashlib.sha256()
    fd = os.open(dest, os.O_WRONLY)
    pos = 0
    pending = b""
    try:
        with stored.open("rb") as f:
            while chunk := f.read(CHUNK):
                data = pending + dec.decompress(chunk)
                usable = len(data) - len(data) % BLOCK
                block, pending = data[:usable], data[usable:]
                digest.update(block)
                pos = _write_blocks(fd, block, pos)
                progress(pos)
        digest.update(pending)
        pos = _write_blocks(fd, pending, pos)
        os.fsync(fd)
    finally:
        os.close(fd)
    if not dec.finished or pos != disk.size_bytes or digest.hexdigest() != disk.raw_sha256:
        raise Dom0Error(f"{stored} did not decompress to the disk the manifest describes")


def _write_blocks(fd: int, data: bytes, pos: int) -> int:
    view = memoryview(data)
    for i in range(0, len(view), BLOCK):
        block = view[i : i + BLOCK]
        if block.tobytes().count(0) != len(block):
            os.pwrite(fd, block, pos + i)
    return pos + len(view)
