"""Hostile inputs reach no host file: `dom0` run under strace opens nothing outside its inputs and destination.

The run's every successful open (its children's too: qemu-img and qemu-storage-daemon read images as well) must be
in the input's directory, the destination, or the software dom0 runs on (Python, its libraries, the dynamic
loader's cache). The files the hostile input points at live beside the input, outside what the run may read.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import unitkit

from dom0 import run

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (make setup)")

# Where the software lives: the interpreter, the venv, the source tree of an editable install, system libraries.
SOFTWARE = tuple(
    {str(Path(p).resolve()) for p in (sys.base_prefix, sys.prefix, Path(__file__).parents[2] / "src")}
    | {"/usr/", "/lib/", "/lib64/", "/etc/ld.so.cache", "/etc/localtime", "/dev/null", "/dev/urandom", "/proc/self/"}
)
_OPENED = re.compile(r'\bopen(?:at2?)?\((?:AT_FDCWD|\d+)?,?\s*"((?:[^"\\]|\\.)*)"')


def opened_under_strace(tmp_path: Path, *args: str) -> tuple[unitkit.Result, list[str]]:
    """Run `dom0 ARGS` under strace -f; its result and every path an open of it or its children succeeded on."""
    trace = tmp_path / "strace.txt"
    cmd = ["strace", "-f", "-qq", "-e", "trace=open,openat,openat2", "-e", "status=successful", "-o", str(trace)]
    proc = run.run([*cmd, str(unitkit.DOM0), *args], check=False, input=b"", timeout=120)
    result = unitkit.Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    return result, [m.group(1) for m in _OPENED.finditer(trace.read_text())]


def outside(paths: list[str], *allowed: Path) -> list[str]:
    """The opened paths that are neither software nor inside one of the `allowed` directories."""
    roots = [*SOFTWARE, *(f"{a.resolve()}/" for a in allowed)]
    found = []
    for p in paths:
        full = os.path.normpath(p)
        if not any(full == r.rstrip("/") or full.startswith(r if r.endswith("/") else r + "/") for r in roots):
            found.append(p)
    return sorted(set(found))


def _qcow2_over(backing: str, image: Path) -> None:
    run.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", "raw", str(image), "64M"])


def test_the_runs_trace_is_read(tmp_path: Path) -> None:
    """The check below can fail: a plain inspect's trace names the image it read."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "disk.img").write_bytes(bytes(1 << 20))
    result, paths = opened_under_strace(tmp_path, "image", "inspect", str(inputs / "disk.img"))
    assert result.rc == 0, result.err
    assert str(inputs / "disk.img") in [os.path.normpath(p) for p in paths]
    assert outside(paths, inputs) == []


@pytest.mark.parametrize("where", ["sibling", "absolute", "dotdot"])
def test_image_inspect_of_a_hostile_qcow2_opens_no_host_file(tmp_path: Path, where: str) -> None:
    inputs, host = tmp_path / "inputs", tmp_path / "host"
    inputs.mkdir()
    host.mkdir()
    secret = host / "secret.img"
    secret.write_bytes(b"host data\n" * 4096)
    backing = {"sibling": str(secret), "absolute": str(secret.resolve()), "dotdot": "../host/secret.img"}[where]
    _qcow2_over(backing, inputs / "guest.qcow2")
    result, paths = opened_under_strace(tmp_path, "image", "inspect", str(inputs / "guest.qcow2"))
    assert result.rc == 1, result.out
    assert "Traceback" not in result.err
    assert outside(paths, inputs) == []
