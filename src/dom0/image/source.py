"""Read-only random access to a disk image: a raw file, a block device (an LV) or a qcow2 chain, and windows into it.

Everything above this module reads bytes through `ImageSource.read_at`, so truncated images, partitions that point
past the end and LVs made of several extents all look the same: short reads at the end, never past it.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dom0.errors import Dom0Error, UsageError
from dom0.filedata import kind_of

QCOW2_MAGIC = b"QFI\xfb"
# A backing chain longer than this is almost certainly a loop that realpath could not see (or a mistake).
MAX_BACKING_DEPTH = 16
# The header, its extensions and the backing file name are read from this much of a qcow2 file's start.
HEADER_BYTES = 64 * 1024
# qemu's own cap on the L1 table (32 MiB of 8-byte entries).
MAX_L1_ENTRIES = 32 * 1024 * 1024 // 8
_EXT_BACKING_FORMAT = 0xE2792ACA
_INCOMPAT_DATA_FILE = 1 << 2
# dirty, corrupt, data file, compression type; extended L2 (bit 4) is refused: dissect's subcluster walk is
# not bounded against hostile bitmaps.
_INCOMPAT_KNOWN = 0b1111
# Names qemu reads as a protocol, not a file ("nbd:host", "json:{...}").
_PROTOCOL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


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

    def __init__(
        self, name: str, stream: BinaryIO, size: int, kind: str, keep: Sequence[BinaryIO | ImageSource] = ()
    ) -> None:
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


def _shown(text: str) -> str:
    """A name from an image header as one printable line (a header can hold newlines and terminal escapes)."""
    return text if text.isprintable() else repr(text)


def _os_error(path: Path | str, exc: OSError) -> Dom0Error:
    if isinstance(exc, PermissionError):
        return Dom0Error(f"cannot read {path}: permission denied", "run as root or add read permission to the image")
    if isinstance(exc, FileNotFoundError):
        return Dom0Error(f"{path}: no such file", "check the path of the image")
    if exc.errno == errno.ELOOP:
        return Dom0Error(
            f"{path}: too many levels of symbolic links (a symlink loop)", f"see where it points: ls -l {path}"
        )
    return Dom0Error(f"cannot open {path}: {exc.strerror}", "check the path of the image")


def _open_fd(path: Path | str, extra: int = 0) -> int:
    # O_NONBLOCK: a FIFO swapped in after the type check must not hang the open (reads of files ignore it).
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | extra)
    except OSError as exc:
        raise _os_error(path, exc) from exc


@dataclass(frozen=True)
class Qcow2Header:
    """What dom0 takes from a qcow2 header before handing the image to dissect: the backing file and its format."""

    backing: str | None
    backing_format: str | None


def _check_v3(name: str, head: bytes) -> int:
    """Refuse the version-3 features dom0 cannot read safely; where the header extensions start."""
    if len(head) < 104:
        raise Dom0Error(f"{name}: truncated qcow2 header", "the image is damaged")
    incompatible = struct.unpack_from(">Q", head, 72)[0]
    header_length = struct.unpack_from(">I", head, 100)[0]
    if incompatible & _INCOMPAT_DATA_FILE:
        raise Dom0Error(
            f"{name}: the qcow2 image keeps its data in an external file, which dom0 does not read",
            "convert it to a self-contained image with qemu-img convert",
        )
    if incompatible & ~_INCOMPAT_KNOWN:
        raise Dom0Error(
            f"{name}: qcow2 features 0x{incompatible:x} are not supported", "convert it with qemu-img convert"
        )
    if header_length < 104:
        raise Dom0Error(f"{name}: qcow2 header length {header_length} is too short", "the image is damaged")
    return int(header_length)


def _backing_format(name: str, head: bytes, pos: int, end: int) -> str | None:
    """The backing format recorded in the header extensions between `pos` and `end`, lowercase, or None."""
    found = None
    while pos + 8 <= end:
        magic, length = struct.unpack_from(">II", head, pos)
        pos += 8
        if magic == 0:
            break
        if length > end - pos:
            raise Dom0Error(f"{name}: qcow2 header extension runs past the header", "the image is damaged")
        if magic == _EXT_BACKING_FORMAT:
            found = head[pos : pos + length].decode("ascii", errors="replace").rstrip("\0").lower()
        pos += (length + 7) & ~7
    return found


def read_qcow2_header(name: str, fd: int, file_size: int) -> Qcow2Header:
    """The checked header of the qcow2 image open on `fd`: every field dissect would trust is bounded here first."""
    head = os.pread(fd, HEADER_BYTES, 0)
    if len(head) < 72:
        raise Dom0Error(f"{name}: truncated qcow2 header", "the image is damaged")
    version, backing_off, backing_len, cluster_bits, size, crypt, l1_size, l1_off = struct.unpack_from(
        ">IQIIQIIQ", head, 4
    )
    if version not in (2, 3):
        raise Dom0Error(f"{name}: unsupported qcow2 version {version}", "convert it with qemu-img convert")
    if not 9 <= cluster_bits <= 21:
        raise Dom0Error(f"{name}: qcow2 cluster size 2**{cluster_bits} is not one qemu writes", "the image is damaged")
    if crypt:
        raise Dom0Error(f"{name}: the qcow2 image is encrypted", "decrypt it first with qemu-img convert")
    cluster = 1 << cluster_bits
    # The L1 table must cover the virtual size and lie inside the file: qemu caps it at 32 MiB.
    covered = l1_size * (cluster // 8) * cluster
    if l1_size > MAX_L1_ENTRIES or covered < size or l1_off + 8 * l1_size > file_size:
        raise Dom0Error(f"{name}: qcow2 L1 table does not match the image size", "the image is damaged")
    ext_start = _check_v3(name, head) if version == 3 else 72
    backing_format = _backing_format(name, head, ext_start, min(len(head), backing_off or cluster))
    if not backing_off or not backing_len:
        return Qcow2Header(None, backing_format)
    if backing_len > 1023:
        raise Dom0Error(f"{name}: qcow2 backing file name is {backing_len} bytes long", "the image is damaged")
    raw = os.pread(fd, backing_len, backing_off)
    if len(raw) != backing_len:
        raise Dom0Error(f"{name}: qcow2 backing file name lies past the end of the file", "the image is damaged")
    try:
        backing = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Dom0Error(f"{name}: qcow2 backing file name {raw!r} is not text", "the image is damaged") from exc
    if "\0" in backing or not backing:
        raise Dom0Error(f"{name}: qcow2 backing file name {backing!r} is not a file name", "the image is damaged")
    return Qcow2Header(backing, backing_format)


@dataclass
class _Link:
    """One file of a qcow2 chain, open: `name` as the chain names it, `qcow2` False for a raw base."""

    name: str
    fd: int
    size: int
    qcow2: bool


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip("/") + "/")


def _backing_roots(path: Path, backing_dirs: Sequence[str | Path]) -> list[str]:
    """Where backing files may be: the image's own directory (as named, and as resolved), and each --backing-dir."""
    roots = [os.path.realpath(path.parent), os.path.dirname(os.path.realpath(path))]
    for d in backing_dirs:
        real = os.path.realpath(d)
        if not os.path.isdir(real):
            raise Dom0Error(f"--backing-dir {d} is not a directory", "name the directory that holds the base images")
        roots.append(real)
    return roots


