"""libvirt QEMU driver save headers: the streamed "partial" magic made whole, and headers built to libvirt's layout."""

from __future__ import annotations

import struct

import pytest

from dom0.errors import Dom0Error
from dom0.model import SaveFormat
from dom0.saves.formats import PassThrough, fixer_for, sniff
from dom0.saves.formats import qemu as qemusave

UUID = "6a1c2f3e-8b4d-4e5f-9a0b-1c2d3e4f5a6b"
XML = f"""<domain type='qemu'>
  <name>web1</name>
  <uuid>{UUID.upper()}</uuid>
  <memory unit='KiB'>262144</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
</domain>
"""
QEMU_STREAM = b"QEVM\x00\x00\x00\x03" + bytes(range(256)) * 4  # stands in for QEMU's migration stream


def header(
    xml: str = XML,
    *,
    magic: bytes = qemusave.MAGIC,
    version: int = 2,
    was_running: int = 1,
    compressed: int = 0,
    data_len: int | None = None,
) -> bytes:
    """A save image's start as libvirt's QEMU driver writes it: 92-byte header, XML with its NUL, then QEMU's stream."""
    raw = xml.encode() + b"\0"
    length = len(raw) if data_len is None else data_len
    fixed = struct.pack("<16s5I14I", magic, version, length, was_running, compressed, 0, *[0] * 14)
    assert len(fixed) == 92
    return fixed + raw + QEMU_STREAM


def feed_in_chunks(fixer: qemusave.QemuStreamFixer, data: bytes, sizes: list[int]) -> bytes:
    """Feed `data` in chunks of the given sizes (the last size repeats), as a FIFO might deliver it."""
    out = bytearray()
    pos = 0
    i = 0
    while pos < len(data):
        n = sizes[min(i, len(sizes) - 1)]
        out += fixer.feed(data[pos : pos + n])
        pos += n
        i += 1
    return bytes(out)


# -- the stream fixer ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sizes",
    [[1], [7], [91, 1, 5000], [16, 76, 3], [50, 50], [92], [100000], [3, 89, 1]],
    ids=lambda s: "-".join(map(str, s)),
)
def test_fixer_makes_the_streamed_image_whole_however_the_header_is_split(sizes: list[int]) -> None:
    streamed = header(magic=qemusave.PARTIAL)
    fixer = qemusave.QemuStreamFixer()
    stored = feed_in_chunks(fixer, streamed, sizes)
    # Exactly what `virsh save` leaves in a regular file: the final magic, everything else byte for byte.
    assert stored == header()
    assert stored[:16] == b"LibvirtQemudSave"
    assert sniff(stored).name == "web1"


def test_fixer_holds_back_a_header_until_it_is_complete() -> None:
    fixer = qemusave.QemuStreamFixer()
    streamed = header(magic=qemusave.PARTIAL)
    assert fixer.feed(streamed[:91]) == b""
    assert fixer.feed(streamed[91:92]) == header()[:92]
    assert fixer.feed(b"rest") == b"rest"


def test_fixer_leaves_a_later_partial_magic_alone() -> None:
    # Only the header's magic is patched: the same bytes inside the memory stream are guest data.
    fixer = qemusave.QemuStreamFixer()
    body = b"guest memory: " + qemusave.PARTIAL + b" more"
    stored = fixer.feed(header(magic=qemusave.PARTIAL)) + fixer.feed(body)
    assert stored.endswith(body)


def test_fixer_accepts_the_matching_trailer() -> None:
    fixer = qemusave.QemuStreamFixer()
    fixer.feed(header(magic=qemusave.PARTIAL))
    fixer.trailer(header()[:92])  # libvirtd's second open: the same header with the final magic


@pytest.mark.parametrize(
    "trailer",
    [
        pytest.param(header(magic=qemusave.PARTIAL)[:92], id="still-partial"),
        pytest.param(header(was_running=0)[:92], id="other-header"),
        pytest.param(header()[:91], id="short"),
        pytest.param(b"", id="empty"),
        pytest.param(header()[:93], id="long"),
    ],
)
def test_fixer_refuses_a_different_trailer(trailer: bytes) -> None:
    fixer = qemusave.QemuStreamFixer()
    fixer.feed(header(magic=qemusave.PARTIAL))
    with pytest.raises(Dom0Error, match="unexpected header") as err:
        fixer.trailer(trailer)
    assert err.value.hint


