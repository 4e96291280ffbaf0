"""`dom0 import` of exports crafted by someone else: what the definition names on the host, decompression bombs,
special files in the export directory, malformed manifests. Each is refused with one line and a hint, before
anything is defined or written; a good export still imports."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import zstandard
from exportkit import DISK, GOOD_DEVICES, URI, UUID, definition_xml, make_export, manifest_doc
from hypothesis import given, settings
from hypothesis import strategies as st
from unitkit import DOM0, Result, dom0

from dom0 import run
from dom0.clone.screen import screen_xl
from dom0.clone.transfer import ExportManifest, boot_file_check, plan_import
from dom0.errors import Dom0Error
from dom0.hypervisor import UriChoice, connect


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir()
    return path


def _import(export: Path, store: Path, *extra: str) -> Result:
    return dom0("-c", URI, "import", str(export), "--storage", str(store), "--name", "imported", *extra, timeout=30)


def _refused(r: Result, store: Path, *words: str) -> None:
    """One line and a hint, exit 1, decided before anything was defined (no rollback) and nothing written."""
    assert r.rc == 1, (r.rc, r.out, r.err)
    assert "Traceback" not in r.err
    lines = r.err.splitlines()
    assert len(lines) == 2, r.err
    assert lines[0].startswith("dom0: error: ")
    assert lines[1].strip().startswith("hint: ")
    assert "removed what it had created" not in r.err  # refused while planning: nothing was defined
    for word in words:
        assert word in lines[0], r.err
    assert list(store.iterdir()) == []


# -- the good path ---------------------------------------------------------------------------------------------


def test_a_good_export_imports_and_says_what_it_replaced(tmp_path: Path, store: Path) -> None:
    export = make_export(tmp_path)
    plan = _import(export, store, "--dry-run")
    assert plan.rc == 0, plan.err
    assert "emulator '/usr/bin/qemu-system-x86_64' dropped" in plan.out
    assert list(store.iterdir()) == []
    r = _import(export, store)
    assert r.rc == 0, r.err
    assert (store / "imported-vda.img").read_bytes() == DISK


# -- item: the definition names host files ---------------------------------------------------------------------

_VDA = "<disk type='file' device='disk'><source file='/x/web.img'/><target dev='vda'/></disk>"
HOSTILE_DEVICES = {
    "shadow-disk": (_VDA + "<disk type='file' device='disk'><source file='/etc/shadow'/><target dev='vdb'/></disk>"),
    "host-block-device": (_VDA + "<disk type='block' device='disk'><source dev='/dev/vda'/><target dev='vdb'/></disk>"),
    "unlisted-disk": (
        _VDA + "<disk type='file' device='disk'><source file='/srv/other.img'/><target dev='vdc'/></disk>"
    ),
    "root-filesystem": (_VDA + "<filesystem type='mount'><source dir='/'/><target dir='host'/></filesystem>"),
    "network-disk": (
        _VDA + "<disk type='network' device='disk'><source protocol='nbd' name='x'><host name='h'/></source>"
        "<target dev='vdb'/></disk>"
    ),
    "serial-file": _VDA + "<serial type='file'><source path='/etc/cron.d/job'/></serial>",
    "host-pci": _VDA + "<hostdev mode='subsystem' type='pci'><source><address bus='0' slot='1'/></source></hostdev>",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_DEVICES))
def test_definition_naming_host_devices_is_refused(case: str, tmp_path: Path, store: Path) -> None:
    export = make_export(tmp_path, definition_xml(HOSTILE_DEVICES[case]))
    _refused(_import(export, store), store, "names host files or devices the export does not carry")


def test_kernel_of_etc_shadow_is_refused(tmp_path: Path, store: Path) -> None:
    export = make_export(tmp_path, definition_xml(os_extra="<kernel>/etc/shadow</kernel>"))
    _refused(_import(export, store), store, "kernel '/etc/shadow'")


def test_qemu_command_line_pass_through_is_refused(tmp_path: Path, store: Path) -> None:
    xml = definition_xml().replace(
        "</domain>",
        "<qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
        "<qemu:arg value='-drive'/><qemu:arg value='file=/etc/shadow'/></qemu:commandline></domain>",
    )
    _refused(_import(make_export(tmp_path, xml), store), store, "commandline")


def test_a_listed_disk_of_etc_shadow_gets_the_imported_disk_instead(tmp_path: Path, store: Path) -> None:
    devices = "<disk type='block' device='disk'><source dev='/etc/shadow'/><target dev='vda'/></disk>"
    r = _import(make_export(tmp_path, definition_xml(devices)), store, "--dry-run")
    assert r.rc == 0, r.err
    assert str(store / "imported-vda.img") in r.out


@pytest.mark.parametrize("name", ["../x", "a b", ".hidden", "x/y", ""])
def test_a_bad_guest_name_in_the_manifest_is_refused(name: str, tmp_path: Path, store: Path) -> None:
    export = make_export(tmp_path, name=name)
    r = dom0("-c", URI, "import", str(export), "--storage", str(store), timeout=30)
    _refused(r, store, "cannot be a guest name")


def test_a_bad_guest_name_on_the_command_line_is_a_usage_error(tmp_path: Path, store: Path) -> None:
    r = dom0("-c", URI, "import", str(make_export(tmp_path)), "--storage", str(store), "--name", "a b", timeout=30)
    assert r.rc == 2, r.err
    assert "cannot be a guest name" in r.err
    assert list(store.iterdir()) == []


@pytest.mark.parametrize("target", ["../../etc/x", "vd a", "VDA"])
def test_a_disk_target_that_is_not_a_device_name_is_refused(target: str, tmp_path: Path, store: Path) -> None:
    _refused(_import(make_export(tmp_path, disk_target=target), store), store, "is not a disk name")


def test_an_xl_cfg_naming_a_host_kernel_is_refused(tmp_path: Path, store: Path) -> None:
    cfg = f'name = "web"\nuuid = "{UUID}"\nkernel = "/etc/shadow"\nmemory = 128\ndisk = ["/x/web.img,raw,xvda,rw"]\n'
    export = make_export(tmp_path, cfg, disk_target="xvda")
    (export / "definition.xml").rename(export / "definition.cfg")
    doc = json.loads((export / "manifest.json").read_text())
    doc["definition"] = "definition.cfg"
    (export / "manifest.json").write_text(json.dumps(doc))
    _refused(_import(export, store), store, "setting kernel")


def _boot_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A host directory of kernels the administrator vouches for, one kernel in it, and one outside it."""
    boot = tmp_path / "kernels"
    boot.mkdir()
    inside = boot / "vmlinuz"
    inside.write_bytes(b"kernel")
    outside = tmp_path / "vmlinuz-elsewhere"
    outside.write_bytes(b"kernel")
    return boot, inside, outside


