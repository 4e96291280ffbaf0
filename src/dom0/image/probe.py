"""Which filesystem starts at offset 0 of a source, from its superblock magic: type, UUID and label as blkid names them.

Identification only (a few fixed offsets in the first 68 KiB); reading files is left to the dissect modules.
This is also the one reader of the Linux swap signature: `dom0 image` and clone's new swap areas read it through
probe(), and `dom0 top` tells a running guest's swap disks (to show its paging) with SwapProbe, which reads only
the signature of a whole raw disk, read-only and once a run.
"""

from __future__ import annotations

import os
import stat
import struct
import uuid as uuidlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dom0.image.source import ImageSource

if TYPE_CHECKING:
    from dom0.model import Disk

# Everything probed lies in the first 64 KiB plus btrfs' and reiserfs' superblocks just after it.
HEAD_BYTES = 0x10000 + 4096


@dataclass(frozen=True)
class Filesystem:
    """A filesystem (or swap area, or LVM physical volume) found in an image.

    `offset` is its first byte in the image, `size` its size in bytes as its own superblock records it (or the size
    of what holds it when the superblock does not say), `location` where it lies in words ("partition 1",
    "logical volume vg0/root", "whole disk"); `version` is a detail such as "FAT16" for vfat.
    """

    type: str
    uuid: str
    label: str
    offset: int
    size: int
    location: str
    version: str = ""


def _u16(b: bytes, off: int) -> int:
    return int(struct.unpack_from("<H", b, off)[0])


def _u32(b: bytes, off: int) -> int:
    return int(struct.unpack_from("<I", b, off)[0])


def _u64(b: bytes, off: int) -> int:
    return int(struct.unpack_from("<Q", b, off)[0])


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace").strip()


def format_uuid(raw: bytes) -> str:
    """16 bytes as blkid prints a UUID (lowercase 8-4-4-4-12); empty for all zeros."""
    if len(raw) != 16 or not any(raw):
        return ""
    return str(uuidlib.UUID(bytes=raw))


def _fs(type_: str, uuid: str, label: str, size: int, version: str = "") -> Filesystem:
    return Filesystem(type=type_, uuid=uuid, label=label, offset=0, size=size, location="", version=version)


# ext2/3/4 feature bits, as blkid uses them to tell the three apart.
_COMPAT_HAS_JOURNAL = 0x0004
_INCOMPAT_JOURNAL_DEV = 0x0008
_EXT2_RO_COMPAT_SUPP = 0x0001 | 0x0002 | 0x0004  # sparse_super, large_file, btree_dir
_EXT2_INCOMPAT_SUPP = 0x0002 | 0x0010  # filetype, meta_bg
_EXT3_RO_COMPAT_SUPP = _EXT2_RO_COMPAT_SUPP
_EXT3_INCOMPAT_SUPP = 0x0002 | 0x0004 | 0x0010  # filetype, recover, meta_bg
_INCOMPAT_64BIT = 0x0080


def _probe_ext(head: bytes) -> Filesystem | None:
    sb = head[1024:2048]
    if len(sb) < 1024 or _u16(sb, 0x38) != 0xEF53:
        return None
    log_block = _u32(sb, 0x18)
    if log_block > 6:
        return None
    block = 1024 << log_block
    compat, incompat, ro_compat = _u32(sb, 0x5C), _u32(sb, 0x60), _u32(sb, 0x64)
    blocks = _u32(sb, 0x04)
    if incompat & _INCOMPAT_64BIT:
        blocks |= _u32(sb, 0x150) << 32
    if incompat & _INCOMPAT_JOURNAL_DEV:
        kind = "jbd"
    elif compat & _COMPAT_HAS_JOURNAL:
        within = not (incompat & ~_EXT3_INCOMPAT_SUPP) and not (ro_compat & ~_EXT3_RO_COMPAT_SUPP)
        kind = "ext3" if within else "ext4"
    else:
        within = not (incompat & ~_EXT2_INCOMPAT_SUPP) and not (ro_compat & ~_EXT2_RO_COMPAT_SUPP)
        kind = "ext2" if within else "ext4"
    return _fs(kind, format_uuid(sb[0x68:0x78]), _text(sb[0x78:0x88]), blocks * block)