def test_fixer_refuses_a_stream_that_ended_before_its_header() -> None:
    fixer = qemusave.QemuStreamFixer()
    assert fixer.feed(header(magic=qemusave.PARTIAL)[:60]) == b""
    with pytest.raises(Dom0Error, match="ended before its header was complete"):
        fixer.trailer(header()[:92])


def test_fixer_refuses_a_stream_without_the_partial_magic() -> None:
    with pytest.raises(Dom0Error, match="did not start the save stream with its header"):
        qemusave.QemuStreamFixer().feed(b"\0" * 200)


def test_fixer_for_picks_the_qemu_fixer_and_passes_other_formats_through() -> None:
    assert isinstance(fixer_for(SaveFormat.QEMU), qemusave.QemuStreamFixer)
    assert fixer_for(SaveFormat.QEMU).expects_trailer
    for fmt in (SaveFormat.LIBXL, SaveFormat.XL):
        fixer = fixer_for(fmt)
        assert isinstance(fixer, PassThrough)
        assert not fixer.expects_trailer
        assert fixer.feed(b"LibvirtQemudPart") == b"LibvirtQemudPart"


# -- parse / sniff -----------------------------------------------------------------------------------------


def test_header_names_the_guest_and_ends_where_qemus_stream_begins() -> None:
    head = header()
    h = sniff(head)
    assert (h.format, h.name, h.uuid, h.was_running) == (SaveFormat.QEMU, "web1", UUID, True)
    assert head[h.header_size :] == QEMU_STREAM


def test_paused_guest_is_recorded_as_not_running() -> None:
    assert qemusave.parse(header(was_running=0)).was_running is False


@pytest.mark.parametrize("version", [1, 2])
def test_both_header_versions_are_read(version: int) -> None:
    assert qemusave.parse(header(version=version)).name == "web1"


def test_unknown_version_is_refused() -> None:
    with pytest.raises(Dom0Error, match="header version 7"):
        qemusave.parse(header(version=7))


def test_partial_image_is_refused_as_incomplete() -> None:
    with pytest.raises(Dom0Error, match="incomplete") as err:
        sniff(header(magic=qemusave.PARTIAL))
    assert "interrupted" in err.value.hint


@pytest.mark.parametrize(("code", "method"), [(1, "gzip"), (3, "xz"), (4, "lzop")])
def test_image_compressed_by_libvirt_is_refused_pointing_at_virsh(code: int, method: str) -> None:
    with pytest.raises(Dom0Error, match=f"compressed by libvirt itself \\({method}\\)") as err:
        sniff(header(compressed=code))
    assert "virsh restore" in err.value.hint


@pytest.mark.parametrize("cut", [16, 40, 91])
def test_image_cut_inside_the_fixed_header_is_refused(cut: int) -> None:
    with pytest.raises(Dom0Error, match="cut short inside its header"):
        sniff(header()[:cut])


@pytest.mark.parametrize("cut", [92, 93, 150])
def test_image_cut_inside_the_guest_definition_is_refused(cut: int) -> None:
    with pytest.raises(Dom0Error, match="cut short inside the guest definition"):
        sniff(header()[:cut])


def test_data_length_beyond_the_image_is_cut_short() -> None:
    with pytest.raises(Dom0Error, match="cut short"):
        sniff(header(data_len=1 << 30))


@pytest.mark.parametrize("xml", ["<domain><name>web1</name>", "not xml at all", ""])
def test_bad_xml_is_refused(xml: str) -> None:
    with pytest.raises(Dom0Error, match="guest definition in the save image is not valid XML"):
        sniff(header(xml))


def test_xml_without_uuid_or_with_a_bad_one_leaves_uuid_unknown() -> None:
    assert sniff(header("<domain><name>w</name></domain>")).uuid == ""
    h = sniff(header("<domain><name>w</name><uuid>nope</uuid></domain>"))
    assert (h.name, h.uuid) == ("w", "")


@pytest.mark.parametrize(
    "head",
    [b"", b"\0" * 200, b"LibvirtQemud", b"libvirt-xml", b"QEVM" + b"\0" * 100, b"LibvirtQemudsave" + b"\0" * 100],
    ids=["empty", "zeros", "short-magic", "short-libxl", "bare-qemu-stream", "wrong-case"],
)
def test_sniff_refuses_unknown_bytes(head: bytes) -> None:
    with pytest.raises(Dom0Error, match="not a save image dom0 knows") as err:
        sniff(head)
    assert "virsh save" in err.value.hint
