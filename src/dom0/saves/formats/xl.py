"""`xl save` images: xl's header with the domain config as JSON, then libxl's stream.

Layout (Xen's tools/xl/xl_saverestore.c and xl_vmcontrol.c):
- magic, 32 bytes: "Xen saved domain, xl format\\n \\0 \\r"
- byteorder u32 (0x01020304 in the saving host's order), mandatory_flags u32, optional_flags u32,
  optional_data_len u32
- optional data: u32 config length (the trailing NUL included), then the config: libxl_domain_config as JSON
  when mandatory flag JSON (1) is set, the old xl.cfg text otherwise
- libxl's own stream ("LibxlFmt"), version 2 when mandatory flag STREAMv2 (2) is set

xl writes the header once, in order, and never seeks back, so a FIFO carries the whole image.
"""

from __future__ import annotations

import json
import struct
import uuid as uuidlib
from typing import Any

from dom0.errors import Dom0Error
from dom0.model import SaveFormat
from dom0.saves.formats.header import ImageHeader

MAGIC = b"Xen saved domain, xl format\n \0 \r"
BYTEORDER = 0x01020304
FLAG_JSON = 1  # the config in the optional data is libxl JSON, not xl.cfg text
FLAG_STREAM_V2 = 2  # libxl's stream after the header is version 2 (Xen 4.6 and later)
KNOWN_FLAGS = FLAG_JSON | FLAG_STREAM_V2
_FIELDS = struct.Struct("4I")  # byteorder, mandatory_flags, optional_flags, optional_data_len
FIXED_SIZE = len(MAGIC) + _FIELDS.size  # 48
# Sanity bound for a config: a huge optional_data_len is a garbled header, not a guest with 64 MiB of config.
MAX_OPTIONAL = 16 << 20

_HINT = "the file is damaged or was not written by `xl save`"


def matches(head: bytes) -> bool:
    """Whether `head` starts with xl's save header."""
    return head.startswith(MAGIC)


def _fields(head: bytes) -> tuple[str, int, int]:
    """Byte order ('<' or '>'), mandatory flags and optional data length from the fixed part of the header."""
    if not matches(head):
        raise Dom0Error("not a file written by `xl save`", "xl save files begin with 'Xen saved domain, xl format'")
    if len(head) < FIXED_SIZE:
        raise Dom0Error(f"the xl save image is cut short inside its header ({len(head)} of {FIXED_SIZE} bytes)")
    for order in ("<", ">"):
        byteorder, mandatory, _optional, optlen = struct.unpack_from(order + _FIELDS.format, head, len(MAGIC))
        if byteorder == BYTEORDER:
            break
    else:
        raise Dom0Error(f"the xl save image has a garbled header (byte-order mark {head[32:36].hex()})", _HINT)
    if mandatory & ~KNOWN_FLAGS:
        raise Dom0Error(
            f"the xl save image needs features this dom0 does not know (mandatory flags {mandatory:#x})",
            "restore it with the `xl restore` of the Xen that wrote it",
        )
    if optlen > MAX_OPTIONAL:
        raise Dom0Error(f"the xl save image has a garbled header (optional data of {optlen} bytes)", _HINT)
    return order, mandatory, optlen


def header_size(head: bytes) -> int:
    """Bytes of xl's header (config included) before libxl's stream begins."""
    return FIXED_SIZE + _fields(head)[2]


def saved_config(head: bytes) -> dict[str, Any]:
    """The libxl domain config (JSON) that `xl save` stored in its header; Dom0Error when it is not there."""
    order, mandatory, optlen = _fields(head)
    end = FIXED_SIZE + optlen
    if len(head) < end:
        raise Dom0Error(
            f"the xl save image is cut short inside the guest config it carries ({len(head)} of {end} bytes)"
        )
    (length,) = struct.unpack_from(order + "I", head, FIXED_SIZE) if optlen >= 4 else (0,)
    if not length:
        raise Dom0Error("the xl save image carries no guest config", "restore it with `xl restore CONFIG FILE`")
    if length > optlen - 4:
        raise Dom0Error(f"the xl save image has a garbled header (a {length}-byte config in {optlen - 4})", _HINT)
    if not mandatory & FLAG_JSON:
        raise Dom0Error(
            "this xl save image carries its config as xl.cfg text (older xl), which dom0 does not read",
            "restore it with `xl restore`",
        )
    raw = head[FIXED_SIZE + 4 : FIXED_SIZE + 4 + length].rstrip(b"\0")
    try:
        value = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Dom0Error(f"cannot read the guest config in the xl save image: {exc}", _HINT) from exc
    if not isinstance(value, dict):
        raise Dom0Error("the guest config in the xl save image is not a JSON object", _HINT)
    return value


def parse(head: bytes) -> ImageHeader:
    """The guest recorded in an xl save header (xl does not record whether it was running: was_running None)."""
    config = saved_config(head)
    c_info = config.get("c_info")
    c_info = c_info if isinstance(c_info, dict) else {}
    name = c_info.get("name")
    raw_uuid = c_info.get("uuid")
    try:
        uuid = str(uuidlib.UUID(raw_uuid)) if isinstance(raw_uuid, str) and raw_uuid else ""
    except ValueError:
        uuid = ""
    return ImageHeader(SaveFormat.XL, name if isinstance(name, str) else "", uuid, None, header_size(head))
