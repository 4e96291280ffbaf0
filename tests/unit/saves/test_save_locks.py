"""save, restore and host stop with a guest another dom0 run holds: named guests refuse at once naming that run
(or wait with --wait-lock), host-wide runs act on the others and report it as skipped.

The other run is a separate process holding the guest's lock (locks of one process nest rather than refuse). The
test driver cannot save, so the save --all and --wait-lock tests run `dom0 save` in this process with the
hypervisor's part of a save replaced by a stand-in that writes a small image."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import guestnode
import pytest
from unitkit import dom0

from dom0.cli.main import main
from dom0.hypervisor import Hypervisor
from dom0.model import Guest, Progress, SaveFormat, no_progress
from dom0.saves import manifest, stream
from dom0.saves.codec import Compression
from dom0.saves.manifest import Manifest
from dom0.saves.stream import SaveOptions, SavePlan

WEB = "5e1f0000-0000-4000-8000-000000000000"  # guestnode's UUIDs, in file order
DB = "5e1f0000-0000-4000-8000-000000000001"
WORDS = re.compile(r"being saved by dom0 pid (\d+) since \d\d:\d\d:\d\d")

HOLDER = """
import sys, time
from dom0.locks import LockKey, hold
held = hold([LockKey(sys.argv[1], sys.argv[2])], "save")
print("held", flush=True)
time.sleep(float(sys.argv[3]))
"""


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "locks"
    monkeypatch.setenv("DOM0_LOCK_DIR", str(directory))  # this process and the runs it starts meet there
    return directory


@pytest.fixture
def node(tmp_path: Path) -> str:
    guests = [guestnode.NodeGuest(n, str(tmp_path / f"{n}.img"), "running") for n in ("web", "db")]
    return guestnode.write_node(tmp_path / "node.xml", guests)


@contextmanager
def other_run(uuid: str, name: str, seconds: float = 60) -> Iterator[subprocess.Popen[str]]:
    """Another dom0 process saving the guest: it holds the lock for `seconds`, then ends."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, uuid, name, str(seconds)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "held\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _fake_plan(hv: Hypervisor, guest: Guest, options: SaveOptions) -> SavePlan:
    image = manifest.image_path(options.directory, guest.name, options.compression)
    return SavePlan(guest, image, manifest.manifest_path(options.directory, guest.name), False)


def _saved(directory: Path, name: str, uuid: str) -> Path:
    """An image and its manifest as `dom0 save` leaves them (the image's bytes are not what a restore would take)."""
    image = manifest.image_path(directory, name, Compression.ZSTD)
    image.write_bytes(b"image")
    record = Manifest(
        name, uuid, "qemu:///system", SaveFormat.QEMU, Compression.ZSTD, 3,
        5, 5, "0" * 64, datetime.now(UTC).isoformat(), "running", image.name,
    )  # fmt: skip
    meta = manifest.manifest_path(directory, name)
    manifest.write(meta, record)
    return meta


def _fake_save(hv: Hypervisor, plan: SavePlan, options: SaveOptions, progress: Progress = no_progress) -> Manifest:
    return manifest.read(_saved(options.directory, plan.guest.name, plan.guest.uuid))


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "plan_save", _fake_plan)
    monkeypatch.setattr(stream, "save_guest", _fake_save)


def test_save_of_a_guest_another_run_saves_refuses_at_once_and_writes_nothing(tmp_path: Path, node: str) -> None:
    target = tmp_path / "saves"
    with other_run(WEB, "web") as other:
        began = time.monotonic()
        r = dom0("-c", node, "save", "web", "db", "-d", str(target))
        took = time.monotonic() - began
    assert r.rc == 1, (r.rc, r.out, r.err)
    assert r.out == ""
    lines = r.err.splitlines()
    assert re.fullmatch(rf"dom0: error: web is being saved by dom0 pid {other.pid} since \d\d:\d\d:\d\d", lines[0])
    assert lines[1:] == ["  hint: try again when it ends, or add --wait-lock to wait for it"]
    assert took < 5  # a dom0 start-up: no waiting
    assert not target.exists()  # no directory, FIFO, work directory or image: db, free, was not saved either