def _open_backing(link: _Link, here: str, backing: str, roots: list[str]) -> tuple[int, str, os.stat_result]:
    """Open `backing` (named in `link`'s header) if it is a regular file under one of `roots`; fd, path, stat."""
    shown = _shown(backing)
    if _PROTOCOL.match(backing):
        raise Dom0Error(
            f"{link.name}: backing file {shown} is not a local file", "convert the chain with qemu-img convert"
        )
    joined = backing if os.path.isabs(backing) else os.path.join(here, backing)
    real = os.path.realpath(joined)
    if not any(_inside(real, root) for root in roots):
        raise Dom0Error(
            f"{link.name}: qcow2 backing file {shown} is outside {roots[0]}, so it is not read",
            "if it really is this image's base, name its directory with --backing-dir DIR; "
            "if the file is a raw disk, say --format raw",
        )
    try:
        # realpath resolved every link on the way: what is there now must be a regular file, checked unopened.
        before = os.lstat(real)
    except FileNotFoundError as exc:
        where = "" if os.path.isabs(backing) else f" next to it ({_shown(joined)})"
        raise Dom0Error(
            f"{link.name}: backing file {shown} not found{where}",
            "put the backing file there or fix it with qemu-img rebase -u -b FILE",
        ) from exc
    except OSError as exc:
        raise _os_error(real, exc) from exc
    if not stat.S_ISREG(before.st_mode):
        raise Dom0Error(
            f"{link.name}: qcow2 backing file {shown} is {kind_of(before.st_mode)}, not an image file",
            "fix it with qemu-img rebase -u -b FILE; if the file is a raw disk, say --format raw",
        )
    fd = _open_fd(real, os.O_NOFOLLOW)
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino) or not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise Dom0Error(f"{link.name}: backing file {shown} changed while it was opened", "try again")
    return fd, joined, st


