"""libvirt's QEMU driver save images: a 92-byte header, the domain XML, then QEMU's migration stream.

libvirtd writes the header first with the magic "LibvirtQemudPart" and, once the stream is complete, opens the path
a second time and writes the header again with "LibvirtQemudSave" at offset 0. Into a FIFO that second write
arrives as a 92-byte trailer after the stream, so a streamed image would still say "partial" and `virsh restore`
would refuse it. QemuStreamFixer patches the magic at the start and drops the trailer after checking it.
"""

from __future__ import annotations

import struct
import uuid as uuidlib
import xml.etree.ElementTree as ET

from dom0.errors import Dom0Error
from dom0.model import SaveFormat
from dom0.saves.formats.header import ImageHeader

MAGIC = b"LibvirtQemudSave"
PARTIAL = b"LibvirtQemudPart"
# magic[16], version, data_len (XML + cookie), was_running, compressed, cookie_offset, unused[14]: all u32
HEADER = struct.Struct("<16s5I14I")
HEADER_SIZE = HEADER.size  # 92
_COMPRESSION = {0: "raw", 1: "gzip", 2: "bzip2", 3: "xz", 4: "lzop"}


def matches(head: bytes) -> bool:
    """Whether `head` starts with a QEMU driver save header (whole or partial)."""
    return head[:16] in (MAGIC, PARTIAL)


def parse(head: bytes) -> ImageHeader:
    """The guest and state recorded in a QEMU driver save header; Dom0Error for a partial or compressed one."""
    if len(head) < HEADER_SIZE:
        raise Dom0Error("the save image is cut short inside its header")
    magic, version, data_len, was_running, compressed, _cookie, *_ = HEADER.unpack_from(head)
    if magic == PARTIAL:
        raise Dom0Error(
            "the save image is incomplete: libvirt never finished writing it",
            "the save was interrupted; the guest was not stopped by it, check `dom0 list`",
        )
    if version not in (1, 2):
        raise Dom0Error(f"the save image has header version {version}, which dom0 does not know")
    if compressed:
        method = _COMPRESSION.get(compressed, str(compressed))
        raise Dom0Error(
            f"the save image was compressed by libvirt itself ({method})",
            "restore it with `virsh restore`; dom0 compresses its own images instead",
        )
    end = HEADER_SIZE + data_len
    if len(head) < end:
        raise Dom0Error("the save image is cut short inside the guest definition it carries")
    xml = head[HEADER_SIZE:end].split(b"\0", 1)[0].decode(errors="replace")
    name, uuid = _identity(xml)
    return ImageHeader(SaveFormat.QEMU, name, uuid, bool(was_running), end)


def _identity(xml: str) -> tuple[str, str]:
    """Name and UUID from the domain XML embedded in the header."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise Dom0Error(f"the guest definition in the save image is not valid XML: {exc}") from exc
    name = (root.findtext("name") or "").strip()
    raw = (root.findtext("uuid") or "").strip()
    try:
        uuid = str(uuidlib.UUID(raw)) if raw else ""
    except ValueError:
        uuid = ""
    return name, uuid


def identity_from_xml(xml: str) -> tuple[str, str]:
    """Name and canonical UUID of libvirt domain XML; libvirt's Xen driver embeds the same XML (saveimage.libxl)."""
    return _identity(xml)


class QemuStreamFixer:
    """Patches the partial magic at the start of a streamed save and checks libvirtd's trailing final header."""

    expects_trailer = True

    def __init__(self) -> None:
        self._head = bytearray()  # the first HEADER_SIZE bytes, held until they are all here
        self._started = False

    def feed(self, chunk: bytes) -> bytes:
        """Bytes to store: the header with its magic made whole, then the stream unchanged."""
        if self._started:
            return chunk
        self._head += chunk
        if len(self._head) < HEADER_SIZE:
            return b""
        if self._head[:16] != PARTIAL:
            raise Dom0Error(
                "libvirt's QEMU driver did not start the save stream with its header",
                "this libvirt writes save images in a way dom0 does not know; use `virsh save`",
            )
        self._head[:16] = MAGIC
        self._started = True
        out = bytes(self._head)
        self._head = bytearray(out[:HEADER_SIZE])  # kept to compare with the trailer
        return out

    def trailer(self, data: bytes) -> None:
        """The trailer must be this stream's own header with the final magic, or the image is not whole."""
        if not self._started:
            raise Dom0Error("the save stream ended before its header was complete")
        if data != bytes(self._head[:HEADER_SIZE]):
            raise Dom0Error(
                f"libvirt finished the save with an unexpected header ({len(data)} bytes)",
                "the image may not restore; save again, or use `virsh save`",
            )
