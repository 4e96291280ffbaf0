"""qcow2 through qemu-img: a linked clone (an overlay on a base that must stay read-only) or a full copy.

qemu-img would replace an existing destination, so the destination file is first created here with O_EXCL and
qemu-img only ever writes into that new, empty file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from dom0 import run
from dom0.errors import CommandError, Dom0Error
from dom0.model import Progress, no_progress
from dom0.storage.base import Created, create_file, remove_file, same_file
from dom0.storage.volumes import probe

POLL_SECONDS = 0.25


def _still_ours(created: Created) -> None:
    if not same_file(created):
        raise Dom0Error(f"{created.path} was replaced while qemu-img wrote it", "check what else writes there")


def overlay(base: Path, dst: Path, base_format: str) -> Created:
    """A new qcow2 `dst` whose reads fall through to `base` (recorded by absolute path, with its format).

    `base` must not change afterwards: a guest still writing to it would corrupt every overlay on it.
    """
    if base_format not in ("raw", "qcow2"):
        raise Dom0Error(f"{base}: cannot put an overlay on format {base_format or 'unknown'}", "use --mode copy")
    created = create_file(dst)
    cmd = ["qemu-img", "create", "-q", "-f", "qcow2", "-b", os.path.abspath(base), "-F", base_format, str(dst)]
    try:
        run.run(cmd, timeout=120)
        _still_ours(created)
    except CommandError as exc:
        remove_file(created)
        raise Dom0Error(
            f"cannot create the overlay {dst}: {exc.message}", "check the base image with qemu-img"
        ) from exc
    return created


def _estimate(size: int, src_allocated: int, dst_allocated: int) -> int:
    if src_allocated <= 0:
        return 0
    return size * min(dst_allocated, src_allocated) // src_allocated


def _allocated(path: Path) -> int:
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return 0


def full_copy(
    src: Path,
    dst: Path,
    progress: Progress = no_progress,
    *,
    src_format: str = "",
    dst_format: str = "",
) -> Created:
    """Copy `src` (its whole backing chain flattened) into a new independent image `dst`, sparse.

    `dst_format` defaults to the source's format. Progress is estimated from how much of the source's allocation
    the destination has reached (qemu-img writes no zeros), and reaches the virtual size when the copy is done.
    A progress callback that raises stops waiting but qemu-img runs to its end before `dst` is removed.
    """
    vol = probe(src, src_format)
    out_format = dst_format or vol.format
    created = create_file(dst)
    cmd = ["qemu-img", "convert", "-U", "-f", vol.format, "-O", out_format, "-W", "-m", "4", str(src), str(dst)]
    failure: list[BaseException] = []

    def work() -> None:
        try:
            run.run(cmd)
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=work, name="qemu-img convert", daemon=True)
    worker.start()
    try:
        # The callback runs in the caller's thread (progress bars are not thread-safe); qemu-img runs in another.
        while worker.is_alive():
            worker.join(POLL_SECONDS)
            progress(_estimate(vol.size_bytes, vol.allocated_bytes, _allocated(dst)))
    except BaseException:
        worker.join()
        remove_file(created)
        raise
    if failure:
        remove_file(created)
        exc = failure[0]
        if isinstance(exc, CommandError):
            raise Dom0Error(f"copying {src} to {dst} failed: {exc.message}", "check free space and the source") from exc
        raise exc
    try:
        _still_ours(created)
        fd = os.open(dst, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        remove_file(created)
        raise Dom0Error(f"copying {src} to {dst} failed: {exc.strerror}", "check the destination") from exc
    progress(vol.size_bytes)
    return created


def _mounted(path: Path) -> bool:
    try:
        mounts = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return False
    return any(line.split()[4] == str(path) for line in mounts.splitlines() if len(line.split()) > 4)


def _close_by_qmp(monitor: Path) -> bool:
    """End the export and close the image through the daemon's monitor: flushed, unlocked, unmounted.

    qemu-storage-daemon takes ~2 s to exit after SIGTERM here; closing the nodes itself takes milliseconds, after
    which nothing is left open and the daemon can simply be killed. False if the monitor did not answer.
    """
    commands = [
        {"execute": "qmp_capabilities"},
        {"execute": "block-export-del", "arguments": {"id": "view"}},
        {"execute": "blockdev-del", "arguments": {"node-name": "disk"}},
        {"execute": "blockdev-del", "arguments": {"node-name": "file"}},
    ]
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(30)
            sock.connect(str(monitor))
            stream = sock.makefile("rw")
            stream.readline()  # the greeting
            for command in commands:
                stream.write(json.dumps(command) + "\n")
                stream.flush()
                while True:
                    reply = json.loads(stream.readline() or "{}")
                    if "error" in reply or not reply:
                        return False
                    if "return" in reply:
                        break  # events (BLOCK_EXPORT_DELETED) come before it
    except (OSError, ValueError):
        return False
    return True


def _stop(pid: int, view: Path, monitor: Path | None = None) -> None:
    if monitor is not None and _close_by_qmp(monitor):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # nothing is open any more
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    # The daemon is not our child (it daemonized): wait for it to vanish, flushing the image as it quits.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    if _mounted(view):
        run.run(["fusermount3", "-u", str(view)], check=False)


@contextlib.contextmanager
def raw_view(image: Path, format: str = "qcow2") -> Iterator[Path]:
    """The guest-visible bytes of `image` as a plain file, read-write, for tools that want a raw disk (debugfs).

    A raw image is its own view. A qcow2 image is exported through FUSE by qemu-storage-daemon for the duration
    of the `with` block; writes land in the image and are flushed when the block ends.
    """
    if format == "raw":
        yield image
        return
    if format != "qcow2":
        raise Dom0Error(f"{image}: cannot open format {format or 'unknown'} as a raw disk", "use qcow2 or raw")
    work = Path(tempfile.mkdtemp(prefix="dom0-view-"))
    view, pidfile, monitor = work / "disk", work / "pid", work / "qmp.sock"
    view.touch()
    blockdevs = [
        {"driver": "file", "node-name": "file", "filename": os.path.abspath(image)},
        {"driver": "qcow2", "node-name": "disk", "file": "file"},
    ]
    export = {"type": "fuse", "id": "view", "node-name": "disk", "mountpoint": str(view), "writable": True}
    cmd = ["qemu-storage-daemon", "--chardev", f"socket,id=mon,path={monitor},server=on,wait=off"]
    cmd += ["--monitor", "chardev=mon"]
    for dev in blockdevs:
        cmd += ["--blockdev", json.dumps(dev)]
    cmd += ["--export", json.dumps(export), "--daemonize", "--pidfile", str(pidfile)]
    try:
        try:
            run.run(cmd, timeout=60)
        except CommandError as exc:
            raise Dom0Error(f"cannot open {image} as a raw disk: {exc.message}", "is the image in use?") from exc
        pid = int(pidfile.read_text().strip())
        try:
            yield view
        finally:
            _stop(pid, view, monitor)
    finally:
        if not _mounted(view):
            shutil.rmtree(work, ignore_errors=True)
