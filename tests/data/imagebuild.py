"""Real partitioned disk images for the image tests, made with the same tools an administrator uses.

sfdisk writes the tables, mkfs.* / mkswap the filesystems (each in its own sparse file, then placed at its
partition's offset), lvm2 the PV/VG/LVs on a loop device (`--activate n`: this host's kernel has no
device-mapper, so LV contents are written at the offsets `lvs` reports), qemu-img the qcow2 copies.
Every fact a test checks (UUIDs, labels, offsets) is chosen here, so expectations never come from the code
under test. Images are sparse: a few hundred MiB of apparent size cost a few MiB of disk.
"""

from __future__ import annotations

import os
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

from dom0 import run

MiB = 1024 * 1024
SECTOR = 512


@dataclass(frozen=True)
class Fs:
    """What a test expects to find: blkid type, UUID, label, and where (byte offset, location words)."""

    type: str
    uuid: str
    label: str
    offset: int
    location: str
    version: str = ""


@dataclass
class Image:
    """A built image and everything about it a test may check."""

    path: Path
    table: str
    partitions: list[dict[str, object]] = field(default_factory=list)
    filesystems: list[Fs] = field(default_factory=list)
    lvm: list[dict[str, object]] = field(default_factory=list)


def _u(n: int) -> str:
    """A fixed, recognisable UUID per test filesystem (so a wrong offset shows up as a wrong UUID)."""
    return str(uuidlib.UUID(int=0x0D0E0000_0000_4000_8000_000000000000 | n))


def place(image: Path, offset: int, payload: Path) -> None:
    """Copy `payload` into `image` at `offset`, writing only its data regions (both stay sparse)."""
    size = payload.stat().st_size
    with payload.open("rb") as src, image.open("r+b") as dst:
        fd = src.fileno()
        pos = 0
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            hole = min(os.lseek(fd, data, os.SEEK_HOLE), size)
            src.seek(data)
            dst.seek(offset + data)
            left = hole - data
            while left > 0:
                chunk = src.read(min(left, 4 * MiB))
                dst.write(chunk)
                left -= len(chunk)
            pos = hole


def sparse(path: Path, size: int) -> Path:
    """An empty sparse file of `size` bytes."""
    with path.open("wb") as fh:
        fh.truncate(size)
    return path


def sfdisk(image: Path, script: str) -> None:
    """Write a partition table with sfdisk from a script (as an administrator would type it)."""
    run.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(image)], input=script.encode())


def mkfs(kind: str, path: Path, size: int, uuid: str, label: str, *, tree: Path | None = None) -> Path:
    """A filesystem of `kind` in its own sparse file, with the given UUID and label."""
    sparse(path, size)
    p = str(path)
    if kind in ("ext2", "ext3", "ext4"):
        cmd = ["mkfs." + kind, "-q", "-F", "-U", uuid, "-L", label]
        cmd += ["-d", str(tree)] if tree else []
        run.run([*cmd, p])
    elif kind == "xfs":
        run.run(["mkfs.xfs", "-q", "-f", "-m", f"uuid={uuid}", "-L", label, p])
    elif kind == "btrfs":
        run.run(["mkfs.btrfs", "-q", "-f", "-U", uuid, "-L", label, p])
    elif kind == "swap":
        run.run(["mkswap", "-U", uuid, "-L", label, p])
    elif kind == "vfat":
        # vfat's "UUID" is its 32-bit volume id: take it from the UUID's first 8 hex digits.
        run.run(["mkfs.vfat", "-i", uuid.replace("-", "")[:8], "-n", label, p])
    else:
        raise ValueError(kind)
    return path


def vfat_id(uuid: str) -> str:
    """The XXXX-XXXX form blkid shows for the volume id mkfs() gave a vfat filesystem."""
    h = uuid.replace("-", "")[:8].upper()
    return f"{h[:4]}-{h[4:]}"


def _tree(base: Path) -> Path:
    tree = base / "tree"
    (tree / "etc").mkdir(parents=True, exist_ok=True)
    (tree / "etc" / "hostname").write_text("imagebuild\n")
    return tree


