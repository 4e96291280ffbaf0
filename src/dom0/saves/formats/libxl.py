"""libvirt's Xen (libxl) driver save images: a libvirt header with the domain XML, then libxl's stream.

Layout (libvirt's src/libxl/libxl_conf.h, libxlSavefileHeader, written by libxl_driver.c):
- magic, 16 bytes: "libvirt-xml\\n \\0 \\r"
- version u32 (1; 2 when libvirt was built for libxl's stream version 2), xmlLen u32 (the XML's bytes with its
  trailing NUL), unused u32[10]: 64 bytes in all, in the host's byte order
- the domain XML (NUL-terminated), then libxl's stream as libxl_domain_suspend writes it

libvirt writes the header once, in order, and does not reopen the file, so a FIFO carries the whole image.
The header does not record whether the guest was running (libvirt's libxl driver only saves running guests).
"""

from __future__ import annotations

import struct

from dom0.errors import Dom0Error
from dom0.model import SaveFormat
from dom0.saves.formats.header import ImageHeader
from dom0.saves.formats.qemu import identity_from_xml

MAGIC = b"libvirt-xml\n \0 \r"
HEADER = struct.Struct("<16s2I10I")
HEADER_SIZE = HEADER.size  # 64
KNOWN_VERSIONS = (1, 2)
# Sanity bound: domain XML is kilobytes; a length in the megabytes is a garbled header.
MAX_XML = 16 << 20

_HINT = "the file is damaged or was not written by libvirt's Xen driver (`virsh -c xen:///system save`)"


def matches(head: bytes) -> bool:
    """Whether `head` starts with the libxl driver's save header."""
    return head.startswith(MAGIC)


def parse(head: bytes) -> ImageHeader:
    """The guest recorded in a libxl driver save header; Dom0Error for a truncated or garbled one."""
    if not matches(head):
        raise Dom0Error("not a save image of libvirt's Xen driver", _HINT)
    if len(head) < HEADER_SIZE:
        raise Dom0Error(f"the libvirt Xen save image is cut short inside its header ({len(head)} of 64 bytes)")
    _magic, version, xml_len, *_ = HEADER.unpack_from(head)
    if version not in KNOWN_VERSIONS:
        raise Dom0Error(
            f"the libvirt Xen save image has header version {version}, which dom0 does not know",
            "restore it with `virsh restore` on the host that wrote it",
        )
    if not 0 < xml_len <= MAX_XML:
        raise Dom0Error(f"the libvirt Xen save image has a garbled header (XML length {xml_len})", _HINT)
    end = HEADER_SIZE + xml_len
    if len(head) < end:
        raise Dom0Error(
            f"the libvirt Xen save image is cut short inside the guest definition it carries "
            f"({len(head)} of {end} bytes)"
        )
    xml = head[HEADER_SIZE:end].split(b"\0", 1)[0].decode(errors="replace")
    name, uuid = identity_from_xml(xml)
    return ImageHeader(SaveFormat.LIBXL, name, uuid, None, end)
