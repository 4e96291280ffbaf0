"""`dom0 import` onto storage that held data before: a new LV keeps whatever its extents held (lvcreate wipes only
its first 4 KiB), so the imported disk must read as the export's bytes there too, zeros included."""

from __future__ import annotations

from pathlib import Path

from exportkit import DISK, make_export

from dom0.clone.transfer import ExportManifest, _write_disk
from dom0.model import no_progress


def test_an_import_onto_a_used_lv_leaves_nothing_of_what_was_there(tmp_path: Path) -> None:
    export = make_export(tmp_path)
    disk = ExportManifest.read(export).disks[0]
    # an LV whose extents an old guest used (a plain file stands in for the device: the bytes are what matters)
    lv = tmp_path / "reused-lv"
    lv.write_bytes(b"\xaa" * len(DISK))
    _write_disk(export, lv, disk, no_progress, block=True)
    assert lv.read_bytes() == DISK  # the export's zeros are zeros here, not the old guest's data


def test_an_import_into_a_new_file_stays_sparse(tmp_path: Path) -> None:
    export = make_export(tmp_path)
    disk = ExportManifest.read(export).disks[0]
    new = tmp_path / "new.img"
    with new.open("wb") as f:
        f.truncate(len(DISK))
    _write_disk(export, new, disk, no_progress, block=False)
    assert new.read_bytes() == DISK
    assert new.stat().st_blocks * 512 < len(DISK) - 100_000  # the run of zeros in the middle is a hole