def test_a_kernel_in_a_boot_dir_the_admin_names_is_kept(tmp_path: Path, store: Path) -> None:
    boot, kernel, _ = _boot_files(tmp_path)
    export = make_export(tmp_path, definition_xml(os_extra=f"<kernel>{kernel}</kernel><cmdline>ro</cmdline>"))
    refused = _import(export, store)
    _refused(refused, store, f"kernel '{kernel}'")
    assert "--boot-dir" in refused.err.splitlines()[1]
    r = _import(export, store, "--boot-dir", str(boot), "--dry-run")
    assert r.rc == 0, r.err
    assert f"kernel '{kernel}' kept: this host's file, in a --boot-dir" in r.out


@pytest.mark.parametrize("where", ["outside", "dotdot", "symlink out", "missing", "directory"])
def test_a_boot_dir_vouches_only_for_the_files_inside_it(where: str, tmp_path: Path, store: Path) -> None:
    boot, _, outside = _boot_files(tmp_path)
    (boot / "out").symlink_to(outside)
    (boot / "subdir").mkdir()
    path = {
        "outside": str(outside),
        "dotdot": f"{boot}/../{outside.name}",
        "symlink out": f"{boot}/out",
        "missing": f"{boot}/nothing",
        "directory": f"{boot}/subdir",
    }[where]
    export = make_export(tmp_path, definition_xml(os_extra=f"<kernel>{path}</kernel>"))
    _refused(_import(export, store, "--boot-dir", str(boot)), store, f"kernel '{path}'")


