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
from exportkit import GOOD_DEVICES, URI, definition_xml, make_export

from dom0 import run

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (make setup)")

# Where the software lives (the interpreter, the venv, the source tree of an editable install, system libraries),
# and what libvirt's client library reads about the host on every connection, whatever the input.
SOFTWARE = tuple(
    {str(Path(p).resolve()) for p in (sys.base_prefix, sys.prefix, Path(__file__).parents[2] / "src")}
    | {"/usr/", "/lib/", "/lib64/", "/etc/ld.so.cache", "/etc/localtime", "/dev/null", "/dev/urandom", "/proc/self/"}
    | {"/etc/libvirt/libvirt.conf", "/proc/filesystems", "/proc/sys/kernel/cap_last_cap", "/sys/devices/system/"}
    | {"/sys/kernel/iommu_groups/", "/etc/locale.alias", "/etc/ssl/openssl.cnf"}
)
# strace -y prints the file an open returned: `openat(...) = 4</dir/file>`, whatever directory fd it was relative to.
_OPENED = re.compile(r"^(\d+) +open(?:at2?)?\(.*\) = \d+<(.*)>$", re.MULTILINE)


def opened_under_strace(tmp_path: Path, *args: str) -> tuple[unitkit.Result, list[str]]:
    """Run `dom0 ARGS` under strace -f; its result and every path an open of it or its children succeeded on."""
    trace = tmp_path / "strace.txt"
    cmd = ["strace", "-y", "-f", "-qq", "-e", "trace=open,openat,openat2", "-e", "status=successful", "-o", str(trace)]
    proc = run.run([*cmd, str(unitkit.DOM0), *args], check=False, input=b"", timeout=120)
    result = unitkit.Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    found = [(m.group(1), m.group(2)) for m in _OPENED.finditer(trace.read_text())]
    ours = {pid for pid, _ in found}
    # /proc/self as the kernel names it (/proc/PID) for one of the traced processes is still the process itself
    return result, [re.sub(r"^/proc/(\d+)/", lambda m: "/proc/self/" if m[1] in ours else m[0], p) for _, p in found]


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


def _import_traced(tmp_path: Path, export: Path) -> tuple[unitkit.Result, list[str], Path]:
    store = tmp_path / "store"
    store.mkdir()
    args = ("-c", URI, "import", str(export), "--storage", str(store), "--name", "imported")
    result, paths = opened_under_strace(tmp_path, *args)
    return result, paths, store


def test_a_good_import_opens_only_its_export_and_destination(tmp_path: Path) -> None:
    export = make_export(tmp_path)
    result, paths, store = _import_traced(tmp_path, export)
    assert result.rc == 0, result.err
    assert str(store / "imported-vda.img") in paths
    assert outside(paths, export, store) == []


def _hostile_devices(secret: Path) -> dict[str, str]:
    vda = "<disk type='file' device='disk'><source file='/x/web.img'/><target dev='vda'/></disk>"
    return {
        "listed disk": GOOD_DEVICES.replace("/var/lib/libvirt/images/web.img", str(secret)),
        "extra disk": f"{vda}<disk type='file' device='disk'><source file='{secret}'/><target dev='vdb'/></disk>",
        "filesystem": f"{vda}<filesystem type='mount'><source dir='{secret.parent}'/><target dir='h'/></filesystem>",
        "serial file": f"{vda}<serial type='file'><source path='{secret}'/></serial>",
    }


@pytest.mark.parametrize("case", ["listed disk", "extra disk", "filesystem", "serial file", "kernel", "symlink"])
def test_import_of_a_hostile_export_opens_no_host_file(tmp_path: Path, case: str) -> None:
    host = tmp_path / "host"
    host.mkdir()
    secret = host / "secret.img"
    secret.write_bytes(b"host data\n" * 4096)
    if case == "kernel":
        export = make_export(tmp_path, definition_xml(os_extra=f"<kernel>{secret}</kernel>"))
    elif case == "symlink":
        export = make_export(tmp_path)
        (export / "vda.raw.zst").unlink()
        (export / "vda.raw.zst").symlink_to(secret)
    else:
        export = make_export(tmp_path, definition_xml(_hostile_devices(secret)[case]))
    result, paths, store = _import_traced(tmp_path, export)
    assert "Traceback" not in result.err
    assert outside(paths, export, store) == []
    if case == "listed disk":  # its source is simply replaced by the imported disk
        assert result.rc == 0, result.err
        assert secret.read_bytes() == b"host data\n" * 4096
    else:
        assert result.rc == 1, result.out
        assert list(store.iterdir()) == []
