"""`dom0 export` / `dom0 import`: a guest carried to another host as a directory (on a USB disk, say).

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
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dom0 import storage
from dom0.clone.definition import CloneChange, DiskRewrite, clone_definition, definition_macs, place_logs
from dom0.clone.macs import fresh_macs, fresh_uuid
from dom0.clone.screen import DISK_TARGET, GUEST_NAME_HINT, BootFileCheck, screen, valid_guest_name
from dom0.errors import Dom0Error, GuestNotFound, GuestStateError, UsageError
from dom0.filedata import DEFINITION_LIMIT, JSON_LIMIT, confirm_opened, kind_of
from dom0.hypervisor import Hypervisor
from dom0.hypervisor.control import paused_while
from dom0.hypervisor.definition import DefinitionFormat, definition_format, host_format
from dom0.model import BarFactory, DiskSource, GuestState, Progress, no_bar
from dom0.saves import codec
from dom0.saves.codec import Compression
from dom0.storage.files import data_ranges

FORMAT_VERSION = 1
DEFINITIONS = tuple(f.file_name for f in DefinitionFormat)  # definition.xml (libvirt), definition.cfg (xl://)
MAX_DISK_BYTES = 1 << 60  # a sanity bound on declared sizes; the destination's free space is the real one
CHUNK = 1 << 20
ZEROS = bytes(CHUNK)
BLOCK = 64 * 1024  # import skips writing all-zero blocks of this size: the new disk stays sparse
_COPIED = (DiskSource.FILE, DiskSource.BLOCK)


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
        with _ExportDir(directory) as export:
            return cls.parse(export.read("manifest.json", JSON_LIMIT), directory / "manifest.json")

    @classmethod
    def parse(cls, data: bytes, path: Path) -> ExportManifest:
        """The manifest in `data` (untrusted: any bytes); Dom0Error naming the first thing wrong in it."""
        hint = "give the directory `dom0 export` wrote (DIR/NAME), copied whole"
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested thousands deep
            reason = "nested too deeply" if isinstance(exc, RecursionError) else "not valid JSON"
            raise Dom0Error(f"{path} is not a dom0 export manifest ({reason})", hint) from exc
        if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION:
            raise Dom0Error(f"{path} is not a dom0 export manifest (version {FORMAT_VERSION})", hint)
        fields = _typed(doc, _MANIFEST_FIELDS, path, "")
        raw_disks = doc.get("disks")
        if not isinstance(raw_disks, list):
            raise Dom0Error(f"{path}: disks must be a list", hint)
        disks = []
        for n, d in enumerate(raw_disks):
            if not isinstance(d, dict):
                raise Dom0Error(f"{path}: disk {n + 1} must be an object", hint)
            disks.append(ExportedDisk(**_typed(d, _DISK_FIELDS, path, f"disk {n + 1}: ")))
        manifest = cls(disks=tuple(disks), **fields)
        manifest._check(path)
        return manifest

    def _check(self, path: Path) -> None:
        def bad(what: str) -> Dom0Error:
            return Dom0Error(f"{path}: {what}", "the export was altered or is not dom0's: copy it again")

        if not valid_guest_name(self.name):
            raise bad(f"{self.name[:80]!r} cannot be a guest name ({GUEST_NAME_HINT})")
        if not _UUID.fullmatch(self.uuid):
            raise bad(f"{self.uuid[:80]!r} is not a UUID")
        if self.definition not in DEFINITIONS:
            raise bad(f"the definition must be one of {', '.join(DEFINITIONS)}, not {self.definition[:80]!r}")
        targets, files = set(), {"manifest.json", *DEFINITIONS}
        for d in self.disks:
            if not DISK_TARGET.fullmatch(d.target) or d.target in targets:
                raise bad(f"disk {d.target[:80]!r} is not a disk name (vda, xvdb, ...) or is listed twice")
            targets.add(d.target)
            if not 0 <= d.size_bytes <= MAX_DISK_BYTES:
                raise bad(f"disk {d.target} has an impossible size {d.size_bytes}")
            if d.file:
                if "/" in d.file or "\0" in d.file or d.file.startswith(".") or d.file in files:
                    raise bad(f"disk {d.target} names {d.file[:80]!r}, which is not a file beside the manifest")
                files.add(d.file)
                if not (_SHA256.fullmatch(d.raw_sha256) and _SHA256.fullmatch(d.stored_sha256)):
                    raise bad(f"disk {d.target} has no valid SHA-256 checksums")
                if not 0 <= d.stored_bytes <= MAX_DISK_BYTES:
                    raise bad(f"disk {d.target} has an impossible stored size {d.stored_bytes}")
            elif (d.swap_uuid and not _UUID.fullmatch(d.swap_uuid)) or len(d.swap_label.encode()) > 16:
                raise bad(f"disk {d.target}: swap UUID {d.swap_uuid[:80]!r} or label {d.swap_label[:80]!r} is invalid")


def _typed(doc: dict[str, Any], spec: dict[str, tuple[type, bool]], path: Path, where: str) -> dict[str, Any]:
    """The fields of `spec` (name -> (type, required)) from `doc`, each of exactly its type."""
    out = {}
    for key, (kind, required) in spec.items():
        if key not in doc:
            if required:
                raise Dom0Error(f"{path}: {where}{key} is missing", "copy the export again")
            continue
        value = doc[key]
        if type(value) is not kind:  # not isinstance: true and false are not sizes
            raise Dom0Error(
                f"{path}: {where}{key} must be {'a number' if kind is int else 'a string'}, not {type(value).__name__}",
                "copy the export again",
            )
        out[key] = value
    return out


_MANIFEST_FIELDS: dict[str, tuple[type, bool]] = {
    k: (str, True) for k in ("name", "uuid", "uri", "definition", "exported_at")
}
_DISK_FIELDS: dict[str, tuple[type, bool]] = {
    "target": (str, True),
    "file": (str, True),
    "format": (str, True),
    "size_bytes": (int, True),
    "raw_sha256": (str, False),
    "stored_bytes": (int, False),
    "stored_sha256": (str, False),
    "swap_uuid": (str, False),
    "swap_label": (str, False),
}
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class _ExportDir:
    """An export directory, read without following anything inside it: every file must be a regular file.

    The administrator named the directory; what is in it is untrusted. A symlink there could point at any host
    file, a FIFO would hang the read and a device's open alone can act, so each name is looked at (lstat) before
    it is opened, opened with O_NOFOLLOW and O_NONBLOCK, and checked again on the descriptor.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            self.fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise Dom0Error(f"{directory} does not exist", "give the directory `dom0 export` wrote") from exc
        except OSError as exc:
            raise Dom0Error(
                f"cannot open {directory}: {exc.strerror}", "give the directory `dom0 export` wrote (DIR/NAME)"
            ) from exc

    def __enter__(self) -> _ExportDir:
        return self

    def __exit__(self, *_: object) -> None:
        os.close(self.fd)

    def open(self, name: str) -> int:
        """A read-only descriptor on the regular file `name` in the export."""
        path = self.directory / name
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
        try:
            before = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            if stat.S_ISREG(before.st_mode):
                fd = os.open(name, flags, dir_fd=self.fd)
        except FileNotFoundError as exc:
            raise Dom0Error(f"{path} is missing from the export", "copy the export again, whole") from exc
        except OSError as exc:
            raise Dom0Error(f"cannot read {path}: {exc.strerror}", "check the export's permissions") from exc
        if not stat.S_ISREG(before.st_mode):
            what = kind_of(before.st_mode)
            raise Dom0Error(f"{path} is {what}, not a file `dom0 export` wrote", "copy the export again, whole")
        return confirm_opened(fd, before, path)

    def read(self, name: str, limit: int) -> bytes:
        """The whole file `name`, at most `limit` bytes."""
        with os.fdopen(self.open(name), "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise Dom0Error(
                f"{self.directory / name} is larger than {limit >> 20} MiB: not what `dom0 export` writes there",
                "copy the export again, whole",
            )
        return data

    def sha256(self, name: str, size: int) -> str:
        """The SHA-256 of file `name`, which must be `size` bytes long."""
        with os.fdopen(self.open(name), "rb") as f:
            actual = os.fstat(f.fileno()).st_size
            if actual != size:
                raise Dom0Error(
                    f"{self.directory / name} is damaged: {actual} bytes, the manifest says {size}",
                    "copy the export again",
                )
            digest = hashlib.sha256()
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest()