def mbr63(base: Path) -> Image:
    """The seed's layout: MBR, ext3 "root" at sector 63 (bootable), swap after it."""
    img = sparse(base / "mbr63.img", 64 * MiB)
    sfdisk(img, "label: dos\nstart=63, size=81920, type=83, bootable\nstart=81983, size=32768, type=82\n")
    mkfs("ext3", base / "p1", 81920 * SECTOR, _u(1), "root", tree=_tree(base))
    mkfs("swap", base / "p2", 32768 * SECTOR, _u(2), "swap0")
    place(img, 63 * SECTOR, base / "p1")
    place(img, 81983 * SECTOR, base / "p2")
    return Image(
        img,
        "mbr",
        [
            {"number": 1, "start_sector": 63, "size_bytes": 81920 * SECTOR, "type": "0x83 Linux", "bootable": True},
            {"number": 2, "start_sector": 81983, "size_bytes": 32768 * SECTOR, "type": "0x82 Linux swap"},
        ],
        [
            Fs("ext3", _u(1), "root", 63 * SECTOR, "partition 1"),
            Fs("swap", _u(2), "swap0", 81983 * SECTOR, "partition 2", "1"),
        ],
    )


def mbr2048(base: Path) -> Image:
    """A modern MBR: ext4 at 2048, ext2 after it."""
    img = sparse(base / "mbr2048.img", 48 * MiB)
    sfdisk(img, "label: dos\nstart=2048, size=32M, type=83\nstart=67584, type=83\n")
    mkfs("ext4", base / "q1", 32 * MiB, _u(3), "modern", tree=_tree(base))
    end = 48 * MiB // SECTOR
    mkfs("ext2", base / "q2", (end - 67584) * SECTOR, _u(4), "")
    place(img, 2048 * SECTOR, base / "q1")
    place(img, 67584 * SECTOR, base / "q2")
    return Image(
        img,
        "mbr",
        [
            {"number": 1, "start_sector": 2048, "size_bytes": 32 * MiB, "type": "0x83 Linux", "bootable": False},
            {"number": 2, "start_sector": 67584, "size_bytes": (end - 67584) * SECTOR, "type": "0x83 Linux"},
        ],
        [
            Fs("ext4", _u(3), "modern", 2048 * SECTOR, "partition 1"),
            Fs("ext2", _u(4), "", 67584 * SECTOR, "partition 2"),
        ],
    )


def extended(base: Path) -> Image:
    """MBR with a primary, an extended partition and two logical ones (Linux numbers them 5 and 6)."""
    img = sparse(base / "extended.img", 64 * MiB)
    sfdisk(
        img,
        "label: dos\nstart=2048, size=16M, type=83\nstart=34816, type=5\nstart=36864, size=24M, type=83\n"
        "start=88064, size=8M, type=82\n",
    )
    mkfs("ext2", base / "e1", 16 * MiB, _u(5), "boot")
    mkfs("ext4", base / "e5", 24 * MiB, _u(6), "five")
    mkfs("swap", base / "e6", 8 * MiB, _u(7), "six")
    place(img, 2048 * SECTOR, base / "e1")
    place(img, 36864 * SECTOR, base / "e5")
    place(img, 88064 * SECTOR, base / "e6")
    return Image(
        img,
        "mbr",
        [
            {"number": 1, "start_sector": 2048, "size_bytes": 16 * MiB, "type": "0x83 Linux", "kind": "primary"},
            {"number": 2, "start_sector": 34816, "type": "0x05 Extended", "kind": "extended"},
            {"number": 5, "start_sector": 36864, "size_bytes": 24 * MiB, "type": "0x83 Linux", "kind": "logical"},
            {"number": 6, "start_sector": 88064, "size_bytes": 8 * MiB, "type": "0x82 Linux swap", "kind": "logical"},
        ],
        [
            Fs("ext2", _u(5), "boot", 2048 * SECTOR, "partition 1"),
            Fs("ext4", _u(6), "five", 36864 * SECTOR, "partition 5"),
            Fs("swap", _u(7), "six", 88064 * SECTOR, "partition 6", "1"),
        ],
    )


