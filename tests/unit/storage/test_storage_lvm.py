"""storage.lvm without device-mapper: lvm2's JSON reports parsed (recorded from lvm2 2.03.16), the commands it
would run checked against a fake lvm2, and the block copy run on plain files."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from dom0 import run
from dom0.errors import CommandError, Dom0Error
from dom0.storage import Created, CreatedKind, Volume, VolumeKind, lvm, remove_created

MiB = 1 << 20
DATA = Path(__file__).parent / "data"
ROOT_UUID = "AbCdEf-1234-5678-9abc-def0-1234-567890"


def _lv_row(**over: str) -> dict[str, str]:
    row = {
        "lv_name": "root",
        "vg_name": "vg0",
        "lv_uuid": ROOT_UUID,
        "lv_size": str(8 << 30),
        "lv_attr": "-wi-ao----",
        "lv_path": "/dev/vg0/root",
        "origin": "",
        "snap_percent": "",
        "data_percent": "",
        "segtype": "linear",
        "pool_lv": "",
    }
    row.update(over)
    return row


def _report(key: str, rows: list[dict[str, str]]) -> str:
    return json.dumps({"report": [{key: rows}]})


class FakeLvm:
    """Answers lvs/vgs/lvcreate/lvremove like lvm2 does, from an in-memory VG, and records every command."""

    def __init__(self, free_extents: int = 100, extent: int = 4 * MiB) -> None:
        self.lvs: list[dict[str, str]] = [_lv_row()]
        self.free_extents, self.extent = free_extents, extent
        self.commands: list[list[str]] = []
        self.counter = 0

    def __call__(
        self, cmd: Sequence[str], *, check: bool = True, input: bytes | None = None, timeout: float | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        cmd = list(cmd)
        self.commands.append(cmd)
        out, err, rc = self.answer(cmd)
        if check and rc != 0:
            raise CommandError(f"{cmd[0]} failed: {err}", stderr=err, returncode=rc)
        return subprocess.CompletedProcess(cmd, rc, out.encode(), err.encode())

    def answer(self, cmd: list[str]) -> tuple[str, str, int]:
        if cmd[0] == "vgs":
            row = {
                "vg_name": "vg0",
                "vg_uuid": "x",
                "vg_size": str(200 * self.extent),
                "vg_free": str(self.free_extents * self.extent),
                "vg_extent_size": str(self.extent),
                "vg_free_count": str(self.free_extents),
            }
            return _report("vg", [row] if cmd[-1] == "vg0" else []), "", 0 if cmd[-1] == "vg0" else 5
        if cmd[0] == "lvs":
            if "--select" in cmd:
                uuid = cmd[cmd.index("--select") + 1].removeprefix("lv_uuid=")
                return _report("lv", [r for r in self.lvs if r["lv_uuid"] == uuid]), "", 0
            vg, _, name = cmd[-1].removeprefix("/dev/").partition("/")
            rows = [r for r in self.lvs if (r["vg_name"], r["lv_name"]) == (vg, name)]
            return (
                _report("lv", rows),
                "" if rows else f'  Failed to find logical volume "{vg}/{name}"',
                (0 if rows else 5),
            )
        if cmd[0] == "lvcreate":
            name = cmd[cmd.index("--name") + 1]
            self.counter += 1
            attr = "swi-a-s---" if "--snapshot" in cmd else "-wi-a-----"
            self.lvs.append(
                _lv_row(lv_name=name, lv_uuid=f"NEW{self.counter:03d}", lv_attr=attr, lv_path=f"/dev/vg0/{name}")
            )
            return "", "", 0
        if cmd[0] == "lvremove":
            uuid = cmd[cmd.index("--select") + 1].removeprefix("lv_uuid=")
            vg, _, name = cmd[-1].partition("/")
            self.lvs = [
                r for r in self.lvs if not (r["lv_uuid"] == uuid and (r["vg_name"], r["lv_name"]) == (vg, name))
            ]
            return "", "", 0
        raise AssertionError(f"unexpected command {cmd}")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeLvm:
    lvm_fake = FakeLvm()
    monkeypatch.setattr(run, "run", lvm_fake)
    return lvm_fake


ORIGIN = Volume(Path("/dev/vg0/root"), VolumeKind.LV, 8 << 30, "raw", vg="vg0", lv="root", lv_uuid=ROOT_UUID)


def test_recorded_lvs_report_is_parsed() -> None:
    rows = lvm.parse_report((DATA / "lvs-origin-and-snapshot.json").read_text(), "lv")
    origin, snap = (lvm.parse_lv(r) for r in rows)
    assert (origin.vg, origin.name, origin.size_bytes, origin.path) == ("st0rec", "root", 64 * MiB, "/dev/st0rec/root")
    assert origin.uuid == ROOT_UUID
    assert not origin.is_snapshot
    assert snap.is_snapshot
    assert snap.origin == "root"
    assert snap.size_bytes == 8 * MiB
    assert snap.snap_percent is None
    assert not snap.is_invalid


def test_recorded_vgs_report_is_parsed() -> None:
    vg = lvm.parse_vg(lvm.parse_report((DATA / "vgs.json").read_text(), "vg")[0])
    assert (vg.name, vg.extent_bytes, vg.free_extents, vg.free_bytes) == ("st0rec", 4 * MiB, 31, 31 * 4 * MiB)


def test_sizes_with_unit_suffix_and_percentages() -> None:
    lv = lvm.parse_lv(_lv_row(lv_size="67108864B", snap_percent="37.50", lv_attr="swi-a-s---"))
    assert lv.size_bytes == 64 * MiB
    assert lv.snap_percent == 37.5


@pytest.mark.parametrize(
    ("attr", "percent", "segtype", "overflowed"),
    [
        ("swi-a-s---", "12.00", "linear", False),
        ("swi-I-s---", "", "linear", True),  # lvs(8): state 'I' = invalid snapshot
        ("swi-S-s---", "", "linear", True),  # 'S' = invalid suspended snapshot
        ("swi-a-s---", "100.00", "linear", True),
        ("Vwi-a-tz--", "100.00", "thin", False),  # a fully provisioned thin snapshot is fine
    ],
)
def test_snapshot_overflowed(fake: FakeLvm, attr: str, percent: str, segtype: str, overflowed: bool) -> None:
    fake.lvs.append(_lv_row(lv_name="snap", lv_uuid="SNAP", lv_attr=attr, snap_percent=percent, segtype=segtype))
    created = Created(CreatedKind.LV, Path("/dev/vg0/snap"), lv_uuid="SNAP", vg="vg0", lv="snap")
    assert lvm.snapshot_overflowed(created) is overflowed


def test_a_vanished_snapshot_counts_as_overflowed(fake: FakeLvm) -> None:
    created = Created(CreatedKind.LV, Path("/dev/vg0/snap"), lv_uuid="GONE", vg="vg0", lv="snap")
    assert lvm.snapshot_overflowed(created)


def test_snapshot_size_rules() -> None:
    assert lvm.snapshot_bytes(1 << 30, 100 << 30) == 256 * MiB  # small origin: the minimum
    assert lvm.snapshot_bytes(100 << 30, 100 << 30) == 15 << 30  # 15 % of a large origin
    assert lvm.snapshot_bytes(100 << 30, 1 << 30) == 1 << 30  # capped by free space
    assert lvm.snapshot_bytes(64 * MiB, 1 << 30) <= 64 * MiB + 5 * MiB  # never more than the origin can need
    with pytest.raises(Dom0Error, match="100 MiB free") as err:
        lvm.snapshot_bytes(10 << 30, 100 * MiB)
    assert "vgextend" in err.value.hint


def test_snapshot_size_reads_the_vg(fake: FakeLvm) -> None:
    assert lvm.snapshot_size(ORIGIN) == 400 * MiB  # 15 % of 8 GiB, capped by the 100 free 4 MiB extents
    fake.free_extents = 20
    with pytest.raises(Dom0Error, match="80 MiB free"):
        lvm.snapshot_size(ORIGIN)


def test_snapshot_creates_and_records_the_uuid(fake: FakeLvm) -> None:
    created = lvm.snapshot(ORIGIN, "root-clone-snap", 256 * MiB)
    assert fake.commands[-2][:1] == ["lvcreate"]
    assert fake.commands[-2][-4:] == ["--snapshot", "--size", f"{256 * MiB}b", "vg0/root"]
    assert (created.kind, created.vg, created.lv, created.lv_uuid) == (
        CreatedKind.LV,
        "vg0",
        "root-clone-snap",
        "NEW001",
    )
    assert created.path == Path("/dev/vg0/root-clone-snap")


def test_snapshot_refused_when_extents_are_short(fake: FakeLvm) -> None:
    fake.free_extents = 10
    with pytest.raises(Dom0Error, match="10 free extents") as err:
        lvm.snapshot(ORIGIN, "snap", 256 * MiB)
    assert "vgextend" in err.value.hint
    assert not any(c[0] == "lvcreate" for c in fake.commands)


def test_thin_origin_gets_a_thin_snapshot(fake: FakeLvm) -> None:
    thin = Volume(ORIGIN.path, VolumeKind.LV, ORIGIN.size_bytes, "raw", vg="vg0", lv="root", segtype="thin")
    lvm.snapshot(thin, "snap", 0)
    cmd = next(c for c in fake.commands if c[0] == "lvcreate")
    assert "--size" not in cmd
    assert cmd[-3:] == ["--setactivationskip", "n", "vg0/root"]


def test_existing_names_are_refused(fake: FakeLvm) -> None:
    with pytest.raises(Dom0Error, match="already exists"):
        lvm.create_lv("vg0", "root", 1 << 30)
    with pytest.raises(Dom0Error, match="already exists"):
        lvm.snapshot(ORIGIN, "root", 256 * MiB)
    assert not any(c[0] == "lvcreate" for c in fake.commands)


def test_names_that_look_like_options_are_refused(fake: FakeLvm) -> None:
    with pytest.raises(Dom0Error, match="not a valid logical volume name"):
        lvm.create_lv("vg0", "--force", 1 << 30)
    assert fake.commands == []


def test_create_lv_checks_free_space_then_creates(fake: FakeLvm) -> None:
    with pytest.raises(Dom0Error, match="needs 1000"):
        lvm.create_lv("vg0", "big", 1000 * 4 * MiB)
    created = lvm.create_lv("vg0", "clone", 8 * 4 * MiB + 1)  # rounds up to 9 extents: fits in 100
    assert created.lv_uuid == "NEW001"
    cmd = next(c for c in fake.commands if c[0] == "lvcreate")
    # whole sectors: real lvcreate rejects a byte size that is not a multiple of 512
    assert cmd[-3:] == ["--size", f"{8 * 4 * MiB + 512}b", "vg0"]


def test_remove_only_by_uuid(fake: FakeLvm) -> None:
    created = lvm.create_lv("vg0", "clone", 4 * MiB)
    # Someone removes our LV and makes another one with the same name: it must survive our rollback.
    fake.lvs = [r for r in fake.lvs if r["lv_name"] != "clone"]
    fake.lvs.append(_lv_row(lv_name="clone", lv_uuid="THEIRS", lv_path="/dev/vg0/clone"))
    remove_created(created)
    assert any(r["lv_uuid"] == "THEIRS" for r in fake.lvs)
    assert not any(c[0] == "lvremove" for c in fake.commands)


def test_remove_passes_name_and_uuid(fake: FakeLvm) -> None:
    created = lvm.create_lv("vg0", "clone", 4 * MiB)
    remove_created(created)
    assert [r["lv_name"] for r in fake.lvs] == ["root"]
    cmd = next(c for c in fake.commands if c[0] == "lvremove")
    assert cmd == ["lvremove", "--yes", "--select", f"lv_uuid={created.lv_uuid}", "vg0/clone"]
    remove_created(created)  # twice: already gone is fine


def test_remove_without_a_recorded_uuid_is_refused(fake: FakeLvm) -> None:
    with pytest.raises(Dom0Error, match="no UUID recorded"):
        remove_created(Created(CreatedKind.LV, Path("/dev/vg0/root"), vg="vg0", lv="root"))
    assert [r["lv_name"] for r in fake.lvs] == ["root"]


def test_missing_vg_is_a_clear_error(fake: FakeLvm) -> None:
    with pytest.raises(Dom0Error, match="cannot read volume group nope"):
        lvm.create_lv("nope", "clone", 4 * MiB)


def _garbage(path: Path, size: int) -> None:
    path.write_bytes(b"\xee" * size)


def test_copy_to_lv_overwrites_old_data_with_the_source_zeros(tmp_path: Path) -> None:
    src, dst = tmp_path / "snap", tmp_path / "lv"
    with open(src, "wb") as fh:
        fh.truncate(8 * MiB)
        fh.seek(3 * MiB)
        fh.write(b"data" * 1000)
    _garbage(dst, 9 * MiB)  # an LV is never empty: old data must not shine through the holes
    seen: list[int] = []
    lvm.copy_to_lv(src, dst, 8 * MiB, seen.append)
    copied = dst.read_bytes()
    assert copied[: 8 * MiB] == src.read_bytes()
    assert copied[8 * MiB :] == b"\xee" * MiB  # beyond the copied size: untouched
    assert seen[-1] == 8 * MiB


def test_copy_to_lv_skips_zeros_only_when_told_the_target_reads_zero(tmp_path: Path) -> None:
    src, dst = tmp_path / "snap", tmp_path / "thin"
    with open(src, "wb") as fh:
        fh.truncate(4 * MiB)
        fh.seek(MiB)
        fh.write(os.urandom(MiB))
    _garbage(dst, 4 * MiB)  # stands in for a target whose untouched blocks we can see
    lvm.copy_to_lv(src, dst, 4 * MiB, dst_reads_zero=True)
    got = dst.read_bytes()
    assert got[MiB : 2 * MiB] == src.read_bytes()[MiB : 2 * MiB]
    assert got[:MiB] == b"\xee" * MiB  # not written: the caller promised it reads as zeros


def test_copy_to_lv_refuses_a_small_target(tmp_path: Path) -> None:
    src, dst = tmp_path / "snap", tmp_path / "lv"
    with open(src, "wb") as fh:
        fh.truncate(8 * MiB)
    _garbage(dst, MiB)
    with pytest.raises(Dom0Error, match="holds 1048576 bytes"):
        lvm.copy_to_lv(src, dst, 8 * MiB)
    assert dst.read_bytes() == b"\xee" * MiB
