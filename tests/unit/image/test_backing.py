"""A qcow2 header is the image's content: its backing file names reach host files only where the admin said so.

Each hostile image is made here with qemu-img (`-u`: the backing file is recorded, never opened) and shown to
`dom0 image inspect`, which must refuse it in one line with a hint, open none of the named files, and never hang.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from unitkit import DOM0, dom0

from dom0 import run
from dom0.errors import Dom0Error
from dom0.image.source import open_image

MiB = 1024 * 1024


def _qcow2(path: Path, backing: str | None = None, fmt: str | None = "raw") -> Path:
    cmd = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing:
        cmd += ["-u", "-b", backing] + (["-F", fmt] if fmt else [])
    run.run([*cmd, str(path), "4M"])
    return path


def _refused(path: Path, *extra: str) -> str:
    """`dom0 image inspect PATH`'s refusal: exit 1, an error line and a hint line, no traceback."""
    result = dom0("image", "inspect", *extra, str(path), timeout=20)
    assert result.rc == 1, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 2, result.err
    assert lines[0].startswith("dom0: error: ")
    assert lines[1].startswith("  hint: ")
    return result.err


@pytest.mark.parametrize("target", ["/etc/passwd", "/dev/zero", "/etc"])
def test_backing_outside_the_image_directory_is_refused(tmp_path: Path, target: str) -> None:
    img = _qcow2(tmp_path / "guest.qcow2", target)
    err = _refused(img)
    assert f"backing file {target} is outside {tmp_path}" in err
    assert "--backing-dir" in err
    assert "--format raw" in err


def test_dotdot_and_symlink_escapes_are_refused(tmp_path: Path) -> None:
    (tmp_path / "outside.img").write_bytes(b"\0" * MiB)
    inner = tmp_path / "images"
    inner.mkdir()
    err = _refused(_qcow2(inner / "up.qcow2", "../outside.img"))
    assert "backing file ../outside.img is outside" in err
    # a symlink inside the directory is followed to where it really points, and judged there
    (inner / "base.raw").symlink_to("/etc/passwd")
    err = _refused(_qcow2(inner / "link.qcow2", "base.raw"))
    assert "backing file base.raw is outside" in err


def test_fifo_directory_and_device_inside_the_directory_are_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.raw")
    err = _refused(_qcow2(tmp_path / "fifo.qcow2", "fifo.raw"))
    assert "backing file fifo.raw is a FIFO, not an image file" in err
    (tmp_path / "dir.raw").mkdir()
    err = _refused(_qcow2(tmp_path / "dir.qcow2", "dir.raw"))
    assert "backing file dir.raw is a directory, not an image file" in err
    # a directory the admin named is no licence to read its devices
    err = _refused(_qcow2(tmp_path / "dev.qcow2", "/dev/zero"), "--backing-dir", "/dev")
    assert "backing file /dev/zero is a character device, not an image file" in err


def test_chain_that_loops_is_refused(tmp_path: Path) -> None:
    a = _qcow2(tmp_path / "a.qcow2")
    _qcow2(tmp_path / "b.qcow2", "a.qcow2", "qcow2")
    run.run(["qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", str(a)])
    assert "backing chain loops back to" in _refused(a)


def test_chain_deeper_than_the_limit_is_refused(tmp_path: Path) -> None:
    (tmp_path / "l0.raw").write_bytes(b"\0" * MiB)
    _qcow2(tmp_path / "l1.qcow2", "l0.raw")
    for n in range(2, 18):
        _qcow2(tmp_path / f"l{n}.qcow2", f"l{n - 1}.qcow2", "qcow2")
    assert "deeper than 16" in _refused(tmp_path / "l17.qcow2")


