"""Restore refuses a damaged, foreign or unmanifested image before the hypervisor sees a byte.

libvirt's test:///default driver answers the "is this guest running?" question; it cannot save, so where an image
must be of the driver's own kind, the connection is told it speaks libvirt's QEMU format.
"""

from __future__ import annotations

import hashlib
import os
import resource
import struct
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
import zstandard

from dom0.errors import Dom0Error, GuestStateError
from dom0.hypervisor import Hypervisor, UriChoice, connect
from dom0.hypervisor.libvirt.backend import LibvirtHypervisor
from dom0.model import SaveFormat
from dom0.saves import codec, manifest
from dom0.saves.codec import Compression
from dom0.saves.formats import qemu as qemusave
from dom0.saves.manifest import Manifest
from dom0.saves.stream import plan_restore, restore_image

UUID = "6a1c2f3e-8b4d-4e5f-9a0b-1c2d3e4f5a6b"
TEST_GUEST_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # the guest "test" that test:///default always runs


def qemu_image(name: str = "web1", uuid: str = UUID, *, was_running: int = 1) -> bytes:
    """A whole image as `virsh save` writes it: 92-byte header, domain XML, then (stand-in) QEMU stream."""
    xml = f"<domain type='qemu'><name>{name}</name><uuid>{uuid}</uuid></domain>".encode() + b"\0"
    head = struct.pack("<16s5I14I", qemusave.MAGIC, 2, len(xml), was_running, 0, 0, *[0] * 14)
    return head + xml + b"QEVM" + bytes(range(256)) * 64


def compress(raw: bytes, kind: Compression = Compression.ZSTD) -> bytes:
    comp = codec.compressor(kind, kind.default_level)
    return comp.compress(raw) + comp.flush()


def store(
    directory: Path,
    raw: bytes,
    *,
    kind: Compression = Compression.ZSTD,
    name: str = "web1",
    stored: bytes | None = None,
    **changes: Any,
) -> Path:
    """Write an image (`stored`, or `raw` compressed) and its manifest as `dom0 save` leaves them; `changes` alter
    the manifest. The manifest's path."""
    if stored is None:
        stored = compress(raw, kind)
    image = manifest.image_path(directory, name, kind)
    image.write_bytes(stored)
    record = Manifest(
        name=name,
        uuid=UUID,
        uri="qemu:///system",
        save_format=SaveFormat.QEMU,
        compression=kind,
        level=kind.default_level,
        raw_bytes=len(raw),
        stored_bytes=len(stored),
        sha256=hashlib.sha256(stored).hexdigest(),
        saved_at="2024-05-01T12:00:00+00:00",
        state="running",
        image=image.name,
    )
    path = manifest.manifest_path(directory, name)
    manifest.write(path, replace(record, **changes))
    return path


@pytest.fixture
def test_hv() -> Iterator[Hypervisor]:
    """test:///default as it is: a driver that cannot save or restore."""
    hv = connect(UriChoice("test:///default", "test"))
    yield hv
    hv.close()


@pytest.fixture
def qemu_hv(monkeypatch: pytest.MonkeyPatch, test_hv: Hypervisor) -> Hypervisor:
    """test:///default standing in for a QEMU host."""
    monkeypatch.setattr(LibvirtHypervisor, "save_format", property(lambda self: SaveFormat.QEMU))
    assert test_hv.save_format is SaveFormat.QEMU
    return test_hv


def test_a_sound_image_is_planned(tmp_path: Path, qemu_hv: Hypervisor) -> None:
    meta = store(tmp_path, qemu_image())
    plan = plan_restore(qemu_hv, meta)
    assert (plan.name, plan.header.uuid, plan.paused) == ("web1", UUID, False)
    assert plan.image == tmp_path / "web1.save.zst"
    # Given the image instead of its manifest, the manifest beside it is used all the same.
    assert plan_restore(qemu_hv, tmp_path / "web1.save.zst").manifest_path == meta


@pytest.mark.parametrize("kind", [Compression.LZ4, Compression.GZIP, Compression.NONE])
def test_every_compression_is_planned(tmp_path: Path, qemu_hv: Hypervisor, kind: Compression) -> None:
    plan = plan_restore(qemu_hv, store(tmp_path, qemu_image(), kind=kind))
    assert plan.image.name == "web1.save" + kind.suffix
    assert plan.header.name == "web1"


