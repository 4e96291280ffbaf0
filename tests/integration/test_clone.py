"""`dom0 clone` on real QEMU guests: a running guest copied without stopping it; the clone boots as itself.

The source guests boot the host's kernel with a busybox initramfs whose `identity` mode mounts the guest's own
root disk (ext4, a Debian 12 tree) read-only and applies and prints what the guest's files say: hostname, static
IP from /etc/network/interfaces, the NIC's MAC, machine-id. So the clone's console shows whether dom0 changed the
clone's files, and the source's disk can be checked unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import imagebuild
import ostrees
import pytest

from . import guestkit
from .conftest import SESSION, Dom0, virsh

WORK = Path("/var/tmp/dom0-tests/clone")
MiB = 1024 * 1024
IDENTITY = re.compile(r"dom0test identity hostname=(\S*) ip=(\S*) mac=(\S*) machine-id=(\S*)")


@dataclass
class Source:
    name: str
    dir: Path
    root: Path
    swap: Path
    console: Path

    def identity(self, log: Path | None = None, timeout: float = 90) -> tuple[str, str, str, str]:
        """hostname, ip, mac, machine-id as the guest printed them at boot."""
        path = log or self.console
        deadline = time.monotonic() + timeout
        while True:
            text = path.read_text(errors="replace") if path.exists() else ""
            if m := IDENTITY.search(text):
                return m.group(1), m.group(2), m.group(3), m.group(4)
            if time.monotonic() > deadline:
                pytest.fail(f"no identity line within {timeout:g} s in {path}:\n{text[-1500:]}")
            time.sleep(0.5)


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _root_disk(path: Path, scratch: Path, fmt: str = "raw") -> Path:
    tree = ostrees.debian12().build(scratch / "tree")
    guestkit.identity_tree(tree)
    raw = path if fmt == "raw" else path.with_suffix(".raw")
    imagebuild.mkfs("ext4", raw, 64 * MiB, str(uuidlib.uuid4()), "root", tree=tree)
    if fmt == "qcow2":
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(path)], check=True)
        raw.unlink()
    shutil.rmtree(scratch / "tree")
    path.chmod(0o666)
    return path


MakeSource = Callable[..., Source]


@pytest.fixture(scope="module")
def identity_kit() -> guestkit.Kit:
    return guestkit.build_kit(modules=guestkit.IDENTITY_MODULES)


@pytest.fixture
def make_source(identity_kit: guestkit.Kit) -> Iterator[MakeSource]:
    """Start source guests (and forget every dom0test guest a test made from them, clones included)."""
    made: list[str] = []
    dirs: list[Path] = []

    def factory(where: Path, *, fmt: str = "raw", swap: bool = True) -> Source:
        name = f"dom0test-{SESSION}-src{len(made)}"
        gdir = where / name
        shutil.rmtree(gdir, ignore_errors=True)
        gdir.mkdir(parents=True)
        gdir.chmod(0o755)
        root = _root_disk(gdir / f"{name}.{'qcow2' if fmt == 'qcow2' else 'img'}", gdir, fmt)
        disks = [root]
        if swap:
            disks.append(guestkit.make_disk(gdir / "swap.img", 32, swap=True))
            subprocess.run(["swaplabel", "-L", "srcswap", str(disks[-1])], check=True)
        xml = guestkit.domain_xml(
            name=name, uuid=str(uuidlib.uuid4()), kit=identity_kit, guest_dir=gdir, disks=disks, mode="identity",
            swap=swap,
        )  # fmt: skip
        if fmt == "qcow2":
            xml = xml.replace(f"<driver name='qemu' type='raw'/>\n      <source file='{root}'/>",
                              f"<driver name='qemu' type='qcow2'/>\n      <source file='{root}'/>")  # fmt: skip
        (gdir / "domain.xml").write_text(xml)
        virsh("define", str(gdir / "domain.xml"))
        virsh("start", name)
        made.append(name)
        dirs.append(gdir)
        return Source(name, gdir, root, disks[-1], gdir / "console.log")

    yield factory
    names = virsh("list", "--all", "--name").split()
    for name in names:
        if name in made or name.startswith(f"dom0test-{SESSION}-clone"):
            virsh("destroy", name, check=False)
            virsh("undefine", name, "--nvram", check=False)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def btrfs_dir() -> Iterator[Path]:
    """A btrfs filesystem of this test's own (loop-mounted scratch file): reflinks work there."""
    WORK.mkdir(parents=True, exist_ok=True)
    backing = WORK / f"btrfs-{SESSION}.img"
    mnt = WORK / f"btrfs-{SESSION}"
    backing.unlink(missing_ok=True)
    subprocess.run(["truncate", "-s", "1G", str(backing)], check=True)
    subprocess.run(["mkfs.btrfs", "-q", "-f", str(backing)], check=True)
    mnt.mkdir(exist_ok=True)
    subprocess.run(["mount", "-o", "loop", str(backing), str(mnt)], check=True)
    mnt.chmod(0o755)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        mnt.rmdir()
        backing.unlink(missing_ok=True)


