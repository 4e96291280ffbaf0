"""The one door for external commands: each is logged at debug level and a failure raises CommandError."""

from __future__ import annotations

import logging
import os
import pty
import select
import shlex
import shutil
import subprocess
import tty
from collections.abc import Sequence

from dom0.errors import CommandError

log = logging.getLogger("dom0.run")


def run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    input: bytes | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `cmd`, capturing output; raise CommandError with its stderr when it fails and `check` is set."""
    log.debug("+ %s", shlex.join(cmd))
    try:
        proc = subprocess.run(list(cmd), input=input, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise CommandError(f"{cmd[0]}: command not found", f"install the package that provides {cmd[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{cmd[0]} did not finish within {timeout:g} s", "") from exc
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        last = err.splitlines()[-1] if err else f"exit code {proc.returncode}"
        raise CommandError(f"{cmd[0]} failed: {last}", "", returncode=proc.returncode, stderr=err)
    return proc


def output(cmd: Sequence[str], *, timeout: float | None = None) -> str:
    """Run `cmd` and return its standard output as text."""
    return run(cmd, timeout=timeout).stdout.decode(errors="replace")


def available(program: str) -> bool:
    """Whether `program` is on PATH."""
    return shutil.which(program) is not None


class PtyProcess:
    """A program running on a pseudo-terminal (for tools such as `xl console` that want a terminal)."""

    def __init__(self, proc: subprocess.Popen[bytes], fd: int) -> None:
        self.proc = proc
        self.fd = fd

    def read(self, timeout: float) -> bytes | None:
        """Output within `timeout` seconds: b'' when none came, None once the program closed its terminal."""
        if self.fd < 0:
            return None
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return b""
        try:
            data = os.read(self.fd, 4096)
        except OSError:  # EIO: the program exited and the terminal hung up
            data = b""
        return data or None

    def write(self, data: bytes) -> None:
        """Type `data` into the program's terminal."""
        while data:
            data = data[os.write(self.fd, data) :]

    def close(self, timeout: float = 2.0) -> int:
        """Wait up to `timeout` s for the program to end (then kill it), close the terminal; its exit code."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        return code


def spawn_pty(cmd: Sequence[str]) -> PtyProcess:
    """Start `cmd` with a new pseudo-terminal (raw mode, no echo) as its stdin, stdout and stderr."""
    log.debug("+ %s (on a pty)", shlex.join(cmd))
    controller, terminal = pty.openpty()
    tty.setraw(terminal)
    try:
        proc = subprocess.Popen(
            list(cmd), stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True, close_fds=True
        )
    except FileNotFoundError as exc:
        os.close(controller)
        raise CommandError(f"{cmd[0]}: command not found", f"install the package that provides {cmd[0]}") from exc
    finally:
        os.close(terminal)
    return PtyProcess(proc, controller)
