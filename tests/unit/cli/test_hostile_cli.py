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
from dom0.hypervisor import read_log_tail
from dom0.hypervisor.xl import config as xlcfg

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


@pytest.mark.parametrize("kind", ["fifo", "chardev", "huge"])
def test_host_config_that_is_no_file(kind: str, tmp_path: Path) -> None:
    path, words = _special(kind, tmp_path)
    r = dom0("-c", T, "host", "stop", "--dry-run", "--config", str(path), timeout=QUICK)
    _one_line_error(r, 2, "larger than 1 MiB" if kind == "huge" else words)


@pytest.mark.parametrize("kind", ["fifo", "chardev", "directory", "loop", "huge"])
def test_xl_config_reader_refuses_special_files(kind: str, tmp_path: Path, alarm: None) -> None:
    path, words = _special(kind, tmp_path)
    with pytest.raises(Dom0Error, match=words):
        xlcfg.load(path)


@pytest.mark.parametrize("kind", ["fifo", "chardev"])
def test_a_log_that_is_no_file_is_not_read(kind: str, tmp_path: Path, alarm: None) -> None:
    path, _ = _special(kind, tmp_path)
    assert read_log_tail(path) is None


# -- numbers, names and URIs no one meant -----------------------------------------------------------------------

HUGE = "9" * 5000  # beyond Python's limit on digits int() converts


@pytest.mark.parametrize("ref", ["99999999999999999999", "4294967296", "2147483648", "²", HUGE])
@pytest.mark.parametrize("command", ["list", "pause"])
def test_a_guest_id_no_guest_can_have_is_not_found(command: str, ref: str) -> None:
    _one_line_error(dom0("-c", T, command, ref), 1, "no guest named", "dom0 list --all")


@pytest.mark.parametrize(("word", "message"), [(HUGE, "at most 9 digits"), ("²", "cannot explain '²'")])
def test_explain_of_an_impossible_number(word: str, message: str) -> None:
    _one_line_error(dom0("explain", word), 2, message)


@pytest.mark.parametrize("delay", ["inf", "nan", "1e-300", "1e300", "-1"])
def test_top_delay_out_of_range_is_a_usage_error(delay: str) -> None:
    r = dom0("-c", T, "top", "--batch", "-n", "1", f"--delay={delay}", timeout=QUICK)
    _one_line_error(r, 2, "-d must be between 0.01 and 86400 seconds", "-d 2")


@pytest.mark.parametrize("timeout", ["nan", "inf", "1e300"])
def test_shutdown_timeout_that_is_no_time_is_refused(timeout: str) -> None:
    r = dom0("-c", T, "shutdown", "--wait", "-t", timeout, "test", timeout=QUICK)
    _one_line_error(r, 2, "--timeout must be between 1 and 86400 seconds", "--timeout 120")


def test_create_of_random_bytes(tmp_path: Path) -> None:
    junk = tmp_path / "junk.xml"
    junk.write_bytes(bytes([0xFF, 0xFE, 0x80]) + os.urandom(4096))
    _one_line_error(dom0("-c", T, "create", str(junk)), 2, "is not text", "libvirt domain XML")


def _not_a_node_file(kind: str, tmp_path: Path) -> tuple[Path, str]:
    if kind == "passwd":
        return Path("/etc/passwd"), "not a libvirt test driver <node> file"
    if kind == "missing":
        return tmp_path / "nonexistent", "does not exist"
    if kind == "random":
        (tmp_path / "random").write_bytes(bytes([0xFF, 0x80]) + os.urandom(4096))
        return tmp_path / "random", "not a libvirt test driver <node> file"
    if kind == "malformed":
        (tmp_path / "bad.xml").write_text("<node><domain type='test'>")
        return tmp_path / "bad.xml", "not a libvirt test driver <node> file"
    return _special(kind, tmp_path)


@pytest.mark.parametrize("kind", ["passwd", "missing", "random", "malformed", "fifo", "chardev", "directory"])
def test_test_uri_naming_no_node_file(kind: str, tmp_path: Path) -> None:
    path, words = _not_a_node_file(kind, tmp_path)
    r = dom0("-c", f"test://{path}", "list", timeout=QUICK)
    _one_line_error(r, 1, words, "test:///default")
    assert "root:" not in r.err  # the host file's lines are not quoted back


def test_an_untranslated_libvirt_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A libvirt call no backend method wrapped still ends in one line; --debug keeps the traceback."""
    import libvirt

    from dom0.cli import main, see

    def failing(_args: object) -> int:
        from dom0 import hypervisor  # noqa: F401  (a real command has loaded the hypervisor layer by now)

        raise libvirt.libvirtError("internal error: something libvirt did not expect\nmore detail")

    monkeypatch.setattr(see, "cmd_list", failing)
    assert main.main(["-c", T, "list"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "dom0: error: the hypervisor failed unexpectedly: internal error: something libvirt did not expect",
        "  hint: run again with --debug for the details, and report it if it persists",
    ]
    with pytest.raises(libvirt.libvirtError):
        main.main(["-c", T, "--debug", "list"])