def test_paused_when_saved_comes_back_paused(tmp_path: Path, qemu_hv: Hypervisor) -> None:
    assert plan_restore(qemu_hv, store(tmp_path, qemu_image(), state="paused")).paused
    assert plan_restore(qemu_hv, store(tmp_path, qemu_image(), name="w2"), paused=True).paused


def test_image_of_another_size_than_its_manifest_says_is_refused(tmp_path: Path, qemu_hv: Hypervisor) -> None:
    meta = store(tmp_path, qemu_image())
    image = tmp_path / "web1.save.zst"
    whole = image.read_bytes()
    image.write_bytes(whole[:-10])  # cut short, as by a full disk or a copy that stopped
    with pytest.raises(Dom0Error, match=f"damaged: {len(whole) - 10} bytes, its manifest says {len(whole)}") as err:
        plan_restore(qemu_hv, meta)
    assert str(image) in err.value.message
    assert "cannot be restored" in err.value.hint


def test_image_whose_checksum_differs_is_refused(tmp_path: Path, qemu_hv: Hypervisor) -> None:
    meta = store(tmp_path, qemu_image())
    image = tmp_path / "web1.save.zst"
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, one bit flipped
    image.write_bytes(bytes(data))
    with pytest.raises(Dom0Error, match="checksum does not match") as err:
        plan_restore(qemu_hv, meta)
    assert str(image) in err.value.message


def test_missing_image_is_refused(tmp_path: Path, qemu_hv: Hypervisor) -> None:
    meta = store(tmp_path, qemu_image())
    (tmp_path / "web1.save.zst").unlink()
    with pytest.raises(Dom0Error, match="missing"):
        plan_restore(qemu_hv, meta)


def test_image_that_does_not_decompress_is_refused(tmp_path: Path, qemu_hv: Hypervisor) -> None:
    # The manifest matches the (damaged) file, so only decompressing tells: here its frame header is broken.
    damaged = bytearray(compress(qemu_image()))
    damaged[4] |= 0x08  # a reserved bit of the frame header descriptor
    meta = store(tmp_path, qemu_image(), stored=bytes(damaged))
    with pytest.raises(Dom0Error, match="does not decompress as zstd") as err:
        plan_restore(qemu_hv, meta)
    assert "damaged" in err.value.hint


def test_compressed_image_without_a_manifest_is_refused(tmp_path: Path, test_hv: Hypervisor) -> None:
    image = tmp_path / "web1.save.zst"
    image.write_bytes(compress(qemu_image()))
    with pytest.raises(Dom0Error, match="compressed but has no manifest beside it") as err:
        plan_restore(test_hv, image)
    assert str(image) in err.value.message
    assert "manifest.json" in err.value.hint


def test_manifest_from_another_driver_is_refused(tmp_path: Path, test_hv: Hypervisor) -> None:
    meta = store(tmp_path, qemu_image())
    with pytest.raises(Dom0Error, match="made by libvirt's QEMU/KVM driver \\(saved on qemu:///system\\)") as err:
        plan_restore(test_hv, meta)
    assert "test:///default" in err.value.message
    assert "host of the kind that saved it" in err.value.hint


def test_xen_manifest_on_a_qemu_host_is_refused(tmp_path: Path, qemu_hv: Hypervisor) -> None:
    meta = store(tmp_path, qemu_image(), save_format=SaveFormat.LIBXL, uri="xen:///system")
    with pytest.raises(Dom0Error, match="made by libvirt's Xen \\(libxl\\) driver"):
        plan_restore(qemu_hv, meta)


def test_bare_image_from_another_driver_is_refused(tmp_path: Path, test_hv: Hypervisor) -> None:
    image = tmp_path / "web1.save"
    image.write_bytes(qemu_image())
    with pytest.raises(Dom0Error, match="made by libvirt's QEMU/KVM driver"):
        plan_restore(test_hv, image)


def test_bare_virsh_image_is_planned_as_it_is(tmp_path: Path, qemu_hv: Hypervisor) -> None:
    image = tmp_path / "web1.img"
    image.write_bytes(qemu_image())
    plan = plan_restore(qemu_hv, image)
    assert (plan.record, plan.manifest_path, plan.name) == (None, None, "web1")


def test_image_of_another_guest_than_its_manifest_is_refused(tmp_path: Path, qemu_hv: Hypervisor) -> None:
    meta = store(tmp_path, qemu_image(uuid="11111111-2222-3333-4444-555555555555"))
    with pytest.raises(Dom0Error, match="does not hold the guest its manifest describes"):
        plan_restore(qemu_hv, meta)