def test_an_xl_cfg_kernel_and_ramdisk_in_a_boot_dir_are_kept(tmp_path: Path) -> None:
    boot, kernel, outside = _boot_files(tmp_path)
    initrd = boot / "initrd.img"
    initrd.write_bytes(b"initrd")
    vouched = boot_file_check([boot])
    cfg = f'name = "web"\nkernel = "{kernel}"\nramdisk = "{initrd}"\ndisk = ["/x/web.img,raw,xvda,rw"]\n'
    screened = screen_xl(cfg, ["xvda"], boot_file=vouched)
    assert f'kernel = "{kernel}"' in screened.text
    assert f"ramdisk '{initrd}' kept: this host's file, in a --boot-dir" in screened.notes
    with pytest.raises(Dom0Error, match="setting kernel"):
        screen_xl(cfg.replace(str(kernel), str(outside)), ["xvda"], boot_file=vouched)


def test_a_serial_log_the_export_names_becomes_this_hosts_own(tmp_path: Path, store: Path) -> None:
    """A log path in an export would have virtlogd write the guest's console into any host file: import keeps the
    log but puts it beside the imported disks, under the new name."""
    serial = "<serial type='pty'><log file='/etc/shadow' append='on'/><target port='0'/></serial>"
    export = make_export(
        tmp_path, definition_xml(GOOD_DEVICES.replace("<serial type='pty'><target port='0'/></serial>", serial))
    )
    with contextlib.closing(connect(UriChoice(URI, "test"))) as hv:
        plan = plan_import(hv, export, name="imported", storage_at=str(store))
    assert "/etc/shadow" not in plan.definition
    log = ET.fromstring(plan.definition).find("devices/serial/log")
    assert log is not None
    assert (log.get("file"), log.get("append")) == (f"{store}/imported-console.log", "on")
    assert "serial log '/etc/shadow': a log file of this host's instead" in plan.notes


# -- item: decompression bombs ---------------------------------------------------------------------------------


