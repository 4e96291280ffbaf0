"""`dom0 host stop` / `dom0 host start` through the real command on libvirt's test driver."""

from __future__ import annotations

import json
from pathlib import Path

from unitkit import dom0

T = "test:///default"


def _config(tmp_path: Path, text: str = "") -> str:
    path = tmp_path / "host.toml"
    path.write_text(text)
    return str(path)


def test_host_stop_into_a_directory_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    r = dom0("-c", T, "host", "stop", "--config", _config(tmp_path), "-d", str(tmp_path / "file" / "save"))
    assert r.rc == 1
    assert "Traceback" not in r.err
    assert r.err.splitlines()[0].startswith(f"dom0: error: cannot create {tmp_path / 'file' / 'save'}")
    assert not (tmp_path / "file").is_dir()


def test_host_stop_shuts_down_what_the_driver_cannot_save(tmp_path: Path) -> None:
    r = dom0("-c", T, "host", "stop", "--config", _config(tmp_path), "-d", str(tmp_path / "save"), "--json")
    assert (r.rc, r.err) == (0, "")
    doc = json.loads(r.out)
    assert [(g["name"], g["action"], g["result"]) for g in doc["guests"]] == [("test", "shutdown", "shut down")]
    assert doc["guests"][0]["detail"].startswith("cannot be saved: test:///default cannot save guests")


def test_host_dry_runs_say_what_they_would_do_and_change_nothing(tmp_path: Path) -> None:
    config, images = _config(tmp_path), tmp_path / "save"
    r = dom0("-c", T, "host", "stop", "--config", config, "-d", str(images), "--dry-run")
    assert (r.rc, r.err) == (0, "")
    assert r.out.splitlines()[0] == f"host stop would do (images into {images}):"
    assert r.out.splitlines()[2].split()[:2] == ["test", "shutdown"]
    r = dom0("-c", T, "host", "start", "--config", config, "-d", str(images), "--dry-run")
    assert (r.rc, r.err) == (0, "")
    assert r.out.startswith(f"host start would do (images from {images})")
    assert not images.exists()