def gpt(base: Path) -> Image:
    """GPT: BIOS boot, ext4, swap, vfat, xfs (300 MiB: mkfs.xfs's minimum) and btrfs."""
    img = sparse(base / "gpt.img", 560 * MiB)
    sfdisk(
        img,
        "label: gpt\n"
        "start=2048, size=1M, type=21686148-6449-6E6F-744E-656564454649, name=bios\n"
        "start=4096, size=32M, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n"
        "start=69632, size=8M, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F\n"
        "start=86016, size=33M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n"
        "start=153600, size=300M, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"
        "start=768000, size=128M, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n",
    )
    mkfs("ext4", base / "g2", 32 * MiB, _u(8), "gptroot", tree=_tree(base))
    mkfs("swap", base / "g3", 8 * MiB, _u(9), "")
    mkfs("vfat", base / "g4", 33 * MiB, _u(10), "EFI")
    mkfs("xfs", base / "g5", 300 * MiB, _u(11), "data")
    mkfs("btrfs", base / "g6", 128 * MiB, _u(12), "pool")
    for name, start in (("g2", 4096), ("g3", 69632), ("g4", 86016), ("g5", 153600), ("g6", 768000)):
        place(img, start * SECTOR, base / name)
    return Image(
        img,
        "gpt",
        [
            {"number": 1, "start_sector": 2048, "size_bytes": 1 * MiB, "type": "BIOS boot", "filesystem": None},
            {"number": 2, "start_sector": 4096, "size_bytes": 32 * MiB, "type": "Linux filesystem", "name": "root"},
            {"number": 3, "start_sector": 69632, "size_bytes": 8 * MiB, "type": "Linux swap"},
            {"number": 4, "start_sector": 86016, "size_bytes": 33 * MiB, "type": "EFI System"},
            {"number": 5, "start_sector": 153600, "size_bytes": 300 * MiB, "type": "Linux filesystem"},
            {"number": 6, "start_sector": 768000, "size_bytes": 128 * MiB, "type": "Linux filesystem"},
        ],
        [
            Fs("ext4", _u(8), "gptroot", 4096 * SECTOR, "partition 2"),
            Fs("swap", _u(9), "", 69632 * SECTOR, "partition 3", "1"),
            Fs("vfat", vfat_id(_u(10)), "EFI", 86016 * SECTOR, "partition 4", "FAT16"),
            Fs("xfs", _u(11), "data", 153600 * SECTOR, "partition 5"),
            Fs("btrfs", _u(12), "pool", 768000 * SECTOR, "partition 6"),
        ],
    )


def whole_disk(base: Path) -> Image:
    """A filesystem with no partition table: what `dd skip=63` made in the seed."""
    img = mkfs("ext4", base / "whole.img", 24 * MiB, _u(13), "whole", tree=_tree(base))
    return Image(img, "none", [], [Fs("ext4", _u(13), "whole", 0, "whole disk")])