def _resolve_chain(top: _Link, path: Path, backing_dirs: Sequence[str | Path]) -> list[_Link]:
    """The chain from `top` down to its base, every file open; on a Dom0Error every file opened here is closed."""
    roots = _backing_roots(path, backing_dirs)
    chain = [top]
    top_st = os.fstat(top.fd)
    seen = {(top_st.st_dev, top_st.st_ino)}
    here = str(path.parent)
    try:
        while True:
            link = chain[-1]
            header = read_qcow2_header(link.name, link.fd, link.size)
            if header.backing is None:
                return chain
            if len(chain) >= MAX_BACKING_DEPTH:
                raise Dom0Error(f"{path}: qcow2 backing chain is deeper than {MAX_BACKING_DEPTH}", "flatten it first")
            fmt = header.backing_format
            if fmt not in (None, "raw", "qcow2"):
                raise Dom0Error(
                    f"{link.name}: backing file {_shown(header.backing)} is in format {_shown(fmt)}",
                    "convert the chain with qemu-img convert",
                )
            fd, joined, st = _open_backing(link, here, header.backing, roots)
            if (st.st_dev, st.st_ino) in seen:
                os.close(fd)
                raise Dom0Error(
                    f"{path}: qcow2 backing chain loops back to {_shown(joined)}", "fix it with qemu-img rebase -u"
                )
            seen.add((st.st_dev, st.st_ino))
            # A base declared raw is raw whatever it holds: a guest may have written a qcow2 header into it.
            is_qcow2 = fmt == "qcow2" or (fmt is None and os.pread(fd, 4, 0) == QCOW2_MAGIC)
            chain.append(_Link(_shown(joined), fd, st.st_size, is_qcow2))
            if fmt == "qcow2" and os.pread(fd, 4, 0) != QCOW2_MAGIC:
                raise Dom0Error(
                    f"{link.name}: backing file {_shown(header.backing)} is declared qcow2 but has no qcow2 header",
                    "fix it with qemu-img rebase -u -b FILE -F raw",
                )
            if not is_qcow2:
                return chain
            here = os.path.dirname(joined)
    except BaseException:
        for link in chain[1:]:
            os.close(link.fd)
        raise


