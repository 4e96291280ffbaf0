"""One guest saved through a FIFO into a compressed image, and one image restored the same way.

Save: hypervisor -> FIFO -> the driver's stream fixer -> compressor -> sha256 -> a partial file in a private work
directory; complete, it is described by its manifest, fsynced and renamed into place. The guest stops only once
its image is on disk: libvirt's QEMU driver waits for its second open of the FIFO (see saveimage/qemu.py; a fresh
FIFO is swapped in during the stream so that open cannot slip through early), which dom0 grants after the fsync; if
anything fails before, dom0 makes the hypervisor's save fail (saves/hangup.py) and the guest keeps running.
Restore checks size, checksum and header before the hypervisor sees a byte.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from dom0.errors import Dom0Error, GuestNotFound, GuestStateError
from dom0.filedata import kind_of, open_regular
from dom0.hypervisor import Hypervisor
from dom0.locks import LockKey
from dom0.model import Guest, GuestState, Progress, SaveFormat, no_progress
from dom0.saves import codec, manifest
from dom0.saves.codec import Compression
from dom0.saves.fifo import (
    Background,
    WorkDir,
    fsync_dir,
    fsync_file,
    open_reader,
    open_writer,
    read_all,
    write_all,
)
from dom0.saves.formats import HEAD_BYTES, ImageHeader, StreamFixer, fixer_for, sniff
from dom0.saves.manifest import Manifest

CHUNK = 1 << 20
# After dom0 closes its end mid-stream, the hypervisor notices at its next write; it then resumes the guest.
ABORT_WAIT_S = 120.0


@dataclass(frozen=True, slots=True)
class SaveOptions:
    """How images are written: where, with which compressor, how many compressor threads per guest."""

    directory: Path
    compression: Compression = Compression.ZSTD
    level: int = 3
    threads: int = 1
    replace: bool = False


@dataclass(frozen=True, slots=True)
class SavePlan:
    """What saving one guest will write."""

    guest: Guest
    image: Path
    manifest: Path
    replaces: bool  # an older image of this guest is replaced once the new one is complete
    autostart: bool = False  # the host would start this guest at boot


def plan_save(hv: Hypervisor, guest: Guest, options: SaveOptions) -> SavePlan:
    """Check one guest can be saved into `options.directory`; the plan, or Dom0Error saying why not."""
    if hv.save_format is None:
        raise Dom0Error(f"{hv.uri} cannot save guests", "dom0 saves through libvirt's QEMU or Xen driver, or xl")
    if not guest.state.is_active:
        raise GuestStateError(f"{guest.name} is {guest.state.words.split(':')[0]}: only a running guest can be saved")
    image = manifest.image_path(options.directory, guest.name, options.compression)
    meta = manifest.manifest_path(options.directory, guest.name)
    existing = existing_images(options.directory, guest.name)
    if existing and not options.replace:
        raise Dom0Error(
            f"{existing[0]} already exists: {guest.name} has an image that was never restored",
            f"`dom0 restore {meta}` first, or save with --replace to replace it once the new image is complete",
        )
    autostart = guest.name in hv.autostart_guests()
    return SavePlan(guest, image, meta, bool(existing), autostart)


def _images(directory: Path, name: str) -> list[Path]:
    return [manifest.image_path(directory, name, c) for c in Compression]


def existing_images(directory: Path, name: str) -> list[Path]:
    """The guest's manifest and images already in `directory`; Dom0Error when one of those names is taken by
    anything but a regular file. Checked before the save: the new image is renamed over the old one only after the
    hypervisor stopped the guest, and a directory there would make that rename fail with the guest gone."""
    found = []
    for path in (manifest.manifest_path(directory, name), *_images(directory, name)):
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise Dom0Error(f"cannot look at {path}: {exc.strerror}") from exc
        if not stat.S_ISREG(mode):
            raise Dom0Error(
                f"{path} is {kind_of(mode)}: {name}'s image would have to replace it",
                "move it out of the save directory, or save into another one with -d",
            )
        found.append(path)
    return found


class _Sink:
    """The partial image file: counts and hashes what is stored."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        if data:
            self.hash.update(data)
            write_all(self.fd, data)
            self.size += len(data)

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def save_guest(hv: Hypervisor, plan: SavePlan, options: SaveOptions, progress: Progress = no_progress) -> Manifest:
    """Save one running guest into its compressed image; the guest keeps running if this fails."""
    fmt = hv.save_format
    assert fmt is not None  # plan_save checked
    guest = plan.guest
    fixer = fixer_for(fmt)
    with WorkDir(options.directory, "save", guest.name) as work:
        partial = work.path / (plan.image.name + ".partial")
        partial_meta = work.path / (plan.manifest.name + ".partial")
        sink = _Sink(partial)
        job = Background(lambda: hv.save(guest.uuid, str(work.fifo)), f"save {guest.name}")
        try:
            raw = _pump(work, job, fixer, sink, options=options, progress=progress)
        except BaseException as exc:
            sink.close()
            raise _save_failed(hv, guest, work, job, exc) from exc
        state = "paused" if guest.state is GuestState.PAUSED else "running"
        record = Manifest(
            name=guest.name,
            uuid=guest.uuid,
            uri=hv.uri,
            save_format=fmt,
            compression=options.compression,
            level=options.level,
            raw_bytes=raw,
            stored_bytes=sink.size,
            sha256=sink.hash.hexdigest(),
            saved_at=datetime.now(UTC).isoformat(timespec="seconds"),
            state=state,
            image=plan.image.name,
            autostart=plan.autostart,
        )
        # The manifest goes down the moment the last byte is written, before the (slow) fsync: a dom0 killed from
        # here on leaves a complete image that the next run's sweep finishes (fifo.sweep).
        try:
            manifest.write(partial_meta, record)
            sink.sync()
            fsync_file(partial_meta)
        except BaseException as exc:
            raise _save_failed(hv, guest, work, job, exc) from exc
        finally:
            sink.close()
        try:
            if fixer.expects_trailer:
                # The image is durable now; this second open lets the hypervisor finish and stop the guest.
                fd = open_reader(work.fifo, job.alive)
                if fd is not None:
                    try:
                        fixer.trailer(read_all(fd))
                    finally:
                        os.close(fd)
            job.result()
        except BaseException as exc:
            raise _save_failed(hv, guest, work, job, exc) from exc
        for old in _images(options.directory, guest.name):
            if old != plan.image:
                old.unlink(missing_ok=True)  # --replace with another compressor: the older image is stale
        os.rename(partial, plan.image)
        os.rename(partial_meta, plan.manifest)
        fsync_dir(options.directory)
    if plan.autostart:
        hv.set_autostart(guest.uuid, False)
    return record


