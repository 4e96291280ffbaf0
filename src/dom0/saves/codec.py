"""Streaming compression of save images: zstd (multi-threaded, the default), lz4, gzip, or none."""

from __future__ import annotations

import zlib
from enum import StrEnum
from typing import Protocol

import lz4.frame
import zstandard

from dom0.errors import Dom0Error, UsageError


class Compression(StrEnum):
    """How a save image is compressed on disk."""

    ZSTD = "zstd"
    LZ4 = "lz4"
    GZIP = "gzip"
    NONE = "none"

    @property
    def suffix(self) -> str:
        """The file name suffix of images compressed this way ('' for none)."""
        return _SUFFIX[self]

    @property
    def default_level(self) -> int:
        """The level used when none is given (zstd's chosen by bench/save_bench.py; gzip -3 as in the seed)."""
        return _LEVELS[self][0]

    def check_level(self, level: int) -> int:
        """`level` when this compressor has it; UsageError naming the range otherwise."""
        _, low, high = _LEVELS[self]
        if not low <= level <= high:
            raise UsageError(f"{self} has no level {level}", f"give a level from {low} to {high}")
        return level


_SUFFIX = {Compression.ZSTD: ".zst", Compression.LZ4: ".lz4", Compression.GZIP: ".gz", Compression.NONE: ""}
_LEVELS = {  # default, lowest, highest
    Compression.ZSTD: (2, 1, 19),
    Compression.LZ4: (0, 0, 16),
    Compression.GZIP: (3, 1, 9),
    Compression.NONE: (0, 0, 0),
}
_MAGIC = {
    Compression.ZSTD: b"\x28\xb5\x2f\xfd",
    Compression.LZ4: b"\x04\x22\x4d\x18",
    Compression.GZIP: b"\x1f\x8b",
}


def detect(head: bytes) -> Compression:
    """The compression a stored image starts with (NONE when it starts with no compressor's magic)."""
    for kind, magic in _MAGIC.items():
        if head.startswith(magic):
            return kind
    return Compression.NONE


class Compressor(Protocol):
    """A streaming compressor: feed chunks, then flush once at the end."""

    def compress(self, data: bytes) -> bytes:
        """Compressed bytes ready so far (may be empty)."""
        ...

    def flush(self) -> bytes:
        """The rest, ending the stream."""
        ...


class _Identity:
    def compress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _Zstd:
    def __init__(self, level: int, threads: int) -> None:
        # No frame checksum: the manifest's SHA-256 of the stored bytes is checked before a restore starts, and a
        # second hash of every raw byte took ~5% of the restore's CPU on both sides (bench/save_bench.py).
        params = zstandard.ZstdCompressionParameters.from_level(level, threads=threads, write_checksum=False)
        self._obj = zstandard.ZstdCompressor(compression_params=params).compressobj()

    def compress(self, data: bytes) -> bytes:
        return self._obj.compress(data)

    def flush(self) -> bytes:
        return self._obj.flush()


class _Lz4:
    def __init__(self, level: int) -> None:
        self._obj = lz4.frame.LZ4FrameCompressor(compression_level=level, content_checksum=True)
        self._started = False

    def compress(self, data: bytes) -> bytes:
        head = b""
        if not self._started:
            head, self._started = self._obj.begin(), True
        return head + bytes(self._obj.compress(data))

    def flush(self) -> bytes:
        head = b"" if self._started else self._obj.begin()
        return head + bytes(self._obj.flush())


class _Gzip:
    def __init__(self, level: int) -> None:
        self._obj = zlib.compressobj(level, zlib.DEFLATED, 31)

    def compress(self, data: bytes) -> bytes:
        return self._obj.compress(data)

    def flush(self) -> bytes:
        return self._obj.flush()


def compressor(kind: Compression, level: int, threads: int = 1) -> Compressor:
    """A streaming compressor; `threads` applies to zstd (its workers run beside the caller)."""
    kind.check_level(level)
    if kind is Compression.ZSTD:
        return _Zstd(level, threads)
    if kind is Compression.LZ4:
        return _Lz4(level)
    if kind is Compression.GZIP:
        return _Gzip(level)
    return _Identity()


class Source(Protocol):
    """Where compressed bytes come from (a file opened for reading)."""

    def read(self, size: int = -1, /) -> bytes: ...


class Sink(Protocol):
    """Where decompressed bytes go; write takes all it is given."""

    def write(self, data: bytes | memoryview, /) -> int: ...