def lvm(base: Path, vg: str) -> Image:
    """MBR with an LVM PV at 2048 holding VG `vg`: LV root (ext4, in two separate extent runs) and LV swap.

    Needs root (loop device). The LVs are never activated; their contents are written at the offsets that
    `pvs`/`lvs` report, which is exactly what a reader must compute back from the on-disk metadata.
    """
    img = sparse(base / "lvm.img", 64 * MiB)
    sfdisk(img, "label: dos\nstart=2048, type=8e\n")
    pv_off = 2048 * SECTOR
    loop = run.output(
        ["losetup", "-f", "--show", "-o", str(pv_off), "--sizelimit", str(64 * MiB - pv_off), str(img)]
    ).strip()
    os.environ["LVM_SUPPRESS_FD_WARNINGS"] = "1"
    # Only this loop device, no device-mapper, and no backup/archive copies left in the host's /etc/lvm.
    opts = ["--devices", loop, "--driverloaded", "n", "--config", "backup { backup = 0 archive = 0 }"]
    try:
        run.run(["pvcreate", *opts, loop])
        run.run(["vgcreate", *opts, "-s", "4M", vg, loop])
        run.run(["lvcreate", *opts, "--activate", "n", "--zero", "n", "-L", "8M", "-n", "root", vg])
        run.run(["lvcreate", *opts, "--activate", "n", "--zero", "n", "-L", "8M", "-n", "swap", vg])
        # Growing root after swap exists gives it a second, non-adjacent run of extents.
        run.run(["lvextend", *opts, "-L", "+8M", f"{vg}/root"])
        pe_start = int(run.output(["pvs", *opts, "--noheadings", "--units", "b", "--nosuffix", "-o", "pe_start", loop]))
        segs = run.output(
            ["lvs", *opts, "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_name,seg_start_pe,seg_pe_ranges", vg]
        )
    finally:
        run.run(["losetup", "-d", loop], check=False)
    extent = 4 * MiB
    runs: dict[str, list[tuple[int, int]]] = {}
    for line in segs.split("\n"):
        if not line.strip():
            continue
        name, lv_pe, ranges = line.split()
        first = int(ranges.rsplit(":", 1)[1].split("-")[0])
        runs.setdefault(name, []).append((int(lv_pe) * extent, pv_off + pe_start + first * extent))
    mkfs("ext4", base / "lvroot", 16 * MiB, _u(14), "lvroot", tree=_tree(base))
    mkfs("swap", base / "lvswap", 8 * MiB, _u(15), "lvswap")
    for name, payload in (("root", base / "lvroot"), ("swap", base / "lvswap")):
        data = payload.read_bytes()
        with img.open("r+b") as fh:
            for lv_off, img_off in runs[name]:
                fh.seek(img_off)
                fh.write(data[lv_off : lv_off + 2 * extent])
    return Image(
        img,
        "mbr",
        [{"number": 1, "start_sector": 2048, "type": "0x8e Linux LVM"}],
        [
            Fs("LVM2_member", "", "", pv_off, "partition 1", "LVM2 001"),
            Fs("ext4", _u(14), "lvroot", runs["root"][0][1], f"logical volume {vg}/root"),
            Fs("swap", _u(15), "lvswap", runs["swap"][0][1], f"logical volume {vg}/swap", "1"),
        ],
        [{"name": vg, "pvs": ["partition 1"], "lvs": {"root": 16 * MiB, "swap": 8 * MiB}, "runs": runs}],
    )


def qcow2(raw: Path, out: Path) -> Path:
    """`raw` converted to qcow2 with qemu-img."""
    run.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out)])
    return out


def overlay(base_image: Path, out: Path) -> Path:
    """A qcow2 overlay whose backing file is named relative to it (as virt-install and libvirt make them)."""
    run.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base_image.name, str(out)],
    )
    return out


def blkid(image: Path, offset: int) -> dict[str, str]:
    """What blkid itself says about the filesystem at `offset` (to cross-check the probe)."""
    out = run.run(["blkid", "-p", "-o", "export", "-O", str(offset), str(image)], check=False).stdout.decode()
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@dataclass
class Images:
    """The session's images; `lvm` is None (with `lvm_skip` saying why) when loop devices cannot be used."""

    base: Path
    mbr63: Image
    mbr2048: Image
    extended: Image
    gpt: Image
    whole: Image
    lvm: Image | None
    lvm_skip: str
    qcow2: Path
    overlay: Path


def build_all(base: Path) -> Images:
    """Build every image under `base` (about two seconds; LVM only as root)."""
    base.mkdir(parents=True, exist_ok=True)
    parts = {name: base / name for name in ("mbr63", "mbr2048", "extended", "gpt", "whole", "lvm")}
    for d in parts.values():
        d.mkdir(exist_ok=True)
    lvm_image: Image | None = None
    skip = ""
    if os.geteuid() != 0:
        skip = "building the LVM image needs root (losetup + pvcreate on a loop device)"
    elif not run.available("pvcreate"):
        skip = "lvm2 is not installed (scripts/setup-host.sh installs it)"
    else:
        lvm_image = lvm(parts["lvm"], f"dom0testvg{os.getpid()}")
    m2048 = mbr2048(parts["mbr2048"])
    q = qcow2(m2048.path, base / "mbr2048.qcow2")
    return Images(
        base=base,
        mbr63=mbr63(parts["mbr63"]),
        mbr2048=m2048,
        extended=extended(parts["extended"]),
        gpt=gpt(parts["gpt"]),
        whole=whole_disk(parts["whole"]),
        lvm=lvm_image,
        lvm_skip=skip,
        qcow2=q,
        overlay=overlay(q, base / "overlay.qcow2"),
    )


_BUILT: dict[str, Images] = {}


def session_images(base: Path) -> Images:
    """build_all, once per test session however many test modules ask."""
    if "images" not in _BUILT:
        _BUILT["images"] = build_all(base)
    return _BUILT["images"]