def _pump(
    work: WorkDir, job: Background[None], fixer: StreamFixer, sink: _Sink, *, options: SaveOptions, progress: Progress
) -> int:
    """Carry the hypervisor's stream from the FIFO into the compressed partial file; the raw bytes carried."""
    fd = open_reader(work.fifo, job.alive)
    if fd is None:
        job.result()
        raise Dom0Error("the hypervisor ended the save without writing anything")
    if fixer.expects_trailer:
        work.replace_fifo()  # while the stream is still far from its end (it cannot finish before dom0 reads it)
    raw = 0
    try:
        comp = codec.compressor(options.compression, options.level, options.threads)
        while chunk := os.read(fd, CHUNK):
            piece = fixer.feed(chunk)
            raw += len(piece)
            sink.write(comp.compress(piece))
            progress(raw)
    finally:
        os.close(fd)  # mid-stream, this is what makes the hypervisor's save fail and the guest carry on
    sink.write(comp.flush())
    return raw


def _save_failed(hv: Hypervisor, guest: Guest, work: WorkDir, job: Background[None], exc: BaseException) -> Dom0Error:
    """The error for a save that did not complete, saying what became of the guest."""
    directory = work.path.parent
    if not job.wait(0.5):
        work.cancel_waiting_writer()  # the stream had ended: the hypervisor waits on its second open
        job.wait(ABORT_WAIT_S)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        reason = f"{directory} is full"
        hint = "free some space, or save to another directory with -d"
    elif isinstance(exc, KeyboardInterrupt):
        reason, hint = "interrupted", ""
    elif isinstance(exc, Dom0Error):
        reason, hint = exc.message, exc.hint
    elif isinstance(exc, OSError):
        reason, hint = f"{exc.strerror or exc}", ""
    else:
        reason, hint = str(exc) or type(exc).__name__, ""
    try:
        now = hv.guest(guest.uuid).state
        fate = f"{guest.name} keeps running" if now.is_active else f"{guest.name} is now {now}"
    except Dom0Error:
        fate = f"{guest.name} is no longer known to the hypervisor"
    return Dom0Error(f"cannot save {guest.name}: {reason}; {fate}, no image was kept", hint)


