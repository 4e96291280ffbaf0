"""Damaged qcow2 headers never crash or hang open_image(): mutations of a real qcow2 image (header, extensions,
backing name, L1 table) give an image that scans, or a one-line Dom0Error, each within a couple of seconds."""

from __future__ import annotations

import signal
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dom0 import run
from dom0.errors import Dom0Error
from dom0.image.layout import scan
from dom0.image.source import open_image

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, list[tuple[int, int]]]:
    """A 4 MiB qcow2 (v3, 64 KiB clusters) holding data, over a raw base next to it; where its structures are."""
    base = tmp_path_factory.mktemp("qcow2-fuzz")
    raw = base / "data.raw"
    raw.write_bytes(b"\0" * MiB + b"DATA" * (MiB // 4) + b"\0" * 2 * MiB)
    (base / "base.raw").write_bytes(b"B" * 4 * MiB)
    top = base / "seed.qcow2"
    run.run(
        ["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", "-B", "base.raw", "-F", "raw", str(raw), str(top)]
    )
    data = top.read_bytes()
    backing_off, backing_len = struct.unpack_from(">QI", data, 8)
    l1_off = struct.unpack_from(">Q", data, 40)[0]
    (l2_off,) = struct.unpack_from(">Q", data, l1_off)
    l2_off &= 0x00FFFFFFFFFFFE00
    hot = [(0, 112), (112, backing_off), (backing_off, backing_off + backing_len), (l1_off, l1_off + 8)]
    if l2_off:
        hot.append((l2_off, l2_off + 512))
    return base, data, hot


class _Hang(Exception):
    pass


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise _Hang


@pytest.fixture
def watchdog() -> Iterator[None]:
    old = signal.signal(signal.SIGALRM, _alarm)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def _inspect_bounded(path: Path) -> None:
    start = time.perf_counter()
    message = ""
    signal.setitimer(signal.ITIMER_REAL, 5)
    try:
        with open_image(path) as src:
            layout = scan(src)
            for offset in (0, MiB, src.size - 4096):
                src.read_at(offset, 4096)
            assert layout.size == src.size
    except Dom0Error as exc:
        message = exc.message
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    assert time.perf_counter() - start < 3.0
    assert "\n" not in message


def test_seed_reads_through_to_its_base(seed: tuple[Path, bytes, list[tuple[int, int]]]) -> None:
    base, _, _ = seed
    with open_image(base / "seed.qcow2") as src:
        assert src.kind == "qcow2 image"
        assert src.read_at(MiB, 8) == b"DATADATA"
        assert src.read_at(0, 4) == b"\0\0\0\0"  # written as zeros, so not read from the base


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_mutated_qcow2_headers(
    seed: tuple[Path, bytes, list[tuple[int, int]]], watchdog: None, data: st.DataObject
) -> None:
    base, original, hot = seed
    image = bytearray(original)
    for _ in range(data.draw(st.integers(1, 12))):
        lo, hi = data.draw(st.sampled_from(hot))
        pos = data.draw(st.integers(lo, max(lo, hi - 1)))
        if data.draw(st.booleans()):
            image[pos] = data.draw(st.integers(0, 255))
        else:  # a whole big-endian field: an offset, a size, a count, a version, feature bits
            value = data.draw(
                st.sampled_from(
                    [0, 1, 2, 3, 9, 16, 22, 63, 104, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 1 << 40, 2**64 - 1]
                )
            )
            width = data.draw(st.sampled_from([4, 8]))
            field = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big")
            image[pos : pos + width] = field[: len(image) - pos]
    cut = data.draw(st.one_of(st.just(len(image)), st.integers(0, len(image))))
    path = base / "fuzz.qcow2"
    path.write_bytes(bytes(image[:cut]))
    _inspect_bounded(path)
