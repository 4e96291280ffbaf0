"""storage.swap: a swap disk's identity read from its signature, and a fresh one made with the same UUID/label."""

from __future__ import annotations

from pathlib import Path

import pytest

from dom0 import run
from dom0.errors import Dom0Error
from dom0.storage import create_file, remove_created
from dom0.storage.swap import make_swap, swap_identity

MiB = 1 << 20
UUID = "0b2c7c1e-6f1a-4d8e-9a55-3c1f2b7d9e01"

pytestmark = pytest.mark.skipif(
    not (run.available("mkswap") and run.available("blkid")), reason="mkswap/blkid (util-linux) missing"
)


def _blkid(path: Path) -> dict[str, str]:
    out = run.run(["blkid", "-p", "-o", "export", str(path)], check=False).stdout.decode()
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _source_swap(path: Path, size: int = 64 * MiB) -> None:
    with open(path, "wb") as fh:
        fh.truncate(size)
    run.run(["mkswap", "-U", UUID, "-L", "guestswap", str(path)])


def test_identity_is_read_from_the_signature(tmp_path: Path) -> None:
    src = tmp_path / "whatever-name.img"  # found by signature, not by name
    _source_swap(src)
    ident = swap_identity(src)
    assert ident is not None
    assert (ident.uuid, ident.label) == (UUID, "guestswap")
    assert ident.size_bytes == 64 * MiB


def test_identity_in_a_qcow2_and_at_an_offset(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    with open(raw, "wb") as fh:
        fh.truncate(80 * MiB)
    area = tmp_path / "area.raw"
    _source_swap(area, 16 * MiB)
    with open(raw, "r+b") as fh:
        fh.seek(1 * MiB)
        fh.write(area.read_bytes())
    qcow = tmp_path / "disk.qcow2"
    run.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow)])
    ident = swap_identity(qcow, offset=1 * MiB)
    assert ident is not None
    assert ident.uuid == UUID


def test_no_swap_signature_is_none(tmp_path: Path) -> None:
    data = tmp_path / "data.img"
    with open(data, "wb") as fh:
        fh.truncate(8 * MiB)
    run.run(["mkfs.ext4", "-q", "-F", str(data)])
    assert swap_identity(data) is None


def test_fresh_swap_keeps_uuid_and_label(tmp_path: Path) -> None:
    src, new = tmp_path / "src-swap.img", tmp_path / "clone-swap.img"
    _source_swap(src, 128 * MiB)
    ident = swap_identity(src)
    assert ident is not None
    created = make_swap(new, src.stat().st_size, ident.uuid, ident.label)
    assert created is not None
    found = _blkid(new)
    assert found["TYPE"] == "swap"
    assert found["UUID"] == UUID
    assert found["LABEL"] == "guestswap"
    assert new.stat().st_size == 128 * MiB
    assert new.stat().st_blocks * 512 < 1 * MiB  # created sparse: nothing of the source copied
    remove_created(created)
    assert not new.exists()


def test_make_swap_refusals(tmp_path: Path) -> None:
    existing = tmp_path / "swap.img"
    existing.write_bytes(b"keep")
    with pytest.raises(Dom0Error, match="already exists"):
        make_swap(existing, 64 * MiB, UUID, "x")
    assert existing.read_bytes() == b"keep"
    with pytest.raises(Dom0Error, match="not a UUID"):
        make_swap(tmp_path / "a.img", 64 * MiB, "not-a-uuid", "")
    with pytest.raises(Dom0Error, match="longer than 16"):
        make_swap(tmp_path / "b.img", 64 * MiB, UUID, "x" * 17)
    assert not (tmp_path / "a.img").exists()
    assert not (tmp_path / "b.img").exists()


def test_make_swap_failure_removes_the_file(tmp_path: Path) -> None:
    target = tmp_path / "tiny.img"
    with pytest.raises(Dom0Error, match="cannot make swap"):
        make_swap(target, 4096, UUID, "")  # far too small for mkswap
    assert not target.exists()


def test_swap_into_an_empty_file_made_for_the_clone(tmp_path: Path) -> None:
    src = tmp_path / "src.img"
    _source_swap(src)
    ident = swap_identity(src)
    assert ident is not None
    uuid, label = ident[0], ident[1]  # also a plain tuple
    target = tmp_path / "clone-swap.img"
    created = create_file(target)
    assert make_swap(target, 64 * MiB, uuid, label) is None
    found = _blkid(target)
    assert (found["TYPE"], found["UUID"], found["LABEL"]) == ("swap", UUID, "guestswap")
    assert target.stat().st_size == 64 * MiB
    remove_created(created)
    assert not target.exists()


def test_a_guests_swap_overlay_is_read_through_the_chain_its_definition_names(tmp_path: Path) -> None:
    """A guest's qcow2 swap over a base in another directory (a clone of a clone): the chain qemu-img reports for
    the disk the definition names is followed; the same image found loose is refused."""
    from dom0.storage import probe

    bases, guests = tmp_path / "bases", tmp_path / "guests"
    bases.mkdir()
    guests.mkdir()
    _source_swap(bases / "swap.raw")
    top = guests / "swap.qcow2"
    run.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(bases / "swap.raw"), str(top)])
    volume = probe(top, "qcow2")
    assert volume.chain_dirs == (str(bases),)
    ident = swap_identity(top, format=volume.format, chain_dirs=volume.chain_dirs)
    assert ident is not None
    assert ident.uuid == UUID
    with pytest.raises(Dom0Error, match="backing"):
        swap_identity(top)


def test_a_qcow2_header_inside_a_raw_swap_disk_means_nothing(tmp_path: Path) -> None:
    """The definition says raw: the guest's own bytes (a qcow2 header naming a host file) are not obeyed."""
    disk = tmp_path / "disk.raw"
    qcow = tmp_path / "hostile.qcow2"
    run.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", "raw", "-b", "/etc/shadow", str(qcow), "1M"])
    disk.write_bytes(qcow.read_bytes() + bytes(8 * MiB))
    assert swap_identity(disk, format="raw") is None