def _probe_xfs(head: bytes) -> Filesystem | None:
    if head[:4] != b"XFSB" or len(head) < 120:
        return None
    blocksize, dblocks = struct.unpack_from(">IQ", head, 4)
    if blocksize < 512 or blocksize > 65536 or blocksize & (blocksize - 1):
        return None
    return _fs("xfs", format_uuid(head[32:48]), _text(head[108:120]), dblocks * blocksize)


def _probe_btrfs(head: bytes) -> Filesystem | None:
    sb = head[0x10000 : 0x10000 + 4096]
    if len(sb) < 0x12B + 256 or sb[0x40:0x48] != b"_BHRfS_M":
        return None
    return _fs("btrfs", format_uuid(sb[0x20:0x30]), _text(sb[0x12B : 0x12B + 256]), _u64(sb, 0x70))


# mkswap writes its signature in the last 10 bytes of the area's first page. The page size is the guest kernel's,
# which the host cannot know, so every page size Linux uses is tried (4 KiB on x86, up to 64 KiB on arm64/ppc64).
SWAP_PAGE_SIZES = (4096, 8192, 16384, 65536)
_SWAP_MAGICS = (b"SWAPSPACE2", b"SWAP-SPACE")  # version 1 (with UUID and label), version 0
# A swap area holding a hibernation image: the kernel puts the swap signature back when it resumes.
_SWSUSPEND_MAGICS = (b"S1SUSPEND\0", b"S2SUSPEND\0", b"ULSUSPEND\0", b"LINHIB0001")
_SWAP_MAGIC_LEN = 10


def _swap_magic(head: bytes, magics: Iterable[bytes], page_sizes: Iterable[int]) -> tuple[int, bytes] | None:
    """(page size, magic) of the first page size whose last 10 bytes in `head` are one of `magics`."""
    wanted = tuple(magics)
    for page in page_sizes:
        magic = head[page - _SWAP_MAGIC_LEN : page]
        if magic in wanted:
            return page, magic
    return None


def _probe_swap(head: bytes) -> Filesystem | None:
    found = _swap_magic(head, (*_SWAP_MAGICS, *_SWSUSPEND_MAGICS), SWAP_PAGE_SIZES)
    if found is None:
        return None
    page, magic = found
    if magic == b"SWAPSPACE2":
        # The v1 header sits after 1 KiB of boot-loader space: version, last page, bad pages, uuid, label.
        last_page = _u32(head, 1028)
        return _fs("swap", format_uuid(head[1036:1052]), _text(head[1052:1068]), (last_page + 1) * page, "1")
    if magic == b"SWAP-SPACE":
        return _fs("swap", "", "", 0, "0")
    return _fs("swsuspend", "", "", 0)


def has_swap_signature(head: bytes, page_sizes: Iterable[int] = SWAP_PAGE_SIZES) -> bool:
    """Whether `head` (the start of a disk) carries a swap signature (either version) at the end of its first page."""
    return _swap_magic(head, _SWAP_MAGICS, page_sizes) is not None


def _probe_lvm(head: bytes) -> Filesystem | None:
    for sector in range(4):
        label = head[sector * 512 : sector * 512 + 512]
        if label[:8] == b"LABELONE" and label[24:32] == b"LVM2 001":
            hdr = _u32(label, 20)
            if hdr < 32 or hdr + 40 > 512:
                return None
            raw = label[hdr : hdr + 32].decode("ascii", errors="replace")
            # blkid groups the 32 characters 6-4-4-4-4-4-6.
            parts, pos = [], 0
            for n in (6, 4, 4, 4, 4, 4, 6):
                parts.append(raw[pos : pos + n])
                pos += n
            return _fs("LVM2_member", "-".join(parts), "", _u64(label, hdr + 32), "LVM2 001")
    return None


