"""libvirt's Xen (libxl) driver save images: a libvirt header with the domain XML, then libxl's stream."""

from __future__ import annotations

from dom0.errors import Dom0Error
from dom0.saveimage import ImageHeader

MAGIC = b"libvirt-xml\n \0 \r"


def matches(head: bytes) -> bool:
    """Whether `head` starts with the libxl driver's save header."""
    return head.startswith(MAGIC)


def parse(head: bytes) -> ImageHeader:
    """The guest recorded in a libxl driver save header."""
    raise Dom0Error("reading libvirt Xen save headers is not written yet")
