"""Read-only random access to a disk image: a raw file, a block device (an LV) or a qcow2 chain, and windows into it.

Everything above this module reads bytes through `ImageSource.read_at`, so truncated images, partitions that point
past the end and LVs made of several extents all look the same: short reads at the end, never past it.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from dom0.errors import Dom0Error

QCOW2_MAGIC = b"QFI\xfb"
# A backing chain longer than this is almost certainly a loop that realpath could not see (or a mistake).
MAX_BACKING_DEPTH = 16


class ImageSource:
    """A read-only, random-access view of `size` bytes named `name` (subclasses supply `_read`)."""

    kind = "image"

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = max(0, size)

    def _read(self, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def read_at(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes at `offset`: shorter at the end of the source, empty past it."""
        if offset < 0 or length <= 0 or offset >= self.size:
            return b""
        return self._read(offset, min(length, self.size - offset))

    def window(self, offset: int, size: int) -> ImageSource:
        """The sub-range [offset, offset+size) as a source of its own; it must lie inside this one."""
        if offset < 0 or size < 0 or offset + size > self.size:
            raise Dom0Error(
                f"{self.name}: range {offset}+{size} lies outside the image ({self.size} bytes)",
                "the image may be truncated, or its partition table may be damaged",
            )
        return Window(self, offset, size)

    def data_extents(self, offset: int = 0, length: int | None = None) -> Iterator[tuple[int, int]]:
        """(offset, length) ranges that may hold data; holes in between read as zeros (default: all of it)."""
        end = self.size if length is None else min(self.size, offset + length)
        if offset < end:
            yield offset, end - offset

    def as_file(self) -> BinaryIO:
        """A seekable, read-only file object over this source (for dissect's parsers)."""
        return io.BufferedReader(_SourceFile(self), buffer_size=64 * 1024)

    def close(self) -> None:
        """Release what the source holds open (idempotent)."""

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.size} bytes>"


class BytesSource(ImageSource):
    """A source over bytes in memory (tests, and small synthesized images)."""

    kind = "bytes"

    def __init__(self, data: bytes, name: str = "<bytes>") -> None:
        super().__init__(name, len(data))
        self._data = data

    def _read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]


