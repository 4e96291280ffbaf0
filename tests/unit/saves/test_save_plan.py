"""What a save checks before the hypervisor is asked: the names its image and manifest will take."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dom0.errors import Dom0Error
from dom0.saves.stream import existing_images


def test_earlier_images_and_manifest_are_found(tmp_path: Path) -> None:
    (tmp_path / "web.save.zst").write_bytes(b"image")
    (tmp_path / "web.manifest.json").write_text("{}")
    (tmp_path / "web2.save.zst").write_bytes(b"another guest's")
    assert sorted(p.name for p in existing_images(tmp_path, "web")) == ["web.manifest.json", "web.save.zst"]


@pytest.mark.parametrize("taken", ["web.save.zst", "web.save.lz4", "web.manifest.json"])
def test_a_directory_where_the_image_goes_is_refused_before_the_guest_stops(tmp_path: Path, taken: str) -> None:
    # with --replace (host stop's way) the new image was renamed over it only after the guest had stopped: the
    # rename failed, the work directory with the complete image went, and the guest was gone with no image
    (tmp_path / taken).mkdir()
    with pytest.raises(Dom0Error) as err:
        existing_images(tmp_path, "web")
    assert err.value.message == f"{tmp_path / taken} is a directory: web's image would have to replace it"
    assert err.value.hint


def test_a_fifo_where_the_manifest_goes_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "web.manifest.json")
    with pytest.raises(Dom0Error, match="is a FIFO"):
        existing_images(tmp_path, "web")