# -- export ---------------------------------------------------------------------------------------------------


def export_guest(
    hv: Hypervisor, ref: str, directory: Path, *, pause: bool = False, bar: BarFactory = no_bar
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
            definition_file = definition_format(definition).file_name
            (out / definition_file).write_text(definition)
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
                progress = bar(disk.target, 0)
                disks.append(_export_disk(Path(disk.source), disk.format, disk.target, out, progress))
        manifest = ExportManifest(
            guest.name, guest.uuid, hv.uri, definition_file, tuple(disks),
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
    swap = storage.swap_identity(path, format=volume.format, chain_dirs=volume.chain_dirs)
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
    notes: tuple[str, ...] = ()  # what the definition had that this host's defaults replace


def boot_file_check(boot_dirs: Sequence[Path]) -> BootFileCheck:
    """Whether a direct-boot path lies, once symlinks and `..` are resolved, inside a directory the administrator
    named, and is a regular file there."""
    roots = [os.path.realpath(d) for d in boot_dirs]

    def vouched(path: str) -> bool:
        if not roots or not path.startswith("/"):
            return False
        real = os.path.realpath(path)
        if not any(real.startswith(root.rstrip("/") + "/") for root in roots):
            return False
        try:
            return stat.S_ISREG(os.stat(real).st_mode)
        except OSError:
            return False

    return vouched


def plan_import(
    hv: Hypervisor,
    directory: Path,
    *,
    name: str = "",
    storage_at: str = "",
    boot_dirs: Sequence[Path] = (),
    rng: random.Random | None = None,
) -> ImportPlan:
    """Check the export (every checksum, every path its definition names) and decide where everything goes;
    nothing is written. A kernel, initrd or device tree the definition names is kept only when it is a regular
    file of this host inside one of `boot_dirs` (the administrator's word); any other host path is refused."""
    if name and not valid_guest_name(name):
        raise UsageError(f"--name {name[:80]!r} cannot be a guest name", GUEST_NAME_HINT)
    with _ExportDir(directory) as export:
        manifest = ExportManifest.parse(export.read("manifest.json", JSON_LIMIT), directory / "manifest.json")
        for disk in manifest.disks:
            if disk.file and export.sha256(disk.file, disk.stored_bytes) != disk.stored_sha256:
                raise Dom0Error(
                    f"{directory / disk.file} is damaged: its checksum does not match the manifest's",
                    "copy the export again",
                )
        raw = export.read(manifest.definition, DEFINITION_LIMIT)
    source = str(directory / manifest.definition)
    try:
        definition = raw.decode()
    except UnicodeDecodeError as exc:
        raise Dom0Error(f"{source} is not text (byte {exc.start} is not UTF-8)", "copy the export again") from exc
    fmt, notes = _format_of(definition, manifest.definition, source)
    screened = screen(definition, fmt, [d.target for d in manifest.disks], source, boot_file_check(boot_dirs))
    if fmt is not host_format(hv):
        raise Dom0Error(
            f"{source} is {fmt.words}, and {hv.uri} defines guests from {host_format(hv).words}",
            "import it on a host whose hypervisor takes it: xl.cfg through -c xl://, libvirt XML through libvirt",
        )
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
        if os.path.lexists(dest):
            raise Dom0Error(
                f"{dest} already exists: importing would overwrite it", "choose another --name or --storage"
            )
        destinations.append((disk, dest))
    _check_room(manifest, vg, folder)
    renamed = new_name != manifest.name
    rng = rng or random.SystemRandom()
    old_macs = definition_macs(screened.text)
    if renamed:  # a second copy on this host: it needs its own identity
        macs, new_uuid = fresh_macs(hv, (), len(old_macs), rng), fresh_uuid(rng)
    else:
        macs, new_uuid = old_macs, manifest.uuid
    change = CloneChange(
        name=new_name,
        uuid=new_uuid,
        macs=macs,
        disks={d.target: DiskRewrite(dest, bool(vg), "raw") for d, dest in destinations},
    )
    text = clone_definition(screened.text, change).text
    if fmt is DefinitionFormat.LIBVIRT_XML:
        logs = Path("/var/log/libvirt") if vg else folder  # beside the disks when they are files
        text = place_logs(text, str(logs / f"{new_name}-console.log"))
    return ImportPlan(
        directory, manifest, new_name, new_uuid, macs, tuple(destinations), vg, text, (*notes, *screened.notes)
    )  # fmt: skip


def _format_of(definition: str, file_name: str, source: str) -> tuple[DefinitionFormat, tuple[str, ...]]:
    """The definition's format, and a note when its text says otherwise than its file name: exports written
    before the format was told from the text named some xl.cfg files definition.xml. Blank text keeps the
    declared format, whose reader then says what is wrong with it."""
    declared = DefinitionFormat.named(file_name)
    if not definition.strip():
        return declared, ()
    actual = definition_format(definition)
    if actual is declared:
        return actual, ()
    return actual, (f"{source} holds {actual.words}: read as such",)


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


def _check_room(manifest: ExportManifest, vg: str, folder: Path) -> None:
    """Refuse before writing anything when the disks' declared sizes do not fit where they go."""
    need = sum(d.size_bytes for d in manifest.disks)
    if vg:
        free, where = storage.vg_info(vg).free_bytes, f"volume group {vg}"
    else:
        st = os.statvfs(folder)
        free, where = st.f_bavail * st.f_frsize, str(folder)
    if need > free:
        raise Dom0Error(
            f"the export's disks need {need} bytes, but {where} has {free} free",
            "import into a place with more room (--storage), or free some space",
        )


def apply_import(hv: Hypervisor, plan: ImportPlan, bar: BarFactory = no_bar) -> str:
    """Write the disks, define the guest; on failure remove what was created. The new guest's name."""
    created: list[storage.Created] = []
    defined = ""
    try:
        # undone by name: xl:// finds a stopped guest's xl.cfg by its name only (it keeps no UUIDs of its own)
        defined = hv.define(plan.definition).name
        for disk, dest in plan.destinations:
            progress = bar(disk.target, disk.size_bytes)
            if plan.vg:
                created.append(storage.create_lv(plan.vg, Path(dest).name, disk.size_bytes))
            if disk.swap_uuid or not disk.file:
                made = storage.make_swap(Path(dest), disk.size_bytes, disk.swap_uuid, disk.swap_label)
                if made is not None:
                    created.append(made)
                continue
            if not plan.vg:
                created.append(storage.create_file(Path(dest), disk.size_bytes))
            _write_disk(plan.directory, Path(dest), disk, progress, block=bool(plan.vg))
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


def _write_disk(directory: Path, dest: Path, disk: ExportedDisk, progress: Progress, *, block: bool) -> None:
    """Decompress into `dest` (already created, `size_bytes` long); check the checksum. All-zero blocks are not
    written into a new file, which reads them as zeros already; a new LV holds whatever its extents held before
    (lvcreate wipes only its first 4 KiB), so there they are zeroed.

    The stored file is untrusted: it is decoded a chunk at a time into one bounded buffer and stops being read the
    moment it yields more than the manifest's size (a few hundred KiB of zstd can claim terabytes of zeros).
    """
    stored = directory / disk.file
    with _ExportDir(directory) as export, os.fdopen(export.open(disk.file), "rb") as src:
        # /dev/VG/LV is udev's symlink to the LV this run created; a file destination is never a symlink
        fd = os.open(dest, os.O_WRONLY | os.O_CLOEXEC | (0 if block else os.O_NOFOLLOW))
        try:
            sink = _DiskSink(fd, disk.size_bytes, progress, stored, reads_zero=not block)
            try:
                codec.copy_decompressed(Compression.ZSTD, src, sink, CHUNK)
            except codec.DECODE_ERRORS as exc:
                raise Dom0Error(
                    f"{stored} is damaged: it does not decompress as zstd", "copy the export again"
                ) from exc
            sink.close()
            os.fsync(fd)
        finally:
            os.close(fd)
    if sink.pos != disk.size_bytes or sink.digest.hexdigest() != disk.raw_sha256:
        raise Dom0Error(f"{stored} did not decompress to the disk the manifest describes", "copy the export again")


class _DiskSink:
    """Where an imported disk's decoded bytes go: written sparse (all-zero blocks skipped where the destination
    `reads_zero` already, zeroed otherwise), counted, hashed, and refused past the size the manifest declares."""

    def __init__(self, fd: int, limit: int, progress: Progress, stored: Path, *, reads_zero: bool) -> None:
        self.fd, self.limit, self.progress, self.stored = fd, limit, progress, stored
        self.reads_zero = reads_zero
        self.device = stat.S_ISBLK(os.fstat(fd).st_mode)
        self.pos = 0
        self.pending = bytearray()
        self.digest = hashlib.sha256()

    def write(self, data: bytes | memoryview, /) -> int:
        if self.pos + len(self.pending) + len(data) > self.limit:
            raise Dom0Error(
                f"{self.stored} decompresses to more than the {self.limit} bytes the manifest declares",
                "the export is damaged or crafted: copy it again from the source host",
            )
        self.pending += data
        usable = len(self.pending) - len(self.pending) % BLOCK
        if usable:
            block = bytes(self.pending[:usable])
            del self.pending[:usable]
            self.digest.update(block)
            self.pos = self._write_blocks(block)
            self.progress(self.pos)
        return len(data)

    def close(self) -> None:
        block = bytes(self.pending)
        self.pending.clear()
        self.digest.update(block)
        self.pos = self._write_blocks(block)

    def _write_blocks(self, data: bytes) -> int:
        """Write `data` at the current position; where the next bytes go."""
        view, pos = memoryview(data), self.pos
        zeros_from = -1  # where the run of all-zero blocks not yet zeroed starts
        for i in range(0, len(view), BLOCK):
            block = view[i : i + BLOCK]
            if block.tobytes().count(0) != len(block):
                if zeros_from >= 0:
                    storage.zero_range(self.fd, pos + zeros_from, pos + i, self.device)
                    zeros_from = -1
                os.pwrite(self.fd, block, pos + i)
            elif not self.reads_zero and zeros_from < 0:
                zeros_from = i
        if zeros_from >= 0:
            storage.zero_range(self.fd, pos + zeros_from, pos + len(view), self.device)
        return pos + len(view)
