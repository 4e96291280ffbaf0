"""The file names inside a guest's initrd, read from its bytes: which drivers it can load before the root disk.

An initrd is a sequence the kernel unpacks one after another: newc cpio archives ("070701", or "070702" with
checksums), zero padding, and compressed streams (gzip, xz, lzma, zstd, lz4 frame or lz4 legacy, bzip2) holding
more cpio archives. dracut and initramfs-tools put the CPU microcode in an uncompressed archive first and append
the compressed main one; `zstd -T0` writes several frames back to back.

The initrd is a guest's file and may be hostile: a few KiB of zstd can stand for terabytes, a header can declare
a 4 GiB name. So everything here is bounded (the file, the decompressed output, the entries, each name) and
streamed in pieces: file contents are skipped, never held. A damaged or cut archive gives the names read so far
and a note; nothing is raised to the caller.

A distribution's initrd is 30-150 MiB once decompressed, and the names lie between the files, so listing it means
decompressing it: a caller that asks only whether some modules are there lets reading stop once each is found.
"""

from __future__ import annotations

import os
import re
import stat
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

from dom0.errors import Dom0Error
from dom0.image.tree import GuestTree

MAX_INITRD = 512 * 1024 * 1024
MAX_DECOMPRESSED = 2 * 1024 * 1024 * 1024
MAX_ENTRIES = 200_000
MAX_NAME = 4096

# Compressed bytes fed to a decoder per step. zstd's decompressobj has no output cap, and one 4-byte RLE block
# stands for 128 KiB, so 1 KiB of input is at most 32 MiB out: the bound on what one step can hold.
_FEED = 1024
# zstd's output buffer per decompress call: its default (128 KiB) is mapped and unmapped again on every 1 KiB fed,
# which cost more than decompressing a Debian initrd itself.
_ZSTD_WRITE = 16 * 1024
# What one zstd step gathers before handing it on: at most this plus one piece's output (32 MiB, see _FEED).
_GATHER = 64 * 1024
_PIECE = 1024 * 1024
_ZEROS = bytes(_PIECE)
_HEADER = 110  # newc: "07070X" and 13 fields of 8 hex digits
_TRAILER = "TRAILER!!!"
# The lz4 legacy format (`lz4 -l`, what the kernel's unpacker reads): 8 MiB blocks, each after its 4-byte size.
_LZ4_LEGACY = b"\x02\x21\x4c\x18"
_LZ4_BLOCK = 8 * 1024 * 1024
_LZ4_BOUND = _LZ4_BLOCK + _LZ4_BLOCK // 255 + 16

# Module files as modprobe names them: the name before .ko, with '-' and '_' the same.
_MODULE = re.compile(r"(?:^|/)([^/]+)\.ko(?:\.(?:xz|zst|gz))?\Z")


@dataclass(frozen=True)
class InitrdListing:
    """The paths inside an initrd (no leading "./"), notes on what could not be read, and whether it was whole
    (read to its end with nothing wrong: False too when reading stopped once every module asked for was found)."""

    names: frozenset[str]
    notes: tuple[str, ...]
    complete: bool


def module_name(path: str) -> str | None:
    """The module name modprobe knows a .ko file by (xen-blkfront.ko.xz -> xen_blkfront), or None."""
    m = _MODULE.search(path)
    return m.group(1).replace("-", "_") if m else None


def modules_in(listing: InitrdListing) -> frozenset[str]:
    """The kernel modules an initrd holds, by module name ('-' written as '_', as modprobe compares them)."""
    return frozenset(name for path in listing.names if (name := module_name(path)) is not None)


class _Stop(Exception):
    """Reading ends here: the archive is cut, damaged or past a bound. The message says which, for the note."""


class _Found(Exception):
    """Reading ends here: every module the caller asked about was found."""


