"""Recognise a Linux swap area on a guest disk from the host, by reading its signature read-only.

mkswap writes "SWAPSPACE2" (or the old "SWAP-SPACE") in the last 10 bytes of the first page of the area. The page
size is the guest kernel's, which the host cannot know, so every page size Linux uses is tried (4 KiB on x86, up to
64 KiB on arm64/ppc64). Only a signature at the start of the whole disk counts: a partitioned disk that holds a swap
partition next to a root file system is not a "swap disk", and counting it as one would flag ordinary I/O as paging.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from dom0.model import Disk, DiskSource

MAGICS = (b"SWAPSPACE2", b"SWAP-SPACE")
PAGE_SIZES = (4096, 8192, 16384, 65536)
_MAGIC_LEN = 10

# Formats whose first guest-visible bytes are the first bytes of the host file; qcow2 and friends are not.
_RAW_FORMATS = frozenset({"", "raw", "host_device"})


def has_signature(head: bytes, page_sizes: Iterable[int] = PAGE_SIZES) -> bool:
    """Whether `head` (the start of a disk) carries a swap signature at the end of its first page."""
    for page in page_sizes:
        magic = head[page - _MAGIC_LEN : page]
        if magic in MAGICS:
            return True
    return False


def probe_path(path: str) -> bool | None:
    """True/False when the file or block device at `path` could be read; None when it cannot (never raises)."""
    want = max(PAGE_SIZES)
    try:
        # O_NONBLOCK keeps a FIFO or a tape-like device from hanging the probe; only regular files and block
        # devices are read at all.
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
    return has_signature(head)


class SwapProbe:
    """Answers "is this disk a swap disk?" once per source and remembers it for the rest of the run."""

    def __init__(self, *, local: bool = True) -> None:
        # A remote hypervisor's paths name files on another machine; reading the same path here would be wrong.
        self.local = local
        self._cache: dict[tuple[str, str, str], bool | None] = {}

    def is_swap(self, disk: Disk) -> bool | None:
        """True for a disk that starts with a swap signature, False when it does not, None when unknown."""
        if disk.device in ("cdrom", "floppy"):
            return False
        if not self.local or disk.source_kind not in (DiskSource.FILE, DiskSource.BLOCK):
            return None
        if disk.format not in _RAW_FORMATS:
            return None
        key = (disk.source_kind.value, disk.source, disk.format)
        if key not in self._cache:
            self._cache[key] = probe_path(disk.source)
        return self._cache[key]