def test_restore_of_a_guest_another_run_holds_refuses_and_keeps_the_image(tmp_path: Path, node: str) -> None:
    saves = tmp_path / "saves"
    saves.mkdir(mode=0o700)
    meta = _saved(saves, "web", WEB)
    with other_run(WEB, "web") as other:
        r = dom0("-c", node, "restore", str(meta))
    assert r.rc == 1, (r.rc, r.out, r.err)
    assert r.err.splitlines()[0].startswith(f"dom0: error: web is being saved by dom0 pid {other.pid} since ")
    assert sorted(p.name for p in saves.iterdir()) == ["web.manifest.json", "web.save.zst"]


def test_save_all_skips_the_guest_another_run_holds_and_saves_the_others(
    tmp_path: Path, node: str, stand_in: None, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "saves"
    with other_run(WEB, "web") as other:
        rc = main(["-c", node, "save", "--all", "-d", str(target), "--json"])
    out = capsys.readouterr().out
    assert rc == 1  # not everything asked for was done
    doc = {g["name"]: g for g in json.loads(out)["guests"]}
    assert doc["db"]["ok"] is True
    assert doc["web"]["ok"] is False
    skipped = doc["web"]["skipped"]
    assert skipped == f"skipped: being saved by dom0 pid {other.pid} since {skipped[-8:]}"
    assert WORDS.fullmatch(skipped.removeprefix("skipped: "))
    assert sorted(p.name for p in target.iterdir()) == ["db.manifest.json", "db.save.zst"]


def test_save_all_table_shows_the_skipped_guest(
    tmp_path: Path, node: str, stand_in: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with other_run(DB, "db") as other:
        rc = main(["-c", node, "save", "--all", "-d", str(tmp_path / "saves")])
    out, err = capsys.readouterr()
    assert rc == 1
    row = next(line for line in out.splitlines() if line.startswith("db "))
    assert f"skipped: being saved by dom0 pid {other.pid} since " in row
    assert "saved 1 guest(s) into" in out
    assert err.startswith(f"dom0: error: db skipped: being saved by dom0 pid {other.pid} since ")


def test_save_with_wait_lock_waits_for_the_other_run_then_saves(
    tmp_path: Path, node: str, stand_in: None, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "saves"
    with other_run(WEB, "web", seconds=1) as other:
        began = time.monotonic()
        rc = main(["-c", node, "save", "web", "--wait-lock=5", "-d", str(target)])
        took = time.monotonic() - began
        other.wait(5)
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert err.startswith(f"waiting for web: it is being saved by dom0 pid {other.pid} since ")
    assert 0.5 < took < 5
    assert "saved 1 guest(s)" in out
    assert (target / "web.manifest.json").exists()


def test_host_stop_leaves_the_held_guest_to_its_run_and_stops_the_others(tmp_path: Path, node: str) -> None:
    config = tmp_path / "host.toml"
    config.write_text("")
    with other_run(WEB, "web") as other:
        r = dom0("-c", node, "host", "stop", "--config", str(config), "-d", str(tmp_path / "saves"), "--json")
    assert r.rc == 1, (r.rc, r.err)  # not every guest was stopped
    guests = {g["name"]: g for g in json.loads(r.out)["guests"]}
    assert (guests["db"]["action"], guests["db"]["result"]) == ("shutdown", "shut down")  # test:// cannot save
    web = guests["web"]
    assert (web["action"], web["result"]) == ("save", "skipped")
    assert web["detail"] == WORDS.fullmatch(web["detail"]).group(0)  # type: ignore[union-attr]
    assert f"web skipped: being saved by dom0 pid {other.pid} since " in web["error"]


@pytest.mark.parametrize("uuid", ["../../etc/passwd", "not-a-uuid"])
def test_restore_of_a_manifest_whose_uuid_is_no_uuid_is_refused(tmp_path: Path, node: str, uuid: str) -> None:
    saves = tmp_path / "saves"
    saves.mkdir(mode=0o700)
    r = dom0("-c", node, "restore", str(_saved(saves, "web", uuid)), "--json")
    assert r.rc == 1
    assert "Traceback" not in r.err
    (entry,) = json.loads(r.out)["guests"]
    assert entry["error"].endswith("which is not a UUID")
    assert sorted(p.name for p in saves.iterdir()) == ["web.manifest.json", "web.save.zst"]
    assert not list((tmp_path / "locks").glob("*")) if (tmp_path / "locks").exists() else True