class _Source:
    """Bytes read in pieces of at most 1 MiB, with bytes read too far given back; `pos` counts what was taken."""

    def __init__(self) -> None:
        self._buf = b""
        self._off = 0
        self.pos = 0

    def _more(self) -> bytes:
        raise NotImplementedError

    def read(self, n: int) -> bytes:
        """At most `n` bytes (fewer at a piece's end), b"" at the end."""
        if self._off >= len(self._buf):
            self._buf, self._off = self._more(), 0
        data = self._buf[self._off : self._off + n]
        self._off += len(data)
        self.pos += len(data)
        return data

    def unread(self, data: bytes) -> None:
        if data:
            self._buf, self._off = data + self._buf[self._off :], 0
            self.pos -= len(data)

    def exactly(self, n: int) -> bytes:
        """`n` bytes; _Stop when the stream ends first."""
        data = self.read(n)
        while len(data) < n and (more := self.read(n - len(data))):
            data += more
        if len(data) < n:
            raise _Stop("")
        return data

    def peek(self, n: int) -> bytes:
        data = self.read(n)
        while len(data) < n and (more := self.read(n - len(data))):
            data += more
        self.unread(data)
        return data


class _Raw(_Source):
    """The initrd's own bytes, at most `limit` of them."""

    def __init__(self, fh: BinaryIO, limit: int) -> None:
        super().__init__()
        self._fh = fh
        self._left = limit

    def _more(self) -> bytes:
        data = self._fh.read(min(_PIECE, self._left)) if self._left > 0 else b""
        self._left -= len(data)
        return data


class _Codec(_Source):
    """One compressed member after another of the same kind (zstd -T0 frames, gzip members), in bounded pieces."""

    def __init__(self, name: str, magic: bytes, raw: _Raw, budget: list[int]) -> None:
        super().__init__()
        self.name = name
        self._magic = magic
        self._raw = raw
        self._budget = budget  # shared by every compressed stream of the initrd
        self._member: _Member | None = None

    def _more(self) -> bytes:
        while True:
            if self._member is None:
                if not self._raw.peek(len(self._magic)).startswith(self._magic):
                    return b""
                self._member = _member(self.name, self._raw)
            damaged: tuple[type[Exception], ...] = (zlib.error, OSError, EOFError, RuntimeError, ValueError)
            try:
                out = self._member.step()
            except (*damaged, *self._member.errors) as e:
                detail = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise _Stop(f"{self.name} data damaged ({detail})") from e
            if out is None:  # the member ended; what it read past its end went back to the initrd
                self._member = None
                continue
            if out:
                if self._budget[0] < len(out):
                    raise _Stop(f"it decompresses to more than {MAX_DECOMPRESSED >> 20} MiB, the most dom0 reads")
                self._budget[0] -= len(out)
                return out


class _Member:
    """One compressed member: step() gives the next output (b"" when it needs more input), None at its end."""

    def __init__(self, name: str, raw: _Raw, obj: Any, errors: tuple[type[Exception], ...] = ()) -> None:
        self._name = name
        self._raw = raw
        self._obj = obj
        self.errors = errors  # what its decoder raises on damaged data, besides zlib's and the built-in ones

    def step(self) -> bytes | None:
        obj = self._obj
        if obj.eof:
            self._raw.unread(bytes(obj.unused_data or b""))  # lz4.frame says None for none
            return None
        # zlib keeps what max_length left over as unconsumed_tail; lzma, bz2 and lz4.frame keep it themselves
        tail = getattr(obj, "unconsumed_tail", b"")
        needs = getattr(obj, "needs_input", not tail)
        data = self._raw.read(_FEED * 64) if needs else b""
        if needs and not data:
            raise _Stop(f"the {self._name} stream is cut short")
        return bytes(obj.decompress(tail + data, _PIECE))


