"""A libvirt daemon that accepts the connection but never answers: dom0 says so and exits, it does not hang."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DOM0 = Path(sys.executable).parent / "dom0"


@pytest.fixture
def silent_socket(tmp_path: Path) -> Iterator[Path]:
    """A UNIX socket that accepts every connection and never says a word (a hung libvirtd)."""
    path = tmp_path / "libvirt-sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(4)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield path
    server.close()
    for conn in held:
        conn.close()


@pytest.mark.parametrize("command", [("list",), ("mem",), ("plan",)])
def test_a_daemon_that_never_answers_gets_one_line_and_a_hint(silent_socket: Path, command: tuple[str, ...]) -> None:
    began = time.monotonic()
    proc = subprocess.run(
        [str(DOM0), "-c", f"qemu+unix:///system?socket={silent_socket}", *command],
        capture_output=True,
        text=True,
        timeout=60,
        env={"DOM0_CONNECT_TIMEOUT": "2", "PATH": "/usr/bin:/bin"},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0].endswith("did not answer within 2 s"), proc.stderr
    assert lines[1].startswith("  hint: is the daemon hung?")
    assert len(lines) == 2
    assert time.monotonic() - began < 30
