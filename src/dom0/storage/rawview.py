"""A qcow2 image seen as raw bytes in a file, through qemu-storage-daemon's FUSE export.

This exports the disk image, not a filesystem: the guest's filesystem is never mounted in the host kernel, and
the tools that edit it (debugfs) work on the raw view in userspace.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from dom0 import run
from dom0.errors import Dom0Error

START_TIMEOUT_S = 20.0


@contextlib.contextmanager
def raw_view(image: Path, *, writable: bool = True) -> Iterator[Path]:
    """Yield a file that reads (and writes) as the raw contents of the qcow2 `image`."""
    with tempfile.TemporaryDirectory(prefix="dom0-view-") as tmp:
        view = Path(tmp) / "raw"
        view.touch(mode=0o600)
        args = [
            "qemu-storage-daemon",
            "--blockdev", f"driver=file,node-name=file0,filename={image}",
            "--blockdev", "driver=qcow2,node-name=fmt0,file=file0",
            "--export", f"type=fuse,id=view0,node-name=fmt0,mountpoint={view},writable={'on' if writable else 'off'}",
        ]  # fmt: skip
        daemon = run.spawn(args)
        try:
            _wait_mounted(view, daemon.pid)
            yield view
        finally:
            daemon.terminate()
            try:
                daemon.wait(timeout=10)
            except Exception:
                daemon.kill()
                daemon.wait()


def _wait_mounted(view: Path, pid: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with open("/proc/self/mountinfo") as f:
            if any(f" {view} " in line for line in f):
                return
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.05)
    raise Dom0Error(
        f"qemu-storage-daemon could not export {view.name} through FUSE",
        "is /dev/fuse available and qemu-system-common installed?",
    )
