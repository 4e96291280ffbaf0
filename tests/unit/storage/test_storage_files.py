"""storage.files and the shared storage helpers on real files: sparse copies, reflinks, O_EXCL, rollback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dom0 import run
from dom0.errors import Dom0Error
from dom0.storage import CreatedKind, reflink_supported, remove_created
from dom0.storage.files import reflink_copy, sparse_copy

MiB = 1 << 20


def _sparse_image(path: Path) -> dict[int, bytes]:
    """A 64 MiB file with three data islands (one at the very end) and holes in between."""
    islands = {0: b"boot" * 1024, 20 * MiB: os.urandom(3 * MiB), 64 * MiB - 4096: b"tail" * 1024}
    with open(path, "wb") as fh:
        fh.truncate(64 * MiB)
        for at, data in islands.items():
            fh.seek(at)
            fh.write(data)
    return islands


def _allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_sparse_copy_keeps_data_and_holes(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.img", tmp_path / "dst.img"
    _sparse_image(src)
    seen: list[int] = []
    created = sparse_copy(src, dst, seen.append)
    assert dst.read_bytes() == src.read_bytes()
    assert dst.stat().st_size == 64 * MiB
    # Holes stay holes: the copy takes about what the source takes, far less than its 64 MiB.
    assert _allocated(dst) <= _allocated(src) + 1 * MiB
    assert _allocated(dst) < 8 * MiB
    assert seen[-1] == 64 * MiB
    assert seen == sorted(seen)
    assert created.kind is CreatedKind.FILE
    assert created.path == dst


def test_sparse_copy_from_fully_sparse_file(tmp_path: Path) -> None:
    src, dst = tmp_path / "empty.img", tmp_path / "copy.img"
    with open(src, "wb") as fh:
        fh.truncate(10 * MiB)
    sparse_copy(src, dst)
    assert dst.stat().st_size == 10 * MiB
    assert _allocated(dst) == 0


def test_sparse_copy_refuses_an_existing_destination(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.img", tmp_path / "dst.img"
    _sparse_image(src)
    dst.write_bytes(b"precious")
    with pytest.raises(Dom0Error, match="already exists"):
        sparse_copy(src, dst)
    assert dst.read_bytes() == b"precious"


def test_destination_symlink_is_refused_not_followed(tmp_path: Path) -> None:
    src, victim, dst = tmp_path / "src.img", tmp_path / "victim", tmp_path / "dst.img"
    _sparse_image(src)
    victim.write_bytes(b"precious")
    dst.symlink_to(victim)
    with pytest.raises(Dom0Error, match="already exists"):
        sparse_copy(src, dst)
    assert victim.read_bytes() == b"precious"


def test_failed_copy_leaves_no_destination(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.img", tmp_path / "dst.img"
    _sparse_image(src)

    def interrupt(done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sparse_copy(src, dst, interrupt)
    assert not dst.exists()


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Dom0Error, match="no such file"):
        sparse_copy(tmp_path / "nope.img", tmp_path / "dst.img")
    assert not (tmp_path / "dst.img").exists()


def test_remove_created_removes_only_the_same_file(tmp_path: Path) -> None:
    src = tmp_path / "src.img"
    _sparse_image(src)
    created = sparse_copy(src, tmp_path / "a.img")
    remove_created(created)
    assert not created.path.exists()
    remove_created(created)  # already gone: nothing to do

    created = sparse_copy(src, tmp_path / "b.img")
    created.path.unlink()
    created.path.write_bytes(b"someone else's")  # a new file (new inode) under the same name
    with pytest.raises(Dom0Error, match="no longer the file"):
        remove_created(created)
    assert created.path.read_bytes() == b"someone else's"


@pytest.mark.parametrize("where", ["ext4", "tmpfs"])
def test_reflink_refused_clearly_where_unsupported(tmp_path: Path, where: str) -> None:
    directory = tmp_path if where == "ext4" else Path("/dev/shm")
    fs = run.output(["stat", "-f", "-c", "%T", str(directory)]).strip()
    if fs not in ("ext2/ext3", "tmpfs"):
        pytest.skip(f"{directory} is {fs}, not {where}")
    src, dst = directory / f"dom0test-src-{os.getpid()}", directory / f"dom0test-dst-{os.getpid()}"
    try:
        src.write_bytes(b"x" * 8192)
        assert not reflink_supported(directory)
        with pytest.raises(Dom0Error, match="does not support reflinks") as err:
            reflink_copy(src, dst)
        assert "--mode copy" in err.value.hint
        assert not dst.exists()
    finally:
        src.unlink(missing_ok=True)
        dst.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def btrfs_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A scratch btrfs mounted from a loop file made for this test module (unmounted after)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a scratch btrfs needs root")
    if not (run.available("mkfs.btrfs") and "btrfs" in Path("/proc/filesystems").read_text()):
        pytest.skip("no btrfs here (mkfs.btrfs or the kernel module missing)")
    base = tmp_path_factory.mktemp("btrfs")
    image, mountpoint = base / "fs.img", base / "mnt"
    mountpoint.mkdir()
    with open(image, "wb") as fh:
        fh.truncate(300 * MiB)
    run.run(["mkfs.btrfs", "-q", str(image)])
    run.run(["mount", "-o", "loop", str(image), str(mountpoint)])
    try:
        yield mountpoint
    finally:
        run.run(["umount", str(mountpoint)])
        image.unlink()


def test_reflink_on_btrfs_shares_extents(btrfs_dir: Path) -> None:
    src, dst = btrfs_dir / "src.img", btrfs_dir / "dst.img"
    _sparse_image(src)
    run.run(["sync"])
    assert reflink_supported(btrfs_dir)
    created = reflink_copy(src, dst)
    assert dst.read_bytes() == src.read_bytes()
    # Writing the clone leaves the source alone (copy on write).
    with open(dst, "r+b") as fh:
        fh.write(b"CLONE")
    assert src.read_bytes()[:5] == b"bootb"
    assert dst.read_bytes()[:5] == b"CLONE"
    # The extents are shared: btrfs reports them as such.
    shared = run.output(["btrfs", "filesystem", "du", "--raw", str(src)]).splitlines()[-1].split()
    assert int(shared[2]) > 0  # "Set shared" bytes
    remove_created(created)
    assert not dst.exists()
    assert src.exists()


def test_reflink_refuses_existing_destination_on_btrfs(btrfs_dir: Path) -> None:
    src, dst = btrfs_dir / "one.img", btrfs_dir / "two.img"
    src.write_bytes(b"a" * 4096)
    dst.write_bytes(b"keep")
    with pytest.raises(Dom0Error, match="already exists"):
        reflink_copy(src, dst)
    assert dst.read_bytes() == b"keep"


def test_sparse_copy_on_btrfs_keeps_holes(btrfs_dir: Path) -> None:
    src, dst = btrfs_dir / "s.img", btrfs_dir / "d.img"
    _sparse_image(src)
    sparse_copy(src, dst)
    run.run(["sync"])
    assert dst.read_bytes() == src.read_bytes()
    assert _allocated(dst) < 8 * MiB
