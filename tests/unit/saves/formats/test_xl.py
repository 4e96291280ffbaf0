"""`xl save` headers: the real one Xen 4.17 wrote in the lab, and headers built to xl's layout."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from unitkit import DATA

from dom0.errors import Dom0Error
from dom0.model import SaveFormat
from dom0.saves.formats import sniff
from dom0.saves.formats import xl as xlsave

XEN = DATA / "xen"
DOMU_UUID = "5777904e-85da-433c-bcaa-70f056ead55d"


def real_head() -> bytes:
    """The first 4 KiB of `xl save domu` on Xen 4.17 (PV guest, 128 MiB), recorded in the lab."""
    return (XEN / "domu.save.head").read_bytes()


def build(
    config: dict[str, object] | bytes | None,
    *,
    flags: int = xlsave.FLAG_JSON | xlsave.FLAG_STREAM_V2,
    order: str = "<",
    stream: bytes = b"LibxlFmt",
) -> bytes:
    """A header as xl_saverestore.c lays it out, followed by the start of a stream."""
    if config is None:
        optional = struct.pack(order + "I", 0)
    else:
        raw = config if isinstance(config, bytes) else json.dumps(config, indent=4).encode()
        optional = struct.pack(order + "I", len(raw) + 1) + raw + b"\0"
    fixed = struct.pack(order + "4I", xlsave.BYTEORDER, flags, 0, len(optional))
    return xlsave.MAGIC + fixed + optional + stream


def test_real_header_names_the_guest_and_ends_where_libxls_stream_begins() -> None:
    head = real_head()
    h = sniff(head)
    assert (h.format, h.name, h.uuid, h.was_running) == (SaveFormat.XL, "domu", DOMU_UUID, None)
    # xl printed "new xl format (info 0x3/0x0/871)": 48 fixed bytes + 871 optional bytes, then libxl's "LibxlFmt"
    assert h.header_size == 48 + 871
    assert head[h.header_size : h.header_size + 8] == b"LibxlFmt"


def test_real_header_xl_streamed_into_a_fifo_in_the_lab() -> None:
    # the first 4 KiB of what `xl save` of Xen 4.17 wrote into a FIFO for a PVH guest (tests/xen/indom0)
    head = (XEN / "xl-pvh-fifo.save.head").read_bytes()
    h = sniff(head)
    assert (h.name, h.uuid) == ("dom0test-xl-pvh", "fd8aef37-3367-447e-8b8e-a6f173b8e6b9")
    assert xlsave.saved_config(head)["c_info"]["type"] == "pvh"
    assert head[h.header_size : h.header_size + 8] == b"LibxlFmt"


def test_real_header_config_is_libxls_json() -> None:
    config = xlsave.saved_config(real_head())
    assert config["c_info"]["type"] == "pv"
    assert config["b_info"]["max_memkb"] == 131072


def test_built_header_round_trips_name_uuid_and_size() -> None:
    head = build({"c_info": {"name": "web1", "uuid": "ABCDEF01-2345-6789-ABCD-EF0123456789"}})
    h = xlsave.parse(head)
    assert (h.name, h.uuid) == ("web1", "abcdef01-2345-6789-abcd-ef0123456789")
    assert head[h.header_size :] == b"LibxlFmt"


def test_big_endian_host_header_is_read_too() -> None:
    head = build({"c_info": {"name": "be", "uuid": DOMU_UUID}}, order=">")
    assert (xlsave.parse(head).name, xlsave.parse(head).uuid) == ("be", DOMU_UUID)


def test_config_without_name_or_uuid_gives_empty_fields() -> None:
    h = xlsave.parse(build({"c_info": {"uuid": "not-a-uuid"}}))
    assert (h.name, h.uuid) == ("", "")


@pytest.mark.parametrize("cut", [32, 40, 47, 48, 51, 60, 400, 918])
def test_truncated_real_header_is_refused_as_cut_short(cut: int) -> None:
    with pytest.raises(Dom0Error, match="cut short"):
        sniff(real_head()[:cut])


def test_a_few_bytes_of_magic_are_not_an_image() -> None:
    with pytest.raises(Dom0Error, match="not a save image"):
        sniff(real_head()[:10])


def test_unknown_mandatory_flag_is_refused() -> None:
    with pytest.raises(Dom0Error, match="mandatory flags 0x7"):
        xlsave.parse(build({"c_info": {"name": "x"}}, flags=7))


def test_garbled_byte_order_mark_is_refused() -> None:
    head = bytearray(real_head())
    head[32:36] = b"\xff\xff\xff\xff"
    with pytest.raises(Dom0Error, match="garbled header"):
        xlsave.parse(bytes(head))


def test_huge_optional_length_is_garbled_not_a_memory_error() -> None:
    head = bytearray(real_head())
    head[44:48] = struct.pack("<I", 0xFFFFFFF0)
    with pytest.raises(Dom0Error, match="garbled header"):
        xlsave.parse(bytes(head))


def test_config_length_beyond_the_optional_data_is_garbled() -> None:
    head = bytearray(real_head())
    head[48:52] = struct.pack("<I", 5000)
    with pytest.raises(Dom0Error, match="garbled header"):
        xlsave.parse(bytes(head))


def test_damaged_json_is_refused_with_the_parse_error() -> None:
    head = bytearray(real_head())
    head[52:53] = b"["  # the config's opening brace
    with pytest.raises(Dom0Error, match="cannot read the guest config"):
        xlsave.parse(bytes(head))


def test_save_without_config_is_refused() -> None:
    with pytest.raises(Dom0Error, match="carries no guest config"):
        xlsave.parse(build(None, flags=xlsave.FLAG_STREAM_V2))


def test_old_xl_cfg_text_config_is_refused_clearly() -> None:
    with pytest.raises(Dom0Error, match=r"xl\.cfg text"):
        xlsave.parse(build(b'name = "old"\n', flags=xlsave.FLAG_STREAM_V2))


def test_other_files_are_not_xl_images() -> None:
    assert not xlsave.matches(b"libvirt-xml\n \0 \r" + bytes(48))
    with pytest.raises(Dom0Error, match="xl save"):
        xlsave.saved_config(b"<domstatus>libvirt</domstatus>")


@given(st.binary(max_size=200), st.integers(min_value=32, max_value=1000))
def test_any_damage_gives_dom0error_never_a_crash(noise: bytes, at: int) -> None:
    head = bytearray(real_head())
    head[at : at + len(noise)] = noise
    try:
        h = xlsave.parse(bytes(head))
    except Dom0Error:
        return
    assert h.format is SaveFormat.XL


# --- XlHypervisor.restore: a regular file's header is read first, a FIFO is left whole for xl ------------------

LIST_HEAD = "Name                                        ID   Mem VCPUs\tState\tTime(s)\n"
DOM0_ROW = "Domain-0                                     0  1024     1     r-----      49.3\n"


class FakeXl:
    """`xl` as the backend runs it: list, list -l and restore, which reads the whole image like xl does."""

    def __init__(self, restored_name: str, others: tuple[str, ...] = ()) -> None:
        self.domains: dict[int, str] = {0: "Domain-0"}
        self.restored_name = restored_name
        self.others = others  # guests other restores bring up while this one runs
        self.read: bytes | None = None
        self.calls: list[list[str]] = []

    def __call__(self, cmd: list[str], timeout: float | None = None) -> str:
        self.calls.append(cmd)
        args = cmd[1:]
        if args[:2] == ["list", "-l"]:
            uuids = {self.restored_name: DOMU_UUID}
            return json.dumps(
                [
                    {"domid": i, "config": {"c_info": {"name": n, "uuid": uuids.get(n, "")}}}
                    for i, n in self.domains.items()
                ]
            )
        if args == ["list"]:
            rows = [f"{n:<40}{i:>6}   128     1     -b----       0.5\n" for i, n in self.domains.items() if i]
            return LIST_HEAD + DOM0_ROW + "".join(rows)
        if args[0] == "restore":
            with open(args[-1], "rb") as f:
                self.read = f.read()
            for name in (self.restored_name, *self.others):
                self.domains[max(self.domains) + 1] = name
            return ""
        raise AssertionError(f"unexpected xl call {cmd}")


def _hv(monkeypatch: pytest.MonkeyPatch, fake: FakeXl) -> object:
    from dom0 import run
    from dom0.hypervisor.xl.backend import XlHypervisor

    monkeypatch.setattr(run, "output", fake)
    return XlHypervisor()


def test_restore_from_a_regular_file_names_the_guest_from_its_header(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dom0.hypervisor.xl.backend import XlHypervisor

    image = tmp_path / "domu.save"
    image.write_bytes(real_head())
    fake = FakeXl("domu", others=("someone-else",))
    hv = _hv(monkeypatch, fake)
    assert isinstance(hv, XlHypervisor)
    g = hv.restore(str(image), paused=True)
    assert g.name == "domu"
    assert ["xl", "restore", "-p", str(image)] in fake.calls


def test_restore_refuses_a_regular_file_whose_guest_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dom0.errors import GuestStateError
    from dom0.hypervisor.xl.backend import XlHypervisor

    image = tmp_path / "domu.save"
    image.write_bytes(real_head())
    fake = FakeXl("domu")
    fake.domains[3] = "domu"
    hv = _hv(monkeypatch, fake)
    assert isinstance(hv, XlHypervisor)
    with pytest.raises(GuestStateError, match="already runs"):
        hv.restore(str(image))
    assert not [c for c in fake.calls if "restore" in c]


def _restore_through_fifo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: FakeXl, expect: str = ""
) -> tuple[object, bytes]:
    import os
    import threading

    from dom0.hypervisor.xl.backend import XlHypervisor

    fifo = tmp_path / "stream"
    os.mkfifo(fifo, 0o600)
    image = real_head() + b"rest of libxl's stream" * 1000

    def writer() -> None:
        with open(fifo, "wb") as f:
            f.write(image)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    hv = _hv(monkeypatch, fake)
    assert isinstance(hv, XlHypervisor)
    try:
        result: object = hv.restore(str(fifo), expect=expect)
    except Dom0Error as exc:
        result = exc
    t.join(5)
    return result, image


def test_restore_from_a_fifo_leaves_the_whole_stream_to_xl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeXl("domu")
    g, image = _restore_through_fifo(monkeypatch, tmp_path, fake)
    assert fake.read == image  # nothing of the stream was eaten before xl read it
    assert getattr(g, "name", None) == "domu"


def test_restore_from_a_fifo_tells_its_guest_from_others_by_the_expected_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = FakeXl("domu", others=("other",))
    g, _ = _restore_through_fifo(monkeypatch, tmp_path, fake, expect="domu")
    assert getattr(g, "name", None) == "domu"


def test_restore_from_a_fifo_with_several_new_guests_and_no_name_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = FakeXl("domu", others=("other",))
    err, _ = _restore_through_fifo(monkeypatch, tmp_path, fake)
    assert isinstance(err, Dom0Error)
    assert "cannot tell which guest" in err.message