class FileSource(ImageSource):
    """A raw image file or a block device, read with pread (no shared file position)."""

    def __init__(self, path: Path, fd: int, size: int, kind: str) -> None:
        super().__init__(str(path), size)
        self.path = path
        self.kind = kind
        self._fd = fd

    def _read(self, offset: int, length: int) -> bytes:
        try:
            return os.pread(self._fd, length, offset)
        except OSError as exc:
            raise Dom0Error(f"cannot read {self.name} at byte {offset}: {exc.strerror}") from exc

    def data_extents(self, offset: int = 0, length: int | None = None) -> Iterator[tuple[int, int]]:
        """The file's data regions from SEEK_DATA/SEEK_HOLE, so holes are skipped without reading them."""
        end = self.size if length is None else min(self.size, offset + length)
        pos = offset
        while pos < end:
            try:
                data = os.lseek(self._fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole from here to the end
                    return
                yield pos, end - pos  # the file system cannot tell: treat the rest as data
                return
            if data >= end:
                return
            try:
                hole = os.lseek(self._fd, data, os.SEEK_HOLE)
            except OSError:
                hole = end
            hole = min(hole, end)
            yield data, hole - data
            pos = hole

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class StreamSource(ImageSource):
    """A source over a seekable stream (dissect's qcow2 reader), keeping the files it depends on open."""

    def __init__(self, name: str, stream: BinaryIO, size: int, kind: str, keep: Sequence[BinaryIO] = ()) -> None:
        super().__init__(name, size)
        self.kind = kind
        self._stream = stream
        self._keep = list(keep)

    def _read(self, offset: int, length: int) -> bytes:
        try:
            self._stream.seek(offset)
            return self._stream.read(length)
        except Dom0Error:
            raise
        except Exception as exc:  # dissect raises its own types, or struct/zlib errors on a damaged image
            raise Dom0Error(
                f"cannot read {self.name} at byte {offset}: {exc}", "the image may be damaged; try qemu-img check"
            ) from exc

    def close(self) -> None:
        for fh in self._keep:
            fh.close()
        self._keep = []


class Window(ImageSource):
    """Bytes [offset, offset+size) of another source."""

    def __init__(self, parent: ImageSource, offset: int, size: int) -> None:
        super().__init__(parent.name, size)
        self.kind = parent.kind
        self.parent = parent
        self.offset = offset

    def _read(self, offset: int, length: int) -> bytes:
        return self.parent.read_at(self.offset + offset, length)

    def data_extents(self, offset: int = 0, length: int | None = None) -> Iterator[tuple[int, int]]:
        end = self.size if length is None else min(self.size, offset + length)
        if offset >= end:
            return
        for start, size in self.parent.data_extents(self.offset + offset, end - offset):
            yield start - self.offset, size


class MappedSource(ImageSource):
    """A source stitched from pieces of others: `segments` are (offset here, size, parent, offset there)."""

    def __init__(self, name: str, size: int, segments: Sequence[tuple[int, int, ImageSource, int]]) -> None:
        super().__init__(name, size)
        self.segments = sorted(segments, key=lambda s: s[0])

    def _pieces(self, offset: int, length: int) -> Iterator[tuple[int, int, ImageSource | None, int]]:
        """(offset here, length, parent or None for an unmapped gap, offset in parent) covering the range."""
        pos, end = offset, offset + length
        for seg_start, seg_size, parent, parent_off in self.segments:
            seg_end = seg_start + seg_size
            if seg_end <= pos:
                continue
            if pos >= end:
                return
            if seg_start > pos:
                gap_end = min(seg_start, end)
                yield pos, gap_end - pos, None, 0
                pos = gap_end
                if pos >= end:
                    return
            take = min(seg_end, end) - pos
            yield pos, take, parent, parent_off + (pos - seg_start)
            pos += take
        if pos < end:
            yield pos, end - pos, None, 0

    def _read(self, offset: int, length: int) -> bytes:
        out = bytearray()
        for _, size, parent, parent_off in self._pieces(offset, length):
            chunk = parent.read_at(parent_off, size) if parent is not None else b""
            out += chunk.ljust(size, b"\0")
        return bytes(out)

    def data_extents(self, offset: int = 0, length: int | None = None) -> Iterator[tuple[int, int]]:
        end = self.size if length is None else min(self.size, offset + length)
        if offset >= end:
            return
        for here, size, parent, parent_off in self._pieces(offset, end - offset):
            if parent is not None:
                for start, run in parent.data_extents(parent_off, size):
                    yield here + (start - parent_off), run


class _SourceFile(io.RawIOBase):
    """The raw file object behind ImageSource.as_file."""

    def __init__(self, source: ImageSource) -> None:
        super().__init__()
        self._source = source
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._source.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise OSError(errno.EINVAL, "negative seek position")
        self._pos = pos
        return pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._source.read_at(self._pos, len(buffer))
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _open_fd(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except PermissionError as exc:
        raise Dom0Error(
            f"cannot read {path}: permission denied", "run as root or add read permission to the image"
        ) from exc
    except FileNotFoundError as exc:
        raise Dom0Error(f"{path}: no such file", "check the path of the image") from exc
    except OSError as exc:
        raise Dom0Error(f"cannot open {path}: {exc.strerror}") from exc


def _qcow2_backing(path: Path, header: bytes) -> str | None:
    """The backing file name recorded in a qcow2 header, or None."""
    if len(header) < 20:
        raise Dom0Error(f"{path}: truncated qcow2 header", "the image is damaged")
    version, backing_off, backing_len = struct.unpack_from(">IQI", header, 4)
    if version not in (2, 3):
        raise Dom0Error(f"{path}: unsupported qcow2 version {version}", "convert it with qemu-img convert")
    if not backing_off or not backing_len:
        return None
    if backing_len > 1023:
        raise Dom0Error(f"{path}: qcow2 backing file name is {backing_len} bytes long", "the image is damaged")
    with path.open("rb") as fh:
        fh.seek(backing_off)
        raw = fh.read(backing_len)
    if len(raw) != backing_len:
        raise Dom0Error(f"{path}: qcow2 backing file name lies past the end of the file", "the image is damaged")
    return raw.decode("utf-8", errors="replace")


def _resolve_chain(path: Path) -> list[Path]:
    """The qcow2 chain from `path` down to its base, resolved relative to each image and checked for loops."""
    chain: list[Path] = []
    seen: set[Path] = set()
    current = path
    while True:
        real = current.resolve()
        if real in seen:
            raise Dom0Error(f"{path}: qcow2 backing chain loops back to {current}", "fix it with qemu-img rebase -u")
        seen.add(real)
        chain.append(current)
        if len(chain) > MAX_BACKING_DEPTH:
            raise Dom0Error(f"{path}: qcow2 backing chain is deeper than {MAX_BACKING_DEPTH}", "flatten it first")
        fd = _open_fd(current)
        try:
            header = os.pread(fd, 512, 0)
        finally:
            os.close(fd)
        if header[:4] != QCOW2_MAGIC:
            return chain  # a raw base image
        backing = _qcow2_backing(current, header)
        if backing is None:
            return chain
        if backing.startswith(("json:", "nbd:", "http:", "https:", "iscsi:", "rbd:")):
            raise Dom0Error(
                f"{current}: backing file {backing!r} is not a local file", "convert the chain with qemu-img convert"
            )
        target = Path(backing)
        if target.is_absolute():
            # An absolute backing name must really exist: we never guess a host path the image merely claims.
            if not target.exists():
                raise Dom0Error(
                    f"{current}: backing file {backing} does not exist", "fix it with qemu-img rebase -u -b FILE"
                )
        else:
            target = current.parent / target
            if not target.exists():
                raise Dom0Error(
                    f"{current}: backing file {backing} not found next to it ({target})",
                    "put the backing file there or fix it with qemu-img rebase -u -b FILE",
                )
        current = target


def _open_qcow2(path: Path) -> ImageSource:
    try:
        from dissect.hypervisor.disk.qcow2 import QCow2
    except ImportError as exc:  # pragma: no cover - a dependency of dom0
        raise Dom0Error("qcow2 support needs dissect.hypervisor", "pip install dissect.hypervisor") from exc
    chain = _resolve_chain(path)
    handles: list[BinaryIO] = []
    try:
        lower: BinaryIO | None = None
        size = 0
        for link in reversed(chain):
            fh: BinaryIO = link.open("rb")
            handles.append(fh)
            if fh.read(4) != QCOW2_MAGIC:  # only the base can be raw (see _resolve_chain)
                lower = fh
                size = os.fstat(fh.fileno()).st_size
                continue
            fh.seek(0)
            qcow = QCow2(fh, backing_file=lower, allow_no_backing_file=lower is None)
            lower, size = qcow.open(), int(qcow.size)
        assert lower is not None
        return StreamSource(str(path), lower, size, "qcow2 image", handles)
    except Dom0Error:
        for h in handles:
            h.close()
        raise
    except Exception as exc:  # dissect's InvalidHeaderError, NotImplementedError (encryption), struct.error...
        for h in handles:
            h.close()
        raise Dom0Error(f"{path}: cannot read this qcow2 image: {exc}", "check it with qemu-img check") from exc


def open_image(path: str | Path) -> ImageSource:
    """Open a raw image file, a block device or a qcow2 image (with its backing chain) for reading."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError as exc:
        raise Dom0Error(f"{p}: no such file", "check the path of the image") from exc
    except PermissionError as exc:
        raise Dom0Error(f"cannot read {p}: permission denied", "run as root or add read permission") from exc
    if stat.S_ISDIR(st.st_mode):
        raise Dom0Error(f"{p} is a directory, not a disk image", "dom0 image inspect reads a directory as a tree")
    if stat.S_ISBLK(st.st_mode):
        fd = _open_fd(p)
        size = os.lseek(fd, 0, os.SEEK_END)
        return FileSource(p, fd, size, "block device")
    if not stat.S_ISREG(st.st_mode):
        raise Dom0Error(f"{p} is not a disk image (not a file or block device)", "give an image file or a device")
    fd = _open_fd(p)
    magic = os.pread(fd, 4, 0)
    if magic == QCOW2_MAGIC:
        os.close(fd)
        return _open_qcow2(p)
    return FileSource(p, fd, st.st_size, "raw image")
