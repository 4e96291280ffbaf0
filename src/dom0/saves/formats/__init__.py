"""Save image headers: which hypervisor driver wrote a save stream, for which guest, and how to make it whole.

Each driver's header knowledge lives in one module here (qemu.py, libxl.py, xl.py); nothing else reads their bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dom0.errors import Dom0Error
from dom0.model import SaveFormat

# Enough of a stream's start for every format's header and the guest definition embedded in it.
HEAD_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """What a save image's header says: who wrote it and for which guest."""

    format: SaveFormat
    name: str  # '' when the header does not say
    uuid: str  # canonical lower-case 8-4-4-4-12, '' when unknown
    was_running: bool | None  # None when the format does not record it
    header_size: int  # bytes before the hypervisor's own memory stream, embedded definition included


class StreamFixer(Protocol):
    """Turns what a driver writes into a FIFO into the bytes a regular-file save would have left on disk."""

    expects_trailer: bool  # the driver reopens the path after the stream to finish its header

    def feed(self, chunk: bytes) -> bytes:
        """The bytes of `chunk` to store (the stream's first bytes may be patched)."""
        ...

    def trailer(self, data: bytes) -> None:
        """Check what the driver wrote on its second open; Dom0Error when it is not what a whole image needs."""
        ...


class PassThrough:
    """Drivers that write their header once, in order: the FIFO already carries the whole image."""

    expects_trailer = False

    def feed(self, chunk: bytes) -> bytes:
        """Stored as it comes."""
        return chunk

    def trailer(self, data: bytes) -> None:
        """These drivers write nothing after the stream."""
        if data:
            raise Dom0Error(f"the hypervisor wrote {len(data)} unexpected bytes after its save stream")


def sniff(head: bytes) -> ImageHeader:
    """Read the header at the start of a save stream; Dom0Error when no known driver wrote it."""
    from dom0.saves.formats.libxl import matches as is_libxl
    from dom0.saves.formats.libxl import parse as parse_libxl
    from dom0.saves.formats.qemu import matches as is_qemu
    from dom0.saves.formats.qemu import parse as parse_qemu
    from dom0.saves.formats.xl import matches as is_xl
    from dom0.saves.formats.xl import parse as parse_xl

    for matches, parse in ((is_qemu, parse_qemu), (is_libxl, parse_libxl), (is_xl, parse_xl)):
        if matches(head):
            return parse(head)
    raise Dom0Error(
        "not a save image dom0 knows: it does not start with a libvirt QEMU, libvirt Xen or xl save header",
        "give an image written by `dom0 save`, `virsh save` or `xl save`",
    )


def fixer_for(fmt: SaveFormat) -> StreamFixer:
    """The stream fixer for images of `fmt`."""
    if fmt is SaveFormat.QEMU:
        from dom0.saves.formats.qemu import QemuStreamFixer

        return QemuStreamFixer()
    return PassThrough()
