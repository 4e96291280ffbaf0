"""A stand-in for libvirtd blocked opening a FIFO for writing, as libvirt's QEMU driver waits to finish a save."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

# Named like the daemon, it opens the FIFO for writing (blocking) and writes its 92-byte header as soon as the open
# returns. (The real libvirtd wins the race against a plain open-and-close of the read end; that case is tested
# against it in tests/integration/test_saves.py.)
DAEMON = """
import ctypes, os, sys
ctypes.CDLL(None).prctl(15, b"libvirtd", 0, 0, 0)
fd = os.open(sys.argv[1], os.O_WRONLY)
try:
    os.write(fd, b"LibvirtQemudSave" + bytes(76))
    print("written", flush=True)
except BrokenPipeError:
    print("broken pipe", flush=True)
"""


def thread_state(pid: int) -> tuple[str, str, int]:
    """The main thread's state letter, where it sleeps, and how often it went to sleep (any wake-up counts)."""
    task = Path(f"/proc/{pid}/task/{pid}")
    state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
    switches = next(int(line.split()[1]) for line in (task / "status").read_text().splitlines() if "voluntary" in line)
    return state, (task / "wchan").read_text().strip(), switches


class Standins:
    """Starts stand-ins, each killed when the block ends: `real=True` runs a root-owned binary named libvirtd (the
    interpreter, copied), `real=False` the interpreter as it is, merely calling itself libvirtd."""

    def __init__(self, scratch: Path) -> None:
        self._binary = scratch / "libvirtd"
        shutil.copy(os.path.realpath(sys.executable), self._binary)
        self._env = {
            "PYTHONHOME": sys.base_prefix,
            "LD_LIBRARY_PATH": str(sysconfig.get_config_var("LIBDIR") or ""),
            "PATH": os.environ.get("PATH", ""),
        }
        self._started: list[subprocess.Popen[str]] = []

    def __call__(self, fifo: Path, *, real: bool = True) -> subprocess.Popen[str]:
        exe = str(self._binary) if real else sys.executable
        proc = subprocess.Popen([exe, "-c", DAEMON, str(fifo)], stdout=subprocess.PIPE, text=True, env=self._env)
        self._started.append(proc)
        deadline = time.monotonic() + 10
        while thread_state(proc.pid)[1] != "wait_for_partner":
            assert proc.poll() is None, "the stand-in daemon died"
            assert time.monotonic() < deadline, "the stand-in daemon never waited on the FIFO"
            time.sleep(0.01)
        return proc

    def __enter__(self) -> Standins:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self._started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # should a failing test have left it stopped
            proc.kill()
            proc.wait()
