"""libvirt Xen (libxl) driver save headers: headers built to libvirt's layout, and the one the lab recorded."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from unitkit import DATA

from dom0.errors import Dom0Error
from dom0.model import SaveFormat
from dom0.saves.formats import libxl as libxlsave
from dom0.saves.formats import sniff

XEN = DATA / "xen"
UUID = "0f4e8f3c-3a1e-4b4c-9d39-2b1a7c6e5d40"
XML = f"""<domain type='xen'>
  <name>web1</name>
  <uuid>{UUID.upper()}</uuid>
  <memory unit='KiB'>131072</memory>
  <os><type arch='x86_64' machine='xenpv'>linux</type></os>
</domain>
"""


def build(xml: str = XML, *, version: int = 2, xml_len: int | None = None) -> bytes:
    """A header as libvirt's libxl driver writes it: 64 bytes, the XML with its NUL, then libxl's stream."""
    raw = xml.encode() + b"\0"
    length = len(raw) if xml_len is None else xml_len
    return struct.pack("<16s2I10I", libxlsave.MAGIC, version, length, *[0] * 10) + raw + b"LibxlFmt"


def test_header_names_the_guest_and_ends_where_libxls_stream_begins() -> None:
    head = build()
    h = sniff(head)
    assert (h.format, h.name, h.uuid, h.was_running) == (SaveFormat.LIBXL, "web1", UUID, None)
    assert head[h.header_size :] == b"LibxlFmt"


@pytest.mark.parametrize("version", [1, 2])
def test_both_header_versions_are_read(version: int) -> None:
    assert libxlsave.parse(build(version=version)).name == "web1"


def test_unknown_version_is_refused() -> None:
    with pytest.raises(Dom0Error, match="header version 3"):
        libxlsave.parse(build(version=3))


@pytest.mark.parametrize("cut", [16, 20, 63, 64, 100])
def test_truncated_header_is_refused_as_cut_short(cut: int) -> None:
    with pytest.raises(Dom0Error, match="cut short"):
        sniff(build()[:cut])


@pytest.mark.parametrize("xml_len", [0, 0xFFFFFFFF])
def test_impossible_xml_length_is_garbled(xml_len: int) -> None:
    with pytest.raises(Dom0Error, match="garbled header"):
        libxlsave.parse(build(xml_len=xml_len))


def test_damaged_xml_is_refused() -> None:
    with pytest.raises(Dom0Error, match="not valid XML"):
        libxlsave.parse(build("<domain><name>web1</nam"))


def test_not_confused_with_the_qemu_drivers_header() -> None:
    assert not libxlsave.matches(b"LibvirtQemudSave" + bytes(76))
    with pytest.raises(Dom0Error, match="not a save image of libvirt's Xen driver"):
        libxlsave.parse(b"LibvirtQemudSave" + bytes(76))


@pytest.mark.parametrize(
    ("fixture", "name", "uuid"),
    [
        ("libxl-pv.save.head", "dom0test-lv-pv", "56e1f3e1-0888-4686-842c-f14ce22a9bb1"),
        ("libxl-pvh.save.head", "dom0test-lv-pvh", "877428c0-cb9d-46ac-9d69-a40f9069a9be"),
    ],
)
def test_real_headers_libvirt_streamed_into_a_fifo_in_the_lab(fixture: str, name: str, uuid: str) -> None:
    # the first 4 KiB of what libvirt 9.0's libxl driver wrote into a FIFO (tests/xen/indom0, Xen 4.17)
    head = (XEN / fixture).read_bytes()
    h = sniff(head)
    assert (h.format, h.name, h.uuid, h.was_running) == (SaveFormat.LIBXL, name, uuid, None)
    assert struct.unpack_from("<I", head, 16) == (2,)  # libvirt built for libxl's stream v2
    assert head[h.header_size : h.header_size + 8] == b"LibxlFmt"


def test_real_header_cut_inside_its_xml_is_refused() -> None:
    with pytest.raises(Dom0Error, match="cut short inside the guest definition"):
        sniff((XEN / "libxl-pv.save.head").read_bytes()[:1000])


@given(st.binary(max_size=100), st.integers(min_value=16, max_value=300))
def test_any_damage_gives_dom0error_never_a_crash(noise: bytes, at: int) -> None:
    head = bytearray(build())
    head[at : at + len(noise)] = noise
    try:
        h = libxlsave.parse(bytes(head))
    except Dom0Error:
        return
    assert h.format is SaveFormat.LIBXL