def test_partial_image_is_refused(tmp_path: Path, qemu_hv: Hypervisor) -> None:
    raw = qemusave.PARTIAL + qemu_image()[16:]
    with pytest.raises(Dom0Error, match="incomplete"):
        plan_restore(qemu_hv, store(tmp_path, raw))


def test_guest_that_already_runs_is_refused(tmp_path: Path, qemu_hv: Hypervisor) -> None:
    assert qemu_hv.guest("test").state.is_active
    meta = store(tmp_path, qemu_image("test", TEST_GUEST_UUID), name="test", uuid=TEST_GUEST_UUID)
    with pytest.raises(GuestStateError, match="test is already running") as err:
        plan_restore(qemu_hv, meta)
    assert "dom0 shutdown test" in err.value.hint
    image = tmp_path / "test.save"
    image.write_bytes(qemu_image("test", TEST_GUEST_UUID))
    with pytest.raises(GuestStateError, match="already running"):
        plan_restore(qemu_hv, image)


def _zstd_zeros(gib: int) -> bytes:
    """A zstd stream of `gib` GiB of zeros: about 32 KiB per GiB, built a piece at a time."""
    obj = zstandard.ZstdCompressor(level=1).compressobj()
    zeros = bytes(64 << 20)
    return b"".join(obj.compress(zeros) for _ in range(16 * gib)) + obj.flush()


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10


def test_a_decompression_bomb_is_refused_in_bounded_memory(tmp_path: Path, qemu_hv: Hypervisor) -> None:
    bomb = _zstd_zeros(1)  # ~33 KiB that decode to 1 GiB
    meta = store(tmp_path, b"", stored=bomb, raw_bytes=1 << 20)
    before, started = _peak_rss(), time.monotonic()
    with pytest.raises(Dom0Error, match="not a save image dom0 knows"):
        plan_restore(qemu_hv, meta)
    assert time.monotonic() - started < 5
    assert _peak_rss() - before < 200 << 20


def test_a_declared_size_no_host_could_hold_is_refused_first(tmp_path: Path, qemu_hv: Hypervisor) -> None:
    meta = store(tmp_path, qemu_image(), raw_bytes=1 << 60)
    with pytest.raises(Dom0Error, match="more than this host's memory could ever hold") as caught:
        plan_restore(qemu_hv, meta)
    assert "damaged" in caught.value.hint


class _Draining:
    """A hypervisor whose restore reads the whole FIFO, then fails as QEMU would on a stream it cannot load."""

    uri = "qemu:///system"

    def __init__(self) -> None:
        self.got = 0

    def restore(self, path: str, *, paused: bool, expect: str) -> Any:
        with open(path, "rb") as fifo:
            while chunk := fifo.read(1 << 20):
                self.got += len(chunk)
        raise Dom0Error("QEMU could not load the stream")


@pytest.mark.parametrize("kind", [Compression.ZSTD, Compression.LZ4, Compression.GZIP])
def test_restore_stops_at_the_size_the_manifest_declares(
    tmp_path: Path, qemu_hv: Hypervisor, kind: Compression
) -> None:
    raw = qemu_image()
    stored = compress(raw + bytes(64 << 20), kind)  # a header that passes, then 64 MiB more than declared
    plan = plan_restore(qemu_hv, store(tmp_path, raw, kind=kind, stored=stored))
    hv = _Draining()
    with pytest.raises(Dom0Error, match=f"decompresses to more than the {len(raw)} bytes its manifest declares"):
        restore_image(cast(Hypervisor, hv), plan)
    assert hv.got <= len(raw)
    assert (tmp_path / f"web1.save{kind.suffix}").exists()  # a refused image is kept


@pytest.mark.parametrize("what", ["fifo", "link to /dev/zero", "directory"])
def test_an_image_that_is_not_a_regular_file_is_refused_without_reading(
    tmp_path: Path, qemu_hv: Hypervisor, what: str
) -> None:
    meta = store(tmp_path, qemu_image())
    image = tmp_path / "web1.save.zst"
    image.unlink()
    if what == "fifo":
        os.mkfifo(image)  # nobody ever writes: reading it would wait forever
    elif what == "directory":
        image.mkdir()
    else:
        image.symlink_to("/dev/zero")
    started = time.monotonic()
    with pytest.raises(Dom0Error) as caught:
        plan_restore(qemu_hv, meta)
    assert time.monotonic() - started < 2
    assert str(image) in caught.value.message
    assert "\n" not in caught.value.message