class _Zstd(_Member):
    def step(self) -> bytes | None:
        """Output of 1 KiB pieces of input, gathered until there is at least _GATHER of it (one trip through the
        readers above per 64 KiB rather than per KiB: a 35 MiB initrd is 35,000 pieces)."""
        obj = self._obj
        if obj.eof:
            self._raw.unread(bytes(obj.unused_data))
            return None
        out: list[bytes] = []
        size = 0
        while size < _GATHER and not obj.eof:
            data = self._raw.read(_FEED)
            if not data:
                if out:
                    break  # what came before the cut first; the next step says it is cut
                raise _Stop("the zstd stream is cut short")
            piece = obj.decompress(data)
            out.append(piece)
            size += len(piece)
        return b"".join(out)


class _Lz4Legacy(_Member):
    """Blocks of at most 8 MiB, each after its little-endian size; a size that cannot be a block ends the stream
    (the kernel reads it the same way), a repeated magic starts the next run of blocks."""

    def step(self) -> bytes | None:
        head = self._raw.peek(4)
        if head == _LZ4_LEGACY:
            self._raw.exactly(4)
            return b""
        size = int.from_bytes(head, "little") if len(head) == 4 else 0
        if size == 0 or size > _LZ4_BOUND:
            return None
        self._raw.exactly(4)
        try:
            block = self._raw.exactly(size)
        except _Stop as e:
            raise _Stop("the lz4 stream is cut short") from e
        import lz4.block

        try:
            return bytes(lz4.block.decompress(block, uncompressed_size=_LZ4_BLOCK))
        except lz4.block.LZ4BlockError as e:
            raise _Stop(f"lz4 data damaged ({e})") from e


