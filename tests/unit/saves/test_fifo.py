"""What an interrupted `dom0 save` leaves behind: abandoned work dirs cleaned up or finished, live ones untouched."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from libvirtd_standin import Standins

from dom0.errors import Dom0Error
from dom0.saves.fifo import WorkDir, sweep


@pytest.fixture
def libvirtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standins]:
    with Standins(tmp_path_factory.mktemp("sbin")) as started:
        yield started


def _abandoned(directory: Path, name: str = "web1", kind: str = "save") -> Path:
    """A work dir as WorkDir makes it, whose owner died: nobody holds its lock."""
    work = directory / f".dom0-{kind}-{name}-k3x9q1"
    work.mkdir(mode=0o700)
    os.mkfifo(work / "stream", 0o600)
    (work / "lock").write_bytes(b"")
    return work


@pytest.fixture
def held() -> Iterator[list[int]]:
    """Lock fds held for a test, as a live dom0 run holds its work dir's lock; released afterwards."""
    fds: list[int] = []
    yield fds
    for fd in fds:
        os.close(fd)


def _hold(work: Path, fds: list[int]) -> None:
    fd = os.open(work / "lock", os.O_WRONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    fds.append(fd)


def test_abandoned_work_dir_is_removed_and_said_so(tmp_path: Path) -> None:
    work = _abandoned(tmp_path)
    (work / "web1.save.zst.partial").write_bytes(b"half an image")  # no manifest: the save never completed
    notes = sweep(tmp_path)
    assert not work.exists()
    assert len(notes) == 1
    assert work.name in notes[0]
    assert "removed" in notes[0]
    assert "not saved" in notes[0]
    assert list(tmp_path.iterdir()) == []  # nothing of the half image reaches the directory


def test_abandoned_restore_dir_is_removed(tmp_path: Path) -> None:
    work = _abandoned(tmp_path, kind="restore")
    notes = sweep(tmp_path)
    assert not work.exists()
    assert len(notes) == 1


def test_work_dir_of_a_live_run_is_left_alone(tmp_path: Path, held: list[int]) -> None:
    work = _abandoned(tmp_path)
    (work / "web1.save.zst.partial").write_bytes(b"being written")
    _hold(work, held)
    assert sweep(tmp_path) == []
    assert (work / "web1.save.zst.partial").read_bytes() == b"being written"
    assert (work / "stream").exists()


def test_only_the_abandoned_one_of_two_is_removed(tmp_path: Path, held: list[int]) -> None:
    live = _abandoned(tmp_path, "web1")
    dead = _abandoned(tmp_path, "db1")
    _hold(live, held)
    notes = sweep(tmp_path)
    assert live.exists()
    assert not dead.exists()
    assert len(notes) == 1
    assert dead.name in notes[0]


def test_a_real_workdir_is_left_alone_while_open_and_gone_after(tmp_path: Path) -> None:
    with WorkDir(tmp_path, "save", "web1") as work:
        assert work.path.name.startswith(".dom0-save-web1-")
        assert (work.fifo.stat().st_mode & 0o777) == 0o600
        assert sweep(tmp_path) == []
        assert work.path.exists()
    assert list(tmp_path.iterdir()) == []


def test_other_files_in_the_directory_are_untouched(tmp_path: Path) -> None:
    (tmp_path / "web1.save.zst").write_bytes(b"image")
    (tmp_path / "web1.manifest.json").write_text("{}")
    (tmp_path / ".dom0-notes").write_text("a file, not a work dir")  # matches the prefix, has no lock
    (tmp_path / ".dom0-save-x-123").mkdir()  # a directory without a lock file is not dom0's
    assert sweep(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".dom0-notes",
        ".dom0-save-x-123",
        "web1.manifest.json",
        "web1.save.zst",
    ]


def test_complete_save_left_by_a_killed_run_is_moved_into_place(tmp_path: Path) -> None:
    work = _abandoned(tmp_path)
    (work / "web1.save.zst.partial").write_bytes(b"whole compressed image")
    (work / "web1.manifest.json.partial").write_text('{"format_version": 1}')
    started = time.monotonic()
    notes = sweep(tmp_path)  # no hypervisor waits on the FIFO: the wait for it simply times out
    assert time.monotonic() - started < 2.5
    assert (tmp_path / "web1.save.zst").read_bytes() == b"whole compressed image"
    assert (tmp_path / "web1.manifest.json").read_text() == '{"format_version": 1}'
    assert not work.exists()
    assert len(notes) == 1
    assert "finished web1's save" in notes[0]


def test_a_hypervisor_still_waiting_on_the_fifo_is_let_through(tmp_path: Path) -> None:
    # libvirtd, after the stream, blocks reopening the FIFO to write its final header; the sweep must release it.
    work = _abandoned(tmp_path)
    (work / "web1.save.zst.partial").write_bytes(b"image")
    (work / "web1.manifest.json.partial").write_text("{}")
    released = threading.Event()

    def hypervisor() -> None:
        with open(work / "stream", "wb") as fifo:  # blocks until a reader comes
            fifo.write(b"LibvirtQemudSave" + bytes(76))
        released.set()

    thread = threading.Thread(target=hypervisor, daemon=True)
    thread.start()
    started = time.monotonic()
    notes = sweep(tmp_path)
    assert time.monotonic() - started < 1.5  # no timeout: the writer was there
    assert released.wait(2)
    assert (tmp_path / "web1.save.zst").read_bytes() == b"image"
    assert "finished web1's save" in notes[0]


def test_a_hypervisor_waiting_to_finish_a_save_without_a_manifest_is_made_to_fail(tmp_path: Path) -> None:
    # dom0 died after the stream but before its manifest: the image is lost, so libvirtd's final header write must
    # fail (libvirt then cancels the save and the guest runs on) rather than wait forever holding the guest's lock.
    work = _abandoned(tmp_path)
    (work / "web1.save.zst.partial").write_bytes(b"half an image")
    outcome: list[str] = []

    def hypervisor() -> None:
        fd = os.open(work / "stream", os.O_WRONLY)  # blocks until a reader comes
        time.sleep(0.2)  # libvirtd's write comes a moment after its open returns
        try:
            os.write(fd, b"LibvirtQemudSave" + bytes(76))
            outcome.append("written")
        except BrokenPipeError:
            outcome.append("broken pipe")
        finally:
            os.close(fd)

    thread = threading.Thread(target=hypervisor, daemon=True)
    thread.start()
    time.sleep(0.1)
    notes = sweep(tmp_path)
    thread.join(2)
    assert outcome == ["broken pipe"]
    assert not work.exists()
    assert list(tmp_path.iterdir()) == []
    assert "its guest was not saved" in notes[0]


def test_a_hypervisor_waiting_for_an_abandoned_restore_stream_sees_it_end(tmp_path: Path) -> None:
    work = _abandoned(tmp_path, kind="restore")
    got: list[bytes] = []

    def hypervisor() -> None:
        with open(work / "stream", "rb") as fifo:  # blocks until a writer comes
            got.append(fifo.read())

    thread = threading.Thread(target=hypervisor, daemon=True)
    thread.start()
    time.sleep(0.1)
    sweep(tmp_path)
    thread.join(2)
    assert got == [b""]
    assert not work.exists()


def test_work_dirs_are_private_to_dom0s_user(tmp_path: Path) -> None:
    with WorkDir(tmp_path, "save", "web1") as work:
        st = work.path.stat()
        assert (st.st_mode & 0o777, st.st_uid) == (0o700, os.geteuid())


def _complete(work: Path) -> None:
    (work / "web1.save.zst.partial").write_bytes(b"whole compressed image")
    (work / "web1.manifest.json.partial").write_text("{}")


def test_a_link_named_stream_is_never_written(tmp_path: Path, libvirtd: Standins) -> None:
    os.mkfifo(tmp_path / "elsewhere.fifo")
    libvirtd(tmp_path / "elsewhere.fifo")  # a daemon waits, so dom0 would go on to fill the pipe it opened
    saves = tmp_path / "saves"
    saves.mkdir(mode=0o700)
    work = _abandoned(saves)
    (work / "web1.save.zst.partial").write_bytes(b"half an image")
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (work / "stream").unlink()
    (work / "stream").symlink_to(victim)
    notes = sweep(saves)
    assert victim.read_bytes() == b"precious"
    assert notes == [f"left {work.name} alone: its stream is a symbolic link, not a FIFO, {ALIEN}"]
    assert (work / "stream").is_symlink()  # left as it was, for the admin to look at


ALIEN = "which dom0 does not make (remove it by hand once you know what it is)"


def test_a_work_dir_that_is_a_link_is_not_followed(tmp_path: Path) -> None:
    saves, elsewhere = tmp_path / "saves", tmp_path / "elsewhere"
    saves.mkdir(mode=0o700)
    elsewhere.mkdir(mode=0o700)
    _complete(elsewhere)
    os.mkfifo(elsewhere / "stream", 0o600)
    (elsewhere / "lock").write_bytes(b"")
    (saves / ".dom0-restore-x").symlink_to(elsewhere)
    notes = sweep(saves)
    assert sorted(p.name for p in elsewhere.iterdir()) == [
        "lock",
        "stream",
        "web1.manifest.json.partial",
        "web1.save.zst.partial",
    ]
    assert [p.name for p in saves.iterdir()] == [".dom0-restore-x"]
    assert notes == [f"left .dom0-restore-x alone: it is a symbolic link, {ALIEN}"]


@pytest.mark.parametrize("kind", ["large file", "link to /dev/zero"])
def test_a_stream_that_is_not_a_fifo_is_not_read(tmp_path: Path, kind: str) -> None:
    work = _abandoned(tmp_path)
    _complete(work)
    (work / "stream").unlink()
    if kind == "large file":
        with open(work / "stream", "wb") as f:
            f.truncate(8 << 30)  # sparse: 8 GiB that read_all would take into memory
    else:
        (work / "stream").symlink_to("/dev/zero")
    started = time.monotonic()
    notes = sweep(tmp_path)
    assert time.monotonic() - started < 1
    assert len(notes) == 1
    assert notes[0].startswith(f"left {work.name} alone: its stream is a ")
    assert (work / "web1.save.zst.partial").exists()  # nothing moved, nothing removed


def test_an_endless_writer_on_the_fifo_is_cut_off(tmp_path: Path) -> None:
    work = _abandoned(tmp_path)
    _complete(work)

    def writer() -> None:
        try:
            with open(work / "stream", "wb") as fifo:
                while True:
                    fifo.write(bytes(1 << 20))
        except BrokenPipeError:
            pass

    threading.Thread(target=writer, daemon=True).start()
    started = time.monotonic()
    notes = sweep(tmp_path)
    assert time.monotonic() - started < 5
    assert "finished web1's save" in notes[0]
    assert (tmp_path / "web1.save.zst").read_bytes() == b"whole compressed image"


def test_a_work_dir_of_another_user_is_left_alone(tmp_path: Path) -> None:
    work = _abandoned(tmp_path)
    (work / "web1.save.zst.partial").write_bytes(b"half an image")
    os.chown(work / "web1.save.zst.partial", 4321, 4321)
    notes = sweep(tmp_path)
    assert notes == [f"left {work.name} alone: its web1.save.zst.partial belongs to uid 4321, {ALIEN}"]
    assert (work / "web1.save.zst.partial").exists()


@pytest.mark.parametrize(
    ("mode", "owner", "hint"), [(0o777, None, "chmod go-w"), (0o770, None, "chmod go-w"), (0o700, 4321, "chown")]
)
def test_a_directory_others_can_write_to_is_refused(tmp_path: Path, mode: int, owner: int | None, hint: str) -> None:
    saves = tmp_path / "saves"
    saves.mkdir()
    work = _abandoned(saves)
    saves.chmod(mode)
    if owner is not None:
        os.chown(saves, owner, owner)
    with pytest.raises(Dom0Error) as caught:
        sweep(saves)
    assert hint in caught.value.hint
    with pytest.raises(Dom0Error):
        WorkDir(saves, "save", "web1")
    assert [p.name for p in saves.iterdir()] == [work.name]
