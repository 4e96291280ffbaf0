"""Tab completion of guest names on a real libvirt host, through bash's own completion machinery: running and shut
off guests of qemu:///system, named by -c on the line, by $LIBVIRT_DEFAULT_URI, or by the host's default."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .conftest import REPO, URI, MakeGuest

SCRIPT = REPO / "contrib" / "completion" / "dom0.bash"
DOM0_BIN = Path(sys.executable).parent


def _complete(words: list[str], runtime: Path, **env: str) -> list[str]:
    runtime.mkdir(exist_ok=True)  # the guest-name cache stays in this test's directory
    base = {k: v for k, v in os.environ.items() if k not in ("DOM0_CONNECT", "LIBVIRT_DEFAULT_URI")}
    environ = {**base, "PATH": f"{DOM0_BIN}:{base.get('PATH', '/usr/bin:/bin')}", "XDG_RUNTIME_DIR": str(runtime)}
    script = 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _dom0; printf "%s\\n" "${COMPREPLY[@]}"'
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script, "bash", str(SCRIPT), *words],
        capture_output=True,
        text=True,
        env={**environ, **env},
        timeout=30,
        check=False,
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    return [line for line in proc.stdout.splitlines() if line]


def test_guest_names_complete_from_the_real_host(make_guest: MakeGuest, tmp_path: Path) -> None:
    running = make_guest()
    stopped = make_guest(start=False)
    prefix = running.name.rsplit("-", 1)[0]  # dom0test-SESSION: this run's guests only
    mine = {running.name, stopped.name}

    on_the_line = _complete(["dom0", "-c", URI, "start", prefix], tmp_path / "a")
    assert mine <= set(on_the_line)
    assert all(name.startswith(prefix) for name in on_the_line)
    from_env = _complete(["dom0", "shutdown", prefix], tmp_path / "b", LIBVIRT_DEFAULT_URI=URI)
    assert mine <= set(from_env)
    by_default = _complete(["dom0", "save", prefix], tmp_path / "c")  # a KVM host's default is qemu:///system
    assert mine <= set(by_default)
    # several guests: each slot of a command taking many offers them again
    assert mine <= set(_complete(["dom0", "-c", URI, "save", running.name, prefix], tmp_path / "a"))

    # repeated Tabs within a few seconds are answered from the cache: well under the 0.3 s a Tab may take
    times = []
    for _ in range(3):
        start = time.perf_counter()
        _complete(["dom0", "-c", URI, "start", prefix], tmp_path / "a")
        times.append(time.perf_counter() - start)
    assert min(times) < 0.3, f"a cached Tab took {sorted(times)} s"
