"""Hostile input on the command line: special files, endless files, absurd numbers and URIs. Each gets one line
and a hint with the right exit code; none hangs dom0 or shows a traceback."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from unitkit import Result, dom0

from dom0.errors import Dom0Error
from dom0.hypervisor import read_log_tail, xlcfg

T = "test:///default"
# Long enough for a loaded machine, short enough that a hang fails the test instead of stalling the run.
QUICK = 30


def _one_line_error(r: Result, rc: int, message: str, hint: str = "") -> None:
    assert r.rc == rc, (r.rc, r.err)
    assert "Traceback" not in r.err, r.err
    lines = r.err.splitlines()
    assert len(lines) == 2, r.err
    assert lines[0].startswith("dom0: error: "), r.err
    assert message in lines[0], r.err
    assert lines[1].strip().startswith("hint: "), r.err
    assert hint in lines[1], r.err


class Blocked(Exception):
    """Not an OSError (as TimeoutError is), so code that catches those cannot hide the hang."""


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fail an in-process call that blocks, rather than hang the test run."""

    def timeout(_sig: int, _frame: object) -> None:
        raise Blocked("blocked on a special file")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(QUICK)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# -- special and endless files where a regular file is expected --------------------------------------------------


def _special(kind: str, tmp_path: Path) -> tuple[Path, str]:
    """A path of the given kind, and the words the error must use for it."""
    path = tmp_path / f"guest-{kind}.xml"
    if kind == "fifo":
        os.mkfifo(path)
        return path, "is a FIFO"
    if kind == "chardev":
        return Path("/dev/zero"), "is a character device"
    if kind == "directory":
        path.mkdir()
        return path, "is a directory"
    if kind == "loop":
        os.symlink(path.name, path)
        return path, "Too many levels of symbolic links"
    # A sparse 1 GiB file: reading it whole is what the bound prevents.
    with open(path, "wb") as f:
        f.truncate(1 << 30)
    return path, "larger than 4 MiB"


@pytest.mark.parametrize("kind", ["fifo", "chardev", "directory", "loop", "huge"])
def test_create_refuses_what_is_not_a_definition_file(kind: str, tmp_path: Path) -> None:
    path, words = _special(kind, tmp_path)
    r = dom0("-c", T, "create", str(path), timeout=QUICK)
    _one_line_error(r, 2, words)
    assert str(path) in r.err


def test_create_follows_a_symlink_to_a_definition(tmp_path: Path) -> None:
    """The administrator named the path: a symlink to a real file is fine, only what it ends at is checked."""
    (tmp_path / "real.xml").write_text(
        "<domain type='test'><name>x</name><memory>1024</memory><os><type>hvm</type></os></domain>"
    )
    (tmp_path / "link.xml").symlink_to("real.xml")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "to-fifo.xml").symlink_to("fifo")
    ok = dom0("-c", T, "create", str(tmp_path / "link.xml"), timeout=QUICK)
    assert ok.rc == 0, ok.err
    assert "created x" in ok.out
    _one_line_error(dom0("-c", T, "create", str(tmp_path / "to-fifo.xml"), timeout=QUICK), 2, "is a FIFO")


@pytest.mark.parametrize("kind", ["fifo", "chardev", "directory", "loop", "huge"])
def test_xl_config_reader_refuses_special_files(kind: str, tmp_path: Path, alarm: None) -> None:
    path, words = _special(kind, tmp_path)
    with pytest.raises(Dom0Error, match=words):
        xlcfg.load(path)


@pytest.mark.parametrize("kind", ["fifo", "chardev"])
def test_a_log_that_is_no_file_is_not_read(kind: str, tmp_path: Path, alarm: None) -> None:
    path, _ = _special(kind, tmp_path)
    assert read_log_tail(path) is None