def _zstd_bomb(raw_bytes: int) -> bytes:
    comp = zstandard.ZstdCompressor(level=3).compressobj()
    zeros = bytes(16 << 20)
    parts = [comp.compress(zeros) for _ in range(raw_bytes // len(zeros))]
    return b"".join([*parts, comp.flush()])


# Runs ARGV as its only child and prints the child's peak resident size (KiB); exits with the child's code.
_PEAK_OF_CHILD = """
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(rc)
"""


def test_a_zstd_bomb_stops_at_the_declared_size(tmp_path: Path, store: Path) -> None:
    bomb = _zstd_bomb(4 << 30)  # 4 GiB of zeros in a few hundred KiB
    assert len(bomb) < 512 << 10
    raw = bytes(1 << 20)
    export = make_export(
        tmp_path, stored=bomb, disk_size_bytes=len(raw), disk_raw_sha256=hashlib.sha256(raw).hexdigest()
    )
    # A process of its own runs the import and reports its peak: this test process's other children (QEMU guests
    # of earlier tests) would count in a RUSAGE_CHILDREN read here.
    args = ("-c", URI, "import", str(export), "--storage", str(store), "--name", "imported")
    proc = run.run([sys.executable, "-c", _PEAK_OF_CHILD, str(DOM0), *args], check=False, input=b"", timeout=60)
    err, peak_kib = proc.stderr.decode(), int(proc.stdout.decode().split()[-1])
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 2, err
    assert "decompresses to more than the 1048576 bytes the manifest declares" in err
    assert list(store.iterdir()) == []  # the disk it began is removed
    assert peak_kib < 400 << 10, f"import peaked at {peak_kib >> 10} MiB"


def test_a_declared_size_beyond_the_destination_is_refused_before_writing(tmp_path: Path, store: Path) -> None:
    export = make_export(tmp_path, disk_size_bytes=1 << 50)  # 1 PiB
    _refused(_import(export, store), store, "need 1125899906842624 bytes")


def test_a_corrupt_zstd_stream_is_one_line(tmp_path: Path, store: Path) -> None:
    r = _import(make_export(tmp_path, stored=b"\x28\xb5\x2f\xfd" + os.urandom(4000)), store)
    assert r.rc == 1, r.err
    assert "Traceback" not in r.err
    assert len(r.err.splitlines()) == 2, r.err
    assert list(store.iterdir()) == []


# -- items: special files, malformed manifests and definitions -------------------------------------------------


def _replace(path: Path, kind: str) -> None:
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        path.symlink_to("/etc/passwd")
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        path.symlink_to("/dev/zero")  # mknod needs root; a symlink to a device is refused the same way


@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory", "device"])
@pytest.mark.parametrize("member", ["manifest.json", "definition.xml", "vda.raw.zst"])
def test_a_special_file_in_the_export_is_refused_without_hanging(
    member: str, kind: str, tmp_path: Path, store: Path
) -> None:
    export = make_export(tmp_path)
    _replace(export / member, kind)
    _refused(_import(export, store), store, member)


@pytest.mark.parametrize(
    ("definition", "words"),
    [
        (b"", "not valid XML"),
        (b"\x00\xff\xfe binary \x89PNG", "is not text"),
        (b"<domain><name>web</name>", "not valid XML"),
        (b"<network><name>web</name></network>", "not a libvirt domain definition"),
    ],
)
def test_a_malformed_definition_is_one_line(definition: bytes, words: str, tmp_path: Path, store: Path) -> None:
    _refused(_import(make_export(tmp_path, definition), store), store, words)


def test_a_missing_definition_is_one_line(tmp_path: Path, store: Path) -> None:
    export = make_export(tmp_path)
    (export / "definition.xml").unlink()
    _refused(_import(export, store), store, "missing from the export")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"disk_size_bytes": "1048576"}, "size_bytes must be a number"),
        ({"disk_size_bytes": True}, "size_bytes must be a number"),
        ({"disk_size_bytes": -1}, "impossible size"),
        ({"name": 5}, "name must be a string"),
        ({"disks": {"vda": 1}}, "disks must be a list"),
        ({"disks": [7]}, "must be an object"),
        ({"definition": "/etc/shadow"}, "the definition must be one of"),
        ({"disk_file": "../../etc/shadow"}, "not a file beside the manifest"),
    ],
)
def test_a_manifest_with_wrong_types_is_one_line(
    changes: dict[str, object], words: str, tmp_path: Path, store: Path
) -> None:
    _refused(_import(make_export(tmp_path, fields=changes), store), store, words)


def test_a_deeply_nested_manifest_is_one_line(tmp_path: Path, store: Path) -> None:
    export = make_export(tmp_path)
    (export / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    _refused(_import(export, store), store, "nested too deeply")


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=400),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
        ).map(lambda d: json.dumps(d).encode()),
    )
)
def test_any_bytes_as_an_export_manifest_give_a_manifest_or_an_error(data: bytes) -> None:
    with contextlib.suppress(Dom0Error):
        ExportManifest.parse(data, Path("manifest.json"))


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["name", "uuid", "definition", "disks", "format_version", "disk_size_bytes", "disk_file"]),
        st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.lists(st.integers(), max_size=2),
    )
)
def test_any_field_values_in_an_export_manifest_give_a_manifest_or_an_error(changes: dict[str, object]) -> None:
    data = json.dumps(manifest_doc(b"x", changes)).encode()
    try:
        manifest = ExportManifest.parse(data, Path("manifest.json"))
    except Dom0Error:
        return
    assert all("/" not in d.file for d in manifest.disks)