def test_backing_dir_lets_the_admin_name_where_bases_are(tmp_path: Path) -> None:
    bases = tmp_path / "bases"
    bases.mkdir()
    (bases / "base.raw").write_bytes(b"\0" * 4 * MiB)
    guests = tmp_path / "guests"
    guests.mkdir()
    img = _qcow2(guests / "guest.qcow2", str(bases / "base.raw"))
    assert "is outside" in _refused(img)
    result = dom0("image", "inspect", "--backing-dir", str(bases), str(img))
    assert result.rc == 0, result.err
    assert result.out.startswith(f"{img}: 4.0 MiB qcow2 image")
    missing = dom0("image", "inspect", "--backing-dir", str(tmp_path / "nope"), str(img))
    assert (missing.rc, missing.err.splitlines()[0]) == (
        1,
        f"dom0: error: --backing-dir {tmp_path}/nope is not a directory",
    )


def _raw_disk_with_a_qcow2_header(path: Path, backing: str) -> Path:
    """What a guest can do to its raw disk: write a qcow2 header naming a host file into its first sector."""
    header = bytearray(512)
    name = backing.encode()
    # magic, version 2, backing offset/size, 64 KiB clusters, 4 MiB, no encryption, L1: 1 entry at 512
    struct.pack_into(">4sIQIIQIIQ", header, 0, b"QFI\xfb", 2, 256, len(name), 16, 4 * MiB, 0, 1, 512)
    header[256 : 256 + len(name)] = name
    path.write_bytes(bytes(header) + b"\0" * (4 * MiB - 512))
    return path


def test_format_raw_makes_the_header_inside_a_raw_disk_control_nothing(tmp_path: Path) -> None:
    disk = _raw_disk_with_a_qcow2_header(tmp_path / "guest.img", "/etc/shadow")
    assert "backing file /etc/shadow is outside" in _refused(disk)
    result = dom0("image", "inspect", "--format", "raw", str(disk))
    assert result.rc == 0, result.err
    assert result.out.startswith(f"{disk}: 4.0 MiB raw image")
    told = dom0("image", "inspect", "--format", "qcow2", str(tmp_path / "guest.img"))
    assert told.rc == 1
    raw = tmp_path / "plain.raw"
    raw.write_bytes(b"\0" * MiB)
    told = dom0("image", "inspect", "--format", "qcow2", str(raw))
    assert (told.rc, told.err.splitlines()[0]) == (1, f"dom0: error: {raw} has no qcow2 header")


def test_a_base_declared_raw_is_read_raw(tmp_path: Path) -> None:
    # the base is a guest's raw disk that holds a qcow2 header: declared raw, its header is only data
    _raw_disk_with_a_qcow2_header(tmp_path / "base.raw", "/etc/shadow")
    top = _qcow2(tmp_path / "top.qcow2", "base.raw", "raw")
    with open_image(top) as src:
        assert src.read_at(0, 4) == b"QFI\xfb"
    # undeclared, the base is sniffed as qemu would, and its own backing name is held to the same rules
    legacy = _raw_disk_with_a_qcow2_header(tmp_path / "legacy.qcow2", "base.raw")  # version 2: no format recorded
    with pytest.raises(Dom0Error, match="backing file /etc/shadow is outside"):
        open_image(legacy)


def test_hostile_backing_files_are_never_opened(tmp_path: Path) -> None:
    if not run.available("strace"):
        pytest.skip("strace is not installed")
    os.mkfifo(tmp_path / "fifo.raw")
    cases = {
        "passwd.qcow2": "/etc/passwd",
        "zero.qcow2": "/dev/zero",
        "fifo.qcow2": str(tmp_path / "fifo.raw"),
        "up.qcow2": "../outside.img",
    }
    for name, backing in cases.items():
        img = _qcow2(tmp_path / name, backing)
        log = tmp_path / f"{name}.strace"
        proc = run.run(
            [
                "strace",
                "-f",
                "-qq",
                "-e",
                "trace=open,openat,openat2",
                "-o",
                str(log),
                str(DOM0),
                "image",
                "inspect",
                str(img),
            ],
            check=False,
            timeout=60,
        )
        assert proc.returncode == 1, proc.stderr
        opened = log.read_text()
        assert f'"{img}"' in opened  # strace saw dom0's opens
        target = os.path.normpath(os.path.join(tmp_path, backing))
        assert f'"{target}"' not in opened, opened
        assert f'"{backing}"' not in opened, opened