def _open_qcow2(path: Path, top: _Link, backing_dirs: Sequence[str | Path]) -> ImageSource:
    try:
        from dissect.hypervisor.disk.qcow2 import QCow2
    except ImportError as exc:  # pragma: no cover - a dependency of dom0
        raise Dom0Error("qcow2 support needs dissect.hypervisor", "pip install dissect.hypervisor") from exc
    chain = _resolve_chain(top, path, backing_dirs)
    owned: list[BinaryIO | ImageSource] = []
    fds = [link.fd for link in chain]
    try:
        lower: ImageSource | None = None
        top_stream: BinaryIO | None = None
        for link in reversed(chain):
            if not link.qcow2:  # only the base can be raw (see _resolve_chain)
                lower = FileSource(Path(link.name), link.fd, link.size, "raw image")
                fds.remove(link.fd)
                owned.append(lower)
                continue
            fh = os.fdopen(link.fd, "rb")
            fds.remove(link.fd)
            owned.append(fh)
            # dissect is given no backing file and no path, so it opens nothing by the header's names itself;
            # the checked lower layer is attached afterwards, zero-padded to this layer's size as qemu reads it.
            qcow = QCow2(fh, allow_no_backing_file=True)
            if lower is not None:
                size = int(qcow.size)
                qcow.backing_file = MappedSource(lower.name, size, [(0, min(lower.size, size), lower, 0)]).as_file()
            top_stream = qcow.open()
            lower = StreamSource(link.name, top_stream, int(qcow.size), "qcow2 image")
        assert lower is not None
        assert top_stream is not None
        return StreamSource(str(path), top_stream, lower.size, "qcow2 image", owned)
    except BaseException as exc:
        for fd in fds:
            os.close(fd)
        for item in owned:
            item.close()
        if isinstance(exc, Dom0Error) or not isinstance(exc, Exception):
            raise
        # dissect's InvalidHeaderError, NotImplementedError, struct or EOF errors on a damaged image
        raise Dom0Error(f"{path}: cannot read this qcow2 image: {exc}", "check it with qemu-img check") from exc


def open_image(path: str | Path, *, format: str | None = None, backing_dirs: Sequence[str | Path] = ()) -> ImageSource:
    """Open a raw image file, a block device or a qcow2 image (with its backing chain) for reading.

    `format` "raw" or "qcow2" says what the file is (None: a regular file starting with a qcow2 header is qcow2).
    A qcow2 header's backing files are opened only inside the image's own directory or `backing_dirs`, and only
    when they are regular files: the header is the image's content, not the administrator's word.
    """
    p = Path(path)
    if format not in (None, "raw", "qcow2"):
        raise UsageError(f"unknown image format {format}", "say --format raw or --format qcow2")
    _backing_roots(p, backing_dirs)  # a mistyped --backing-dir is reported whatever the image turns out to be
    try:
        st = p.stat()
    except OSError as exc:
        raise _os_error(p, exc) from exc
    if stat.S_ISDIR(st.st_mode):
        raise Dom0Error(
            f"{p} is a directory, not a disk image", "give an image file (image inspect and kernel also read a tree)"
        )
    if not stat.S_ISREG(st.st_mode) and not stat.S_ISBLK(st.st_mode):
        raise Dom0Error(
            f"{p} is {kind_of(st.st_mode)}, not a disk image", "give an image file or a block device (an LV)"
        )
    fd = _open_fd(p)
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise Dom0Error(f"{p} changed while it was opened", "try again")
        block = stat.S_ISBLK(st.st_mode)
        size = os.lseek(fd, 0, os.SEEK_END) if block else st.st_size
        kind = "block device" if block else "raw image"
        if format == "raw":
            return FileSource(p, fd, size, kind)
        is_qcow2 = os.pread(fd, 4, 0) == QCOW2_MAGIC
        if format == "qcow2" and not is_qcow2:
            raise Dom0Error(f"{p} has no qcow2 header", "leave out --format, or say --format raw")
        # A device is sniffed only when told: an LV is a guest's raw disk unless the administrator says otherwise.
        if not is_qcow2 or (block and format is None):
            return FileSource(p, fd, size, kind)
    except BaseException:
        os.close(fd)
        raise
    return _open_qcow2(p, _Link(str(p), fd, size, True), backing_dirs)
