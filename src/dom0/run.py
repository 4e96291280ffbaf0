"""The one door for external commands: each is logged at debug level and a failure raises CommandError."""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
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