def _probe_luks(head: bytes) -> Filesystem | None:
    if head[:6] != b"LUKS\xba\xbe":
        return None
    return _fs("crypto_LUKS", _text(head[168:208]), "", 0, str(struct.unpack_from(">H", head, 6)[0]))


def _probe_vfat(head: bytes) -> Filesystem | None:
    bs = head[:512]
    if len(bs) < 512 or bs[510:512] != b"\x55\xaa" or bs[0] not in (0xEB, 0xE9):
        return None
    bps, spc, reserved, nfats, root_entries, total16, _media, fat16 = struct.unpack_from("<HBHBHHBH", bs, 11)
    if bps not in (512, 1024, 2048, 4096) or spc == 0 or spc & (spc - 1) or reserved == 0 or nfats not in (1, 2):
        return None
    total = total16 or _u32(bs, 32)
    if fat16:
        ext, magic_off, fat_size = 38, 54, fat16
    else:
        ext, magic_off, fat_size = 66, 82, _u32(bs, 36)
    if not bs[magic_off : magic_off + 5].startswith((b"FAT12", b"FAT16", b"FAT32", b"FAT  ")) and not (
        bs[3:11].startswith((b"MSDOS", b"MSWIN", b"mkfs.fat", b"mkdosfs"))
    ):
        return None
    root_sectors = (root_entries * 32 + bps - 1) // bps
    data = total - (reserved + nfats * fat_size + root_sectors)
    if fat_size == 0 or data <= 0:
        return None
    clusters = data // spc
    version = "FAT12" if clusters < 4085 else "FAT16" if clusters < 65525 else "FAT32"
    uuid = label = ""
    if bs[ext] in (0x28, 0x29):
        vol_id = _u32(bs, ext + 1)
        uuid = f"{vol_id >> 16:04X}-{vol_id & 0xFFFF:04X}"
        if bs[ext] == 0x29:
            label = bs[ext + 5 : ext + 16].decode("latin-1").strip()
    if fat16:
        # FAT12/16 keep the volume label in the root directory too; blkid prefers that entry.
        root = (reserved + nfats * fat_size) * bps
        for i in range(min(root_entries, 64)):
            entry = head[root + 32 * i : root + 32 * i + 32]
            if len(entry) < 32 or entry[0] == 0:
                break
            if entry[0] != 0xE5 and entry[11] & 0x3F == 0x08:
                label = entry[:11].decode("latin-1").strip()
                break
    if label == "NO NAME":
        label = ""
    return _fs("vfat", uuid, label, total * bps, version)


def _probe_ntfs(head: bytes) -> Filesystem | None:
    if head[3:11] != b"NTFS    " or head[510:512] != b"\x55\xaa":
        return None
    bps = _u16(head, 11)
    return _fs("ntfs", f"{_u64(head, 0x48):016X}", "", _u64(head, 0x28) * bps)


def _probe_iso9660(head: bytes) -> Filesystem | None:
    pvd = head[0x8000:0x8800]
    if len(pvd) < 0x800 or pvd[1:6] != b"CD001" or pvd[0] != 1:
        return None
    blocks, block = _u32(pvd, 80), _u16(pvd, 128)

    def date(raw: bytes) -> str:
        s = raw[:16].decode("ascii", errors="replace")
        if not s.isdigit() or not s.strip("0"):
            return ""
        return f"{s[0:4]}-{s[4:6]}-{s[6:8]}-{s[8:10]}-{s[10:12]}-{s[12:14]}-{s[14:16]}"

    # blkid uses the modification time as the UUID, else the creation time.
    uuid = date(pvd[830:847]) or date(pvd[813:830])
    return _fs("iso9660", uuid, _text(pvd[40:72]), blocks * block)