# -- restore --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RestorePlan:
    """One image checked and ready to restore."""

    image: Path
    manifest_path: Path | None  # None for a bare hypervisor image (virsh save, xl save) restored as it is
    record: Manifest | None
    header: ImageHeader
    paused: bool

    @property
    def name(self) -> str:
        """The guest's name as the image records it."""
        return self.record.name if self.record else self.header.name


def plan_restore(hv: Hypervisor, path: Path, *, paused: bool = False) -> RestorePlan:
    """Check an image (its manifest, or a bare hypervisor image) before the hypervisor sees it."""
    if path.name.endswith(manifest.SUFFIX):
        meta: Path | None = path
    else:
        beside = manifest.manifest_path(path.parent, _guest_name_of(path))
        meta = beside if beside.exists() else None
    if meta is None:
        return _plan_bare(hv, path, paused)
    record = manifest.read(meta)
    image = meta.parent / record.image
    _check_format(hv, record.save_format, f"{record.name}'s image", record.uri)
    if record.raw_bytes > _plausible_raw_bytes():
        raise Dom0Error(
            f"{meta} declares a {record.raw_bytes}-byte image, more than this host's memory could ever hold",
            "the manifest is damaged or was not written by `dom0 save`; it cannot be restored",
        )
    with os.fdopen(_open_image(image, meta), "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size != record.stored_bytes:
            raise Dom0Error(
                f"{image} is damaged: {size} bytes, its manifest says {record.stored_bytes}",
                "the save was cut short or the file was changed; it cannot be restored safely",
            )
        if hashlib.file_digest(f, "sha256").hexdigest() != record.sha256:
            raise Dom0Error(
                f"{image} is damaged: its checksum does not match the manifest's",
                "the file changed after it was saved; it cannot be restored safely",
            )
        f.seek(0)
        try:
            head = codec.head(record.compression, f, min(HEAD_BYTES, record.raw_bytes))
        except codec.DECODE_ERRORS as exc:
            raise codec.decompress_error(record.compression, exc) from exc
    header = sniff(head)
    if header.format is not record.save_format or (header.uuid and header.uuid != record.uuid):
        raise Dom0Error(f"{image} does not hold the guest its manifest describes ({record.name})")
    _check_not_running(hv, header.uuid or record.uuid, record.name)
    return RestorePlan(image, meta, record, header, paused or record.state == "paused")


def restore_key(path: Path) -> LockKey | None:
    """The lock restoring `path` takes: the saved guest's UUID, from its manifest (a bare image's own header).

    None when the file says no UUID, or cannot be read: its check (`plan_restore`) then refuses it with the reason.
    """
    if path.name.endswith(manifest.SUFFIX):
        meta = path
    else:
        meta = manifest.manifest_path(path.parent, _guest_name_of(path))
        if not meta.exists():
            try:
                with os.fdopen(open_regular(path), "rb") as f:
                    header = sniff(f.read(HEAD_BYTES))
            except (Dom0Error, OSError):
                return None
            return LockKey(header.uuid, header.name or path.name) if header.uuid else None
    try:
        record = manifest.read(meta)
    except Dom0Error:
        return None
    key = LockKey(record.uuid, record.name)
    try:
        key.file_name  # noqa: B018  # refuses what is not a UUID before it could name a file
    except Dom0Error as exc:
        raise Dom0Error(
            f"{meta} gives {record.name}'s UUID as {record.uuid[:60]!r}, which is not a UUID",
            "the manifest is damaged or was not written by `dom0 save`; it cannot be restored",
        ) from exc
    return key


def _plausible_raw_bytes() -> int:
    """The most a guest's memory image can be here: twice the host's memory (ample for overcommitted guests)."""
    return 2 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _open_image(image: Path, meta: Path) -> int:
    """The image a manifest names, opened read-only: a regular file in the manifest's directory, never a link
    (the manifest names it; the administrator did not), a FIFO or a device, which could hang or never end."""
    try:
        fd = os.open(image, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise Dom0Error(f"{image} is missing; its manifest {meta.name} is all that is left") from exc
    except OSError as exc:
        why = "is a symbolic link, which dom0 does not follow from a manifest" if exc.errno == errno.ELOOP else ""
        raise Dom0Error(f"{image} {why or 'cannot be read: ' + (exc.strerror or str(exc))}", _NOT_AN_IMAGE) from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise Dom0Error(f"{image} is {kind_of(mode)}, not a save image file", _NOT_AN_IMAGE)
    os.set_blocking(fd, True)
    return fd


_NOT_AN_IMAGE = "the manifest's image must be the file `dom0 save` wrote beside it"


def _guest_name_of(image: Path) -> str:
    name = image.name
    for c in Compression:
        if c.suffix and name.endswith(".save" + c.suffix):
            return name[: -len(".save" + c.suffix)]
    return name.removesuffix(".save")


def _plan_bare(hv: Hypervisor, path: Path, paused: bool) -> RestorePlan:
    with os.fdopen(open_regular(path, "give an image written by `dom0 save`, `virsh save` or `xl save`"), "rb") as f:
        try:
            head = f.read(HEAD_BYTES)
        except OSError as exc:
            raise Dom0Error(f"cannot read {path}: {exc.strerror}") from exc
    if codec.detect(head) is not Compression.NONE:
        raise Dom0Error(
            f"{path} is compressed but has no manifest beside it",
            "dom0 restores its compressed images through their NAME.manifest.json",
        )
    header = sniff(head)
    _check_format(hv, header.format, str(path), "")
    _check_not_running(hv, header.uuid or header.name, header.name or path.name)
    return RestorePlan(path, None, None, header, paused)


def _check_format(hv: Hypervisor, fmt: SaveFormat, what: str, uri: str) -> None:
    if hv.save_format is not fmt:
        here = hv.save_format.description if hv.save_format else "a driver that cannot restore"
        where = f" (saved on {uri})" if uri else ""
        raise Dom0Error(
            f"{what} was made by {fmt.description}{where}; {hv.uri} is {here}",
            "restore it on a host of the kind that saved it",
        )


def _check_not_running(hv: Hypervisor, ref: str, name: str) -> None:
    if not ref:
        return
    try:
        current = hv.guest(ref)
    except GuestNotFound:
        return
    if current.state.is_active:
        raise GuestStateError(
            f"{name} is already running ({current.state}): restoring its image would start it twice",
            f"shut it down first if the image is what you want (`dom0 shutdown {name}`), or remove the image",
        )


class _Counted:
    """The image file, reporting how far it has been read."""

    def __init__(self, f: BinaryIO, progress: Progress) -> None:
        self._f = f
        self._progress = progress

    def read(self, size: int = -1, /) -> bytes:
        data = self._f.read(size)
        self._progress(self._f.tell())
        return data


class _Pipe:
    """The FIFO's write end; a pipe may take part of a write (a signal), so every byte is written."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, data: bytes | memoryview, /) -> int:
        write_all(self._fd, data)
        return len(data)


def restore_image(hv: Hypervisor, plan: RestorePlan, *, keep: bool = False, progress: Progress = no_progress) -> Guest:
    """Restore one checked image; the image is removed once the guest runs, unless `keep`."""
    if plan.record is None:
        guest = hv.restore(str(plan.image), paused=plan.paused, expect=plan.header.uuid)
        progress(plan.image.stat().st_size)
        return guest
    record = plan.record
    with WorkDir(plan.image.parent, "restore", record.name) as work:
        uuid = plan.header.uuid or record.uuid
        job = Background(lambda: hv.restore(str(work.fifo), paused=plan.paused, expect=uuid), f"restore {record.name}")
        fd = open_writer(work.fifo, job.alive)
        if fd is None:
            job.result()
            raise Dom0Error(f"the hypervisor ended the restore of {record.name} without reading the image")
        failure: BaseException | None = None
        try:
            with os.fdopen(_open_image(plan.image, plan.manifest_path or plan.image), "rb") as f:
                source = _Counted(f, progress)
                raw, finished = codec.copy_decompressed(record.compression, source, _Pipe(fd), CHUNK, record.raw_bytes)
            if not finished or raw != record.raw_bytes:
                failure = Dom0Error(f"{plan.image} ends early: it holds {raw} of {record.raw_bytes} bytes")
        except BrokenPipeError:
            pass  # the hypervisor stopped reading: its own error says why
        except codec.DECODE_ERRORS as exc:
            failure = codec.decompress_error(record.compression, exc)
        except BaseException as exc:
            failure = exc
        finally:
            os.close(fd)
        try:
            guest = job.result()
        except Dom0Error as exc:
            if failure is not None:
                raise failure from exc
            raise Dom0Error(f"cannot restore {record.name}: {exc.message}", exc.hint) from exc
        if failure is not None:
            raise failure
    if record.autostart:
        hv.set_autostart(guest.uuid, True)
    if not keep and plan.manifest_path is not None:
        plan.image.unlink(missing_ok=True)
        plan.manifest_path.unlink(missing_ok=True)
        fsync_dir(plan.image.parent)
    return guest