_FORMATS: tuple[tuple[str, bytes], ...] = (
    ("gzip", b"\x1f\x8b"),
    ("xz", b"\xfd7zXZ\x00"),
    ("lzma", b"\x5d\x00\x00"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
    ("lz4", b"\x04\x22\x4d\x18"),
    ("lz4", _LZ4_LEGACY),
    ("bzip2", b"BZh"),
)


def _member(name: str, raw: _Raw) -> _Member:
    # Each decoder is imported when an initrd uses it: an initrd holds one or two of the seven, and `image inspect`
    # of a guest with no initrd should not pay for any.
    if name == "zstd":
        import zstandard

        return _Zstd(name, raw, zstandard.ZstdDecompressor().decompressobj(_ZSTD_WRITE), (zstandard.ZstdError,))
    if name == "lz4" and raw.peek(4) == _LZ4_LEGACY:
        raw.exactly(4)
        return _Lz4Legacy(name, raw, None)
    if name == "lz4":
        import lz4.frame

        return _Member(name, raw, lz4.frame.LZ4FrameDecompressor())
    if name in ("xz", "lzma"):
        import lzma

        decoder = lzma.LZMADecompressor(lzma.FORMAT_XZ if name == "xz" else lzma.FORMAT_ALONE)
        return _Member(name, raw, decoder, (lzma.LZMAError,))
    if name == "bzip2":
        import bz2

        return _Member(name, raw, bz2.BZ2Decompressor())
    return _Member(name, raw, zlib.decompressobj(31))


class _Listing:
    def __init__(self, wanted: Iterable[frozenset[str]]) -> None:
        self.names: set[str] = set()
        self.entries = 0
        self.trailers = 0
        self.pending = [group for group in wanted if group]  # groups of module names none of which is seen yet

    def add(self, name: str) -> None:
        self.names.add(name)
        if self.pending and (module := module_name(name)) is not None:
            self.pending = [group for group in self.pending if module not in group]
            if not self.pending:
                raise _Found


def _skip(src: _Source, n: int) -> None:
    while n > 0:
        got = len(src.read(min(n, _PIECE)))
        if not got:
            raise _Stop("")
        n -= got


def _skip_zeros(src: _Source) -> bool:
    """Past zero padding; False at the end of the stream."""
    while data := src.read(_PIECE):
        if data == _ZEROS[: len(data)]:  # a compare, where lstrip walks byte by byte: GiB of zeros are a bomb
            continue
        rest = data.lstrip(b"\0")
        if rest:
            src.unread(rest)
            return True
    return False


def _cpio(src: _Source, out: _Listing) -> None:
    """One newc archive up to its trailer; file contents are skipped in pieces, never held."""
    while True:
        start = src.pos
        head = src.exactly(_HEADER)
        if head[:6] not in (b"070701", b"070702"):
            raise _Stop("a cpio header is damaged")
        try:
            fields = [int(head[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        except ValueError as e:
            raise _Stop("a cpio header is damaged") from e
        filesize, namesize = fields[6], fields[11]
        if namesize > MAX_NAME + 1 or namesize == 0:
            raise _Stop(f"a cpio entry declares a name of {namesize} bytes")
        raw_name = src.exactly(namesize)
        _skip(src, -(src.pos - start) % 4)
        name = raw_name.rstrip(b"\0").decode("utf-8", errors="replace")
        if name == _TRAILER:
            out.trailers += 1
            return
        _skip(src, filesize + (-filesize % 4))
        if out.entries >= MAX_ENTRIES:
            raise _Stop(f"it holds more than {MAX_ENTRIES} entries, the most dom0 reads")
        out.entries += 1
        while name.startswith(("./", "/")):
            name = name[1:] if name.startswith("/") else name[2:]
        if name and name != ".":
            out.add(name)


def _archives(src: _Source, out: _Listing) -> None:
    """Every cpio archive in `src`, past the zero padding between them, to its end."""
    while _skip_zeros(src):
        if src.peek(5) != b"07070":
            raise _Stop("data that is not a cpio archive follows")
        _cpio(src, out)


def _walk(raw: _Raw, out: _Listing) -> None:
    budget = [MAX_DECOMPRESSED]
    while _skip_zeros(raw):
        head = raw.peek(6)
        if head.startswith(b"07070"):
            _cpio(raw, out)
            continue
        kind = next((name for name, magic in _FORMATS if head.startswith(magic)), None)
        if kind is None:
            raise _Stop(f"data at byte {raw.pos} is neither a cpio archive nor a compression dom0 reads")
        magic = next(m for name, m in _FORMATS if name == kind and head.startswith(m))
        _archives(_Codec(kind, magic, raw, budget), out)


def _open_regular(tree: GuestTree, path: str) -> tuple[BinaryIO, int]:
    size = tree.size(path)  # Dom0Error unless it resolves, inside the guest, to a regular file
    fh = tree.open(path)
    try:
        fd = fh.fileno()
    except (OSError, ValueError, AttributeError):
        return fh, size  # read from a filesystem image: the tree already checked the inode
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # swapped for a FIFO or device after the check
        fh.close()
        raise Dom0Error(f"{path}: not a regular file in the guest")
    return fh, st.st_size


def initrd_files(tree: GuestTree, path: str, wanted: Iterable[frozenset[str]] = ()) -> InitrdListing:
    """The paths inside the initrd at guest path `path`; a note for each part that could not be read.

    With `wanted` (groups of module names, as modprobe names them), reading stops as soon as a module of each
    group has been seen: the names are then those read so far, and the listing is not `complete`.
    """
    notes: list[str] = []
    out = _Listing(wanted)
    complete = True
    try:
        fh, size = _open_regular(tree, path)
    except Dom0Error as e:
        return InitrdListing(frozenset(), (f"{path}: initrd not read: {e.message}",), False)
    with fh:
        if size > MAX_INITRD:
            notes.append(f"{path}: initrd of {size >> 20} MiB: only its first {MAX_INITRD >> 20} MiB read")
            complete = False
        try:
            _walk(_Raw(fh, MAX_INITRD), out)
        except _Found:
            complete = False
        except _Stop as e:
            why = f": {e}" if str(e) else ""
            notes.append(f"{path}: initrd truncated after {out.entries} entries{why}")
            complete = False
        except Dom0Error as e:
            notes.append(f"{path}: initrd truncated after {out.entries} entries: {e.message}")
            complete = False
    if complete and not out.trailers:
        notes.append(f"{path}: initrd holds no cpio archive")
        complete = False
    return InitrdListing(frozenset(out.names), tuple(notes), complete)
