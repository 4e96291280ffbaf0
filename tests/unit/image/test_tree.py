"""Guest paths resolve inside the guest: on a host directory and on ext4/btrfs/XFS/FAT images read by dissect."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from ostrees import make_fs_image

from dom0.errors import Dom0Error
from dom0.image.tree import MAX_CONFIG_READ, DirectoryTree, FilesystemTree, ResolvingTree

HOST_SECRET = "host-secret-line-that-must-never-be-returned"


def _guest(root: Path) -> Path:
    """A guest root whose symlinks try every way out of it."""
    (root / "etc").mkdir(parents=True)
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    os.symlink("/usr/lib/os-release", root / "etc/os-release")
    (root / "etc/shadow").write_text("root:GUEST-SHADOW:19000:0:99999:7:::\n")
    os.symlink("/etc/shadow", root / "etc/hostname")
    (root / "etc/passwd").write_text("root:x:0:0:GUEST-PASSWD:/root:/bin/sh\n")
    os.symlink("../../../../../../../../etc/passwd", root / "etc/climb")
    os.symlink("/tmp/dom0-host-secret-target", root / "etc/to-host-file")
    os.symlink("/proc/self/root/etc", root / "etc/to-proc")
    os.symlink("loop-b", root / "etc/loop-a")
    os.symlink("loop-a", root / "etc/loop-b")
    os.symlink("usr/lib", root / "lib")
    os.symlink("missing", root / "etc/dangling")
    os.symlink("..", root / "etc/up")
    return root


def _directory(root: Path, work: Path) -> ResolvingTree:
    return DirectoryTree(root)


def _image(fstype: str) -> Callable[[Path, Path], ResolvingTree]:
    def make(root: Path, work: Path) -> ResolvingTree:
        image = make_fs_image(root, work / f"fs.{fstype}", fstype)
        return FilesystemTree(image.open("rb"), fstype, name=image.name)

    return make


KINDS = {"directory": _directory, "ext4": _image("ext4"), "btrfs": _image("btrfs"), "xfs": _image("xfs")}


@pytest.fixture(autouse=True)
def host_secret() -> object:
    """A host file that guest symlinks point at; its content must never come back."""
    path = Path("/tmp/dom0-host-secret-target")
    path.write_text(HOST_SECRET)
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture(params=sorted(KINDS))
def tree(request: pytest.FixtureRequest, tmp_path: Path) -> ResolvingTree:
    kind: str = request.param
    needs = {"ext4": "mkfs.ext4", "btrfs": "mkfs.btrfs", "xfs": "mkfs.xfs"}.get(kind)
    if needs and shutil.which(needs) is None:
        pytest.skip(f"{needs} is not installed (scripts/setup-host.sh installs it)")
    return KINDS[kind](_guest(tmp_path / "guest"), tmp_path)


def test_absolute_symlink_restarts_at_the_guest_root(tree: ResolvingTree) -> None:
    assert tree.read_text("/etc/os-release") == 'ID=debian\nVERSION_ID="12"\n'
    assert tree.readlink("/etc/os-release") == "/usr/lib/os-release"


def test_link_to_etc_shadow_reads_the_guests_shadow(tree: ResolvingTree) -> None:
    assert "GUEST-SHADOW" in tree.read_text("/etc/hostname")


def test_dotdot_never_climbs_above_the_guest_root(tree: ResolvingTree) -> None:
    assert "GUEST-PASSWD" in tree.read_text("/etc/climb")
    assert "GUEST-PASSWD" in tree.read_text("../../../../etc/passwd")
    assert "GUEST-PASSWD" in tree.read_text("/etc/up/../../etc/passwd")
    assert tree.listdir("/..") == tree.listdir("/")


def test_links_to_host_files_are_never_followed_onto_the_host(tree: ResolvingTree) -> None:
    assert not tree.exists("/etc/to-host-file")
    assert not tree.exists("/etc/to-proc")
    with pytest.raises(Dom0Error, match="no such file"):
        tree.read_text("/etc/to-host-file")
    with pytest.raises(Dom0Error, match="no such file"):
        tree.read_text("/tmp/dom0-host-secret-target")


def test_symlink_loop_is_a_clear_error(tree: ResolvingTree) -> None:
    with pytest.raises(Dom0Error, match="symlink loop"):
        tree.read_text("/etc/loop-a")


def test_directories_files_and_links(tree: ResolvingTree) -> None:
    assert tree.is_dir("/lib")
    assert tree.is_file("/lib/os-release")
    assert tree.size("/usr/lib/os-release") == len('ID=debian\nVERSION_ID="12"\n')
    assert not tree.exists("/etc/dangling")
    assert tree.lexists("/etc/dangling")
    assert not tree.exists("/nonexistent/x")
    assert not tree.exists("/etc/passwd/below-a-file")
    assert "shadow" in tree.listdir("/etc")
    assert "." not in tree.listdir("/etc")
    with tree.open("/etc/passwd") as fh:
        assert fh.read(4) == b"root"
    with pytest.raises(Dom0Error, match="not a regular file"):
        tree.read_bytes("/etc")


def test_directory_tree_ignores_a_guest_symlink_swapped_under_it(tmp_path: Path) -> None:
    root = _guest(tmp_path / "g")
    tree = DirectoryTree(root)
    # The guest's /usr becomes a link to the host's /tmp: resolved inside the guest, which has no /tmp.
    shutil.rmtree(root / "usr")
    os.symlink("/tmp", root / "usr")
    assert not tree.exists("/usr/dom0-host-secret-target")
    assert not tree.exists("/etc/os-release")


def test_mounted_boot_is_seen_at_boot_and_dotdot_leaves_it(tmp_path: Path) -> None:
    root = _guest(tmp_path / "root")
    (root / "boot").mkdir()
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "vmlinuz-6.1.0-10-amd64").write_bytes(b"kernel")
    os.symlink("/etc/shadow", boot / "escape")
    root_tree = FilesystemTree(make_fs_image(root, tmp_path / "root.img", "ext4").open("rb"), "ext4")
    boot_tree = FilesystemTree(make_fs_image(boot, tmp_path / "boot.img", "ext4").open("rb"), "ext4")
    merged = root_tree.with_mounts({"/boot": boot_tree})
    assert merged.listdir("/boot") == ["escape", "lost+found", "vmlinuz-6.1.0-10-amd64"]
    assert merged.read_bytes("/boot/vmlinuz-6.1.0-10-amd64") == b"kernel"
    assert "GUEST-PASSWD" in merged.read_text("/boot/../etc/passwd")
    # A link on /boot to an absolute path lands on the guest's /, not on /boot's own filesystem.
    assert "GUEST-SHADOW" in merged.read_text("/boot/escape")
    assert root_tree.listdir("/boot") == []


def test_fat_names_match_without_case(tmp_path: Path) -> None:
    if shutil.which("mcopy") is None:
        pytest.skip("mtools is not installed")
    src = tmp_path / "efi"
    (src / "EFI/debian").mkdir(parents=True)
    (src / "EFI/debian/grubx64.efi").write_bytes(b"grub")
    tree = FilesystemTree(make_fs_image(src, tmp_path / "esp.img", "vfat").open("rb"), "vfat")
    assert tree.read_bytes("/efi/DEBIAN/GRUBX64.EFI") == b"grub"
    assert [n.lower() for n in tree.listdir("/EFI")] == ["debian"]


def test_damaged_filesystem_is_a_one_line_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(os.urandom(1 << 20))
    with pytest.raises(Dom0Error, match="cannot read the filesystem"):
        FilesystemTree(junk.open("rb"), "ext4", name="junk.img")
    with pytest.raises(Dom0Error, match="cannot read files from a swap filesystem"):
        FilesystemTree(junk.open("rb"), "swap", name="junk.img")


@pytest.mark.parametrize("kind", ["directory", "ext4"])
def test_a_config_file_over_the_limit_is_refused_not_loaded(kind: str, tmp_path: Path) -> None:
    if kind == "ext4" and shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 is not installed (scripts/setup-host.sh installs it)")
    root = tmp_path / "guest"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_bytes(b"x" * (MAX_CONFIG_READ + 1))
    (root / "etc/hosts").write_bytes(b"y" * MAX_CONFIG_READ)
    tree = KINDS[kind](root, tmp_path)
    with pytest.raises(Dom0Error, match=r"/etc/hostname: 65537 bytes in the guest .* more than the 65536 dom0 reads"):
        tree.read_text("/etc/hostname")
    assert tree.too_large == {"/etc/hostname": MAX_CONFIG_READ + 1}
    assert tree.read_bytes("/etc/hosts") == b"y" * MAX_CONFIG_READ
    assert tree.read_bytes("/etc/hostname", MAX_CONFIG_READ + 1) == b"x" * (MAX_CONFIG_READ + 1)
