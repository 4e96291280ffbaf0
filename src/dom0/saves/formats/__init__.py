"""Save image headers: which hypervisor driver wrote a save stream, for which guest, and how to make it whole.

Each driver's header knowledge lives in one module here (qemu.py, libxl.py, xl.py); nothing else reads their bytes.
"""

from __future__ import annotations

from dom0.errors import Dom0Error
from dom0.model import SaveFormat
from dom0.saves.formats import libxl, qemu, xl
from dom0.saves.formats.header import HEAD_BYTES, ImageHeader, PassThrough, StreamFixer

__all__ = ["HEAD_BYTES", "ImageHeader", "PassThrough", "StreamFixer", "fixer_for", "sniff"]


def sniff(head: bytes) -> ImageHeader:
    """Read the header at the start of a save stream; Dom0Error when no known driver wrote it."""
    for matches, parse in ((qemu.matches, qemu.parse), (libxl.matches, libxl.parse), (xl.matches, xl.parse)):
        if matches(head):
            return parse(head)
    raise Dom0Error(
        "not a save image dom0 knows: it does not start with a libvirt QEMU, libvirt Xen or xl save header",
        "give an image written by `dom0 save`, `virsh save` or `xl save`",
    )


def fixer_for(fmt: SaveFormat) -> StreamFixer:
    """The stream fixer for images of `fmt`."""
    if fmt is SaveFormat.QEMU:
        return qemu.QemuStreamFixer()
    return PassThrough()
