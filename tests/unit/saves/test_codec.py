"""Streaming compressors: what goes in comes out, however the chunks fall; a cut-short image is noticed."""

from __future__ import annotations

import io
import os
import random

import pytest

from dom0.errors import UsageError
from dom0.saves import codec
from dom0.saves.codec import Compression

# Compressible and incompressible parts, like guest memory: zero pages, text, random data.
DATA = b"\0" * 70_000 + b"the quick brown fox " * 3000 + random.Random(5).randbytes(150_000) + b"end"
ODD_SIZES = [1, 2, 3, 7, 13, 4096, 65_537, 99_991]


def _chunks(data: bytes, sizes: list[int]) -> list[bytes]:
    out = []
    pos = i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        out.append(data[pos : pos + n])
        pos += n
        i += 1
    return out


def _compress(kind: Compression, data: bytes, sizes: list[int], level: int | None = None, threads: int = 1) -> bytes:
    comp = codec.compressor(kind, kind.default_level if level is None else level, threads)
    return b"".join(comp.compress(c) for c in _chunks(data, sizes)) + comp.flush()


class _Collect:
    """A sink that keeps every byte it is given."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes | memoryview, /) -> int:
        self.parts.append(bytes(data))
        return len(data)


class _Odd:
    """A source whose reads return the odd sizes given, in turn, however much is asked for."""

    def __init__(self, blob: bytes, sizes: list[int]) -> None:
        self._parts = _chunks(blob, sizes)

    def read(self, size: int = -1, /) -> bytes:
        return self._parts.pop(0) if self._parts else b""


def _decompress(kind: Compression, blob: bytes, sizes: list[int]) -> tuple[bytes, bool]:
    sink = _Collect()
    _, finished = codec.copy_decompressed(kind, _Odd(blob, sizes), sink, 65_536)
    return b"".join(sink.parts), finished


@pytest.mark.parametrize("kind", list(Compression))
@pytest.mark.parametrize("sizes", [[1, 2, 3, 7, 13], ODD_SIZES, [1 << 20]], ids=["tiny", "odd", "big"])
def test_every_compression_round_trips_in_odd_chunks(kind: Compression, sizes: list[int]) -> None:
    data = DATA if sizes != [1, 2, 3, 7, 13] else DATA[:20_000] + DATA[-20_000:]  # tiny chunks: keep it quick
    blob = _compress(kind, data, sizes)
    out, finished = _decompress(kind, blob, list(reversed(sizes)))
    assert out == data
    assert finished
    assert codec.detect(blob) is kind
    if kind is not Compression.NONE:
        assert len(blob) < len(data)


@pytest.mark.parametrize("kind", list(Compression))
def test_empty_stream_round_trips(kind: Compression) -> None:
    blob = _compress(kind, b"", [1])
    assert _decompress(kind, blob, [1]) == (b"", True)


def test_multithreaded_zstd_round_trips() -> None:
    blob = _compress(Compression.ZSTD, DATA, ODD_SIZES, threads=2)
    assert _decompress(Compression.ZSTD, blob, ODD_SIZES) == (DATA, True)


@pytest.mark.parametrize("kind", [Compression.ZSTD, Compression.LZ4, Compression.GZIP])
@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_stream_is_not_finished(kind: Compression, keep: float) -> None:
    blob = _compress(kind, DATA, ODD_SIZES)
    cut = blob[: int(len(blob) * keep)]
    out, finished = _decompress(kind, cut, ODD_SIZES)
    assert not finished or len(out) < len(DATA)  # zstd's decoder cannot tell: the raw byte count does
    assert out != DATA


@pytest.mark.parametrize("kind", [Compression.ZSTD, Compression.LZ4, Compression.GZIP])
def test_stream_missing_only_its_last_byte_is_not_finished(kind: Compression) -> None:
    blob = _compress(kind, DATA, ODD_SIZES)
    out, finished = _decompress(kind, blob[:-1], ODD_SIZES)
    assert not finished or len(out) < len(DATA)


@pytest.mark.parametrize("kind", [Compression.LZ4, Compression.GZIP])
def test_corrupted_stream_fails_to_decode(kind: Compression) -> None:
    blob = bytearray(_compress(kind, DATA, ODD_SIZES))
    blob[len(blob) // 2] ^= 0xFF
    blob[len(blob) // 2 + 1] ^= 0x55
    # These formats carry a checksum of their own, so damage fails here as well as at dom0's SHA-256.
    with pytest.raises(codec.DECODE_ERRORS):
        _decompress(kind, bytes(blob), ODD_SIZES)


def test_zstd_frames_carry_no_checksum_of_their_own() -> None:
    # Frame header descriptor bit 2 set means a checksum of all raw bytes follows the frame. The manifest's SHA-256
    # is the one check of a zstd image (tests/unit/saves/test_restore_plan.py); a second cost ~5% of a restore.
    for threads in (1, 2):
        blob = _compress(Compression.ZSTD, DATA, ODD_SIZES, threads=threads)
        assert blob[:4] == b"\x28\xb5\x2f\xfd"
        assert not blob[4] & 0x04


def test_detect_recognises_each_magic() -> None:
    for kind in Compression:
        assert codec.detect(_compress(kind, b"x" * 100, [100])[:8]) is kind
    assert codec.detect(b"\x28\xb5\x2f\xfd") is Compression.ZSTD
    assert codec.detect(b"\x04\x22\x4d\x18") is Compression.LZ4
    assert codec.detect(b"\x1f\x8b\x08") is Compression.GZIP
    # A bare save image starts with its hypervisor's header: no compression.
    assert codec.detect(b"LibvirtQemudSave" + os.urandom(8)) is Compression.NONE
    assert codec.detect(b"") is Compression.NONE


def test_suffixes_name_the_compressor() -> None:
    assert [c.suffix for c in Compression] == [".zst", ".lz4", ".gz", ""]


@pytest.mark.parametrize(
    ("kind", "bad", "low", "high"),
    [
        (Compression.ZSTD, 0, 1, 19),
        (Compression.ZSTD, 20, 1, 19),
        (Compression.ZSTD, 40, 1, 19),
        (Compression.GZIP, 10, 1, 9),
        (Compression.GZIP, 0, 1, 9),
        (Compression.LZ4, -1, 0, 16),
        (Compression.LZ4, 17, 0, 16),
        (Compression.NONE, 1, 0, 0),
    ],
)
def test_check_level_refuses_out_of_range_levels_naming_the_range(
    kind: Compression, bad: int, low: int, high: int
) -> None:
    with pytest.raises(UsageError, match=f"{kind} has no level {bad}") as err:
        kind.check_level(bad)
    assert f"from {low} to {high}" in err.value.hint
    assert err.value.exit_code == 2
    with pytest.raises(UsageError):
        codec.compressor(kind, bad)


@pytest.mark.parametrize(
    ("kind", "default", "low", "high"),
    [
        (Compression.ZSTD, 2, 1, 19),
        (Compression.LZ4, 0, 0, 16),
        (Compression.GZIP, 3, 1, 9),
        (Compression.NONE, 0, 0, 0),
    ],
)
def test_default_and_boundary_levels_are_accepted(kind: Compression, default: int, low: int, high: int) -> None:
    assert kind.default_level == default
    for level in (default, low, high):
        assert kind.check_level(level) == level
        comp = codec.compressor(kind, level)
        assert _decompress(kind, comp.compress(b"abc" * 50) + comp.flush(), [7]) == (b"abc" * 50, True)


def test_decompress_error_says_the_image_is_damaged() -> None:
    err = codec.decompress_error(Compression.ZSTD, ValueError("bad frame"))
    assert "does not decompress as zstd" in err.message
    assert "damaged" in err.hint


@pytest.mark.parametrize("kind", list(Compression))
@pytest.mark.parametrize("chunk", [4096, 1 << 20])
def test_copy_decompressed_writes_the_whole_stream(kind: Compression, chunk: int) -> None:
    sink = _Collect()
    written, finished = codec.copy_decompressed(kind, io.BytesIO(_compress(kind, DATA, ODD_SIZES)), sink, chunk)
    assert (b"".join(sink.parts), written, finished) == (DATA, len(DATA), True)


@pytest.mark.parametrize("kind", [Compression.ZSTD, Compression.LZ4, Compression.GZIP])
def test_copy_decompressed_of_a_cut_stream_comes_up_short(kind: Compression) -> None:
    blob = _compress(kind, DATA, ODD_SIZES)
    written, finished = codec.copy_decompressed(kind, io.BytesIO(blob[: len(blob) // 2]), _Collect(), 4096)
    assert written < len(DATA) or not finished