@pytest.fixture
def ext4_dir() -> Iterator[Path]:
    path = WORK / f"ext4-{SESSION}"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _clone_name(tag: str) -> str:
    return f"dom0test-{SESSION}-clone{tag}"


def _new_console(src: Source, clone: str) -> Path:
    return src.dir / f"{clone}-console.log"


def _check_clone_boots(dom0: Dom0, src: Source, clone: str, out: dict[str, object]) -> None:
    virsh("start", clone)
    hostname, ip, mac, machine_id = src.identity(_new_console(src, clone))
    assert hostname == "clone-vm"
    assert ip.startswith("10.0.0.42/")
    assert mac == out["macs"][0]  # type: ignore[index]
    assert machine_id == "uninitialized"


def test_clone_a_running_guest_by_reflink(btrfs_dir: Path, dom0: Dom0, make_source: MakeSource) -> None:
    # btrfs_dir first: set up before the guests, so it is unmounted after they are gone
    src = make_source(btrfs_dir)
    assert src.identity()[0] == "source-vm"
    before = _sha(src.root)
    clone = _clone_name("r")
    args = ("clone", src.name, clone, "--hostname", "clone-vm", "--ip", "10.0.0.42/24", "--gateway", "10.0.0.1")
    plan = json.loads(dom0(*args, "--dry-run", "--json").stdout)
    assert [d["method"] for d in plan["disks"]] == ["reflink", "new swap (same size, UUID, label)"]
    assert virsh("domstate", clone, check=False).strip() == ""  # the dry run defined nothing

    out = json.loads(dom0(*args, "--json").stdout)
    assert virsh("domstate", src.name).strip() == "running"  # never stopped
    assert _sha(src.root) == before  # the source's disk is unchanged
    new_swap = Path(out["disks"][1]["dest"])
    blkid = subprocess.run(["blkid", "-o", "export", str(new_swap)], capture_output=True, text=True, check=True).stdout
    old = subprocess.run(["blkid", "-o", "export", str(src.swap)], capture_output=True, text=True, check=True).stdout
    uuid_of = re.compile(r"^UUID=(.*)$", re.M)
    assert uuid_of.findall(blkid) == uuid_of.findall(old)  # the fstab's swap UUID still matches
    assert "LABEL=srcswap" in blkid
    _check_clone_boots(dom0, src, clone, out)
    assert src.identity()[0] == "source-vm"


def test_clone_with_pause_copies_then_resumes(ext4_dir: Path, dom0: Dom0, make_source: MakeSource) -> None:
    src = make_source(ext4_dir)
    src.identity()
    before = _sha(src.root)
    clone = _clone_name("p")
    r = dom0("clone", src.name, clone, "--hostname", "clone-vm", "--ip", "10.0.0.42/24", check=False)
    assert r.returncode == 1  # ext4 cannot reflink: a running guest's disk would be copied torn
    assert "torn" in r.stderr
    assert virsh("domstate", clone, check=False).strip() == ""
    assert not list(src.dir.glob(f"{clone}*"))

    out = json.loads(
        dom0("clone", src.name, clone, "--hostname", "clone-vm", "--ip", "10.0.0.42/24", "--pause", "--json").stdout
    )
    assert out["pause"] is True
    assert virsh("domstate", src.name).strip() == "running"  # resumed
    assert _sha(src.root) == before
    copy = Path(out["disks"][0]["dest"])
    assert copy.stat().st_blocks * 512 < copy.stat().st_size  # holes stayed holes
    _check_clone_boots(dom0, src, clone, out)

    again = dom0("clone", src.name, clone, check=False)
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_overlay_clone_of_a_running_qcow2_guest(ext4_dir: Path, dom0: Dom0, make_source: MakeSource) -> None:
    src = make_source(ext4_dir, fmt="qcow2", swap=False)
    src.identity()
    clone = _clone_name("o")
    out = json.loads(
        dom0(
            "clone", src.name, clone, "--mode", "overlay", "--hostname", "clone-vm", "--ip", "10.0.0.42/24", "--json"
        ).stdout
    )
    assert [d["method"] for d in out["disks"]] == ["qcow2 overlay"]
    assert virsh("domstate", src.name).strip() == "running"
    # the source now writes to its own overlay; its old disk is the read-only base both share
    assert str(src.root) not in virsh("domblklist", src.name)
    _check_clone_boots(dom0, src, clone, out)