def _probe_reiserfs(head: bytes) -> Filesystem | None:
    sb = head[0x10000 : 0x10000 + 204]
    if len(sb) < 204 or not sb[52:62].startswith((b"ReIsErFs", b"ReIsEr2Fs", b"ReIsEr3Fs")):
        return None
    return _fs("reiserfs", format_uuid(sb[84:100]), _text(sb[100:116]), _u32(sb, 0) * _u16(sb, 44))


# Order matters only for damaged or reused disks: signatures written later by mkfs/pvcreate win.
_PROBES: tuple[Callable[[bytes], Filesystem | None], ...] = (
    _probe_lvm,
    _probe_luks,
    _probe_xfs,
    _probe_ext,
    _probe_btrfs,
    _probe_swap,
    _probe_vfat,
    _probe_ntfs,
    _probe_iso9660,
    _probe_reiserfs,
)


def probe_bytes(head: bytes) -> Filesystem | None:
    """The filesystem whose superblock is in `head` (the first bytes of a volume), or None."""
    for check in _PROBES:
        found = check(head)
        if found is not None:
            return found
    return None


def probe(source: ImageSource) -> Filesystem | None:
    """The filesystem at the start of `source` (offset 0, location ""), or None when nothing is recognised.

    `size` falls back to the source's size when the superblock does not record one, and never exceeds it by
    more than the superblock claims (a truncated image keeps its recorded size so the damage can be reported).
    """
    found = probe_bytes(source.read_at(0, HEAD_BYTES))
    if found is None:
        return None
    if found.size <= 0:
        found = Filesystem(found.type, found.uuid, found.label, 0, source.size, "", found.version)
    return found


# --- swap disks of running guests, for `dom0 top` ------------------------------------------------------------------

# Formats whose first guest-visible bytes are the first bytes of the host file; qcow2 and friends are not.
_RAW_FORMATS = frozenset({"", "raw", "host_device"})


def probe_swap_path(path: str) -> bool | None:
    """Whether the file or block device at `path` starts with a swap signature; None when it cannot be read
    (never raises). Only a signature at the start of the whole disk counts: a partitioned disk that holds a swap
    partition next to a root file system is not a "swap disk", and counting it as one would flag ordinary I/O as
    paging."""
    want = max(SWAP_PAGE_SIZES)
    try:
        # O_NONBLOCK keeps a FIFO or a tape-like device from hanging the probe; only regular files and block
        # devices are read at all. The path is the hypervisor's own (an LV's /dev/VG/LV is a symlink): followed.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
            return None
        head = b""
        while len(head) < want:
            chunk = os.pread(fd, want - len(head), len(head))
            if not chunk:
                break
            head += chunk
    except OSError:
        return None
    finally:
        os.close(fd)
    return has_swap_signature(head)


class SwapProbe:
    """Answers "is this disk a swap disk?" once per source and remembers it for the rest of the run."""

    def __init__(self, *, local: bool = True) -> None:
        # A remote hypervisor's paths name files on another machine; reading the same path here would be wrong.
        self.local = local
        self._cache: dict[tuple[str, str, str], bool | None] = {}

    def is_swap(self, disk: Disk) -> bool | None:
        """True for a disk that starts with a swap signature, False when it does not, None when unknown."""
        # dom0.model's dataclasses are `dom0 top`'s, not the image readers': loaded when a guest's disk is asked about
        from dom0.model import DiskSource

        if disk.device in ("cdrom", "floppy"):
            return False
        if not self.local or disk.source_kind not in (DiskSource.FILE, DiskSource.BLOCK):
            return None
        if disk.format not in _RAW_FORMATS:
            return None
        key = (disk.source_kind.value, disk.source, disk.format)
        if key not in self._cache:
            self._cache[key] = probe_swap_path(disk.source)
        return self._cache[key]