class _Decoder(Protocol):
    """Compressed bytes decoded in pieces of a bounded size: a few KiB of input can stand for GiB of output, so no
    step may decode more than one piece (a piece may be a view of a buffer the next read reuses)."""

    @property
    def finished(self) -> bool:
        """Whether the compressed stream ended properly (False means it was cut short)."""
        ...

    def read(self) -> bytes | memoryview:
        """The next piece, b'' at the end."""
        ...


class _ZstdDecoder:
    # Its own copy loop into one reused buffer: a new output object per piece, allocated and copied, took ~8% of a
    # restore's CPU (perf, bench/save_bench.py).
    finished = True  # it does not tell a cut-short stream from a whole one: callers count the raw bytes

    def __init__(self, src: Source, step: int) -> None:
        # its stubs ask for IO[bytes]; it calls only read()
        self._reader = zstandard.ZstdDecompressor().stream_reader(src, read_size=step, read_across_frames=True)  # type: ignore[arg-type]
        self._buffer = bytearray(step)
        self._view = memoryview(self._buffer)

    def read(self) -> bytes | memoryview:
        return self._view[: self._reader.readinto(self._buffer)]


class _GzipDecoder:
    def __init__(self, src: Source, step: int) -> None:
        self._obj = zlib.decompressobj(31)
        self._src = src
        self._step = step

    @property
    def finished(self) -> bool:
        return self._obj.eof

    def read(self) -> bytes:
        while not self._obj.eof:
            data = self._obj.unconsumed_tail or self._src.read(self._step)
            out = self._obj.decompress(data, self._step)  # no more than one step, whatever `data` stands for
            if out or not data:
                return out
        return b""


class _Lz4Decoder:
    def __init__(self, src: Source, step: int) -> None:
        self._obj = lz4.frame.LZ4FrameDecompressor()
        self._src = src
        self._step = step

    @property
    def finished(self) -> bool:
        return bool(self._obj.eof)

    def read(self) -> bytes:
        while not self._obj.eof:
            data = self._src.read(self._step) if self._obj.needs_input else b""
            if not data and self._obj.needs_input:
                return b""
            out = bytes(self._obj.decompress(data, max_length=self._step))  # it keeps the input it did not use
            if out:
                return out
        return b""


class _Plain:
    finished = True

    def __init__(self, src: Source, step: int) -> None:
        self._src = src
        self._step = step

    def read(self) -> bytes:
        return self._src.read(self._step)


def _decoder(kind: Compression, src: Source, step: int) -> _Decoder:
    if kind is Compression.ZSTD:
        return _ZstdDecoder(src, step)
    if kind is Compression.LZ4:
        return _Lz4Decoder(src, step)
    if kind is Compression.GZIP:
        return _GzipDecoder(src, step)
    return _Plain(src, step)


def copy_decompressed(
    kind: Compression, src: Source, dst: Sink, chunk: int, limit: int | None = None
) -> tuple[int, bool]:
    """Decompress `src` into `dst`, `chunk` bytes at most at a time; the bytes written, and whether the stream ended
    properly. With `limit`, Dom0Error the moment it decodes to more (nothing past the limit is written)."""
    dec = _decoder(kind, src, chunk)
    written = 0
    while piece := dec.read():
        if limit is not None and written + len(piece) > limit:
            raise Dom0Error(
                f"the image decompresses to more than the {limit} bytes its manifest declares",
                "the image or its manifest is damaged; it cannot be restored safely",
            )
        dst.write(piece)
        written += len(piece)
    return written, dec.finished


def head(kind: Compression, src: Source, size: int) -> bytes:
    """The first `size` decompressed bytes of `src` (fewer when it is shorter), decoding no more than that."""
    dec = _decoder(kind, src, min(size, 1 << 16))
    out = bytearray()
    while len(out) < size and (piece := dec.read()):
        out += piece
    return bytes(out[:size])


def decompress_error(kind: Compression, exc: Exception) -> Dom0Error:
    """The error for a compressed stream that does not decode: the image is damaged."""
    return Dom0Error(f"the image does not decompress as {kind}: {exc}", "the image is damaged; it cannot be restored")


# What each library raises for bad input, so callers can turn it into decompress_error.
DECODE_ERRORS: tuple[type[Exception], ...] = (zstandard.ZstdError, RuntimeError, zlib.error, ValueError)