def test_a_failed_clone_removes_exactly_what_it_created(dom0: Dom0, make_source: MakeSource) -> None:
    small = WORK / f"small-{SESSION}"
    small.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "dom0test-small", str(small)], check=True)
    try:
        src = make_source(small)
        src.identity()
        # a second disk full of data: the clone's copy of it cannot fit beside it in 64 MiB
        data = src.dir / "data.img"
        subprocess.run(["dd", "if=/dev/urandom", f"of={data}", "bs=1M", "count=35", "status=none"], check=True)
        virsh("attach-disk", src.name, str(data), "vdc", "--persistent")
        listing = sorted(p.name for p in src.dir.iterdir())
        clone = _clone_name("f")
        r = dom0("clone", src.name, clone, "--pause", check=False)
        assert r.returncode == 1
        assert "removed everything it had created" in r.stderr
        assert sorted(p.name for p in src.dir.iterdir()) == listing
        assert virsh("domstate", clone, check=False).strip() == ""
        assert virsh("domstate", src.name).strip() == "running"
    finally:
        for name in virsh("list", "--all", "--name").split():
            if name.startswith(f"dom0test-{SESSION}-src"):
                virsh("destroy", name, check=False)
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_export_then_import_under_a_new_name_boots(
    ext4_dir: Path, dom0: Dom0, make_source: MakeSource, tmp_path: Path
) -> None:
    src = make_source(ext4_dir)
    src.identity()
    dom0("shutdown", src.name, "--wait", "--timeout", "60")
    out = json.loads(dom0("export", src.name, str(tmp_path / "media"), "--json").stdout)
    exported = Path(out["directory"])
    assert sorted(p.name for p in exported.iterdir()) == ["definition.xml", "manifest.json", "vda.raw.zst"]
    assert [d["file"] for d in out["disks"]] == ["vda.raw.zst", ""]  # swap: made afresh, not carried

    # a damaged copy is refused before anything is written
    stored = exported / "vda.raw.zst"
    good = stored.read_bytes()
    stored.write_bytes(good[:-10] + bytes(10))
    new = _clone_name("i")
    r = dom0("import", str(exported), "--name", new, "--storage", str(src.dir), check=False)
    assert r.returncode == 1
    assert "damaged" in r.stderr
    assert not list(src.dir.glob(f"{new}*"))
    stored.write_bytes(good)

    # the test guests boot a kernel and initrd of this host: an export's word for host paths is not taken...
    r = dom0("import", str(exported), "--name", new, "--storage", str(src.dir), check=False)
    assert r.returncode == 1
    assert "kernel '/var/tmp/dom0-tests/vmlinuz" in r.stderr
    assert "--boot-dir" in r.stderr
    assert not list(src.dir.glob(f"{new}*"))
    # ...the administrator's is
    dom0("import", str(exported), "--name", new, "--storage", str(src.dir), "--boot-dir", str(guestkit.WORK_DIR))
    disk = src.dir / f"{new}-vda.img"
    assert disk.stat().st_blocks * 512 < disk.stat().st_size  # written sparse
    assert _sha(disk) == _sha(src.root)
    virsh("start", new)
    hostname, _, mac, _ = src.identity(_new_console(src, new))
    assert hostname == "source-vm"  # a move, not a clone: the inside is as it was
    assert mac not in src.identity()[2]  # but a second copy on this host has its own MAC
