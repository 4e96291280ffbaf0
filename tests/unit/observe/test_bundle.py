"""The support bundle and `dom0 dmesg` on libvirt's test:///default driver (no real guests needed)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dom0.errors import Dom0Error, GuestNotFound
from dom0.hypervisor import LogText, UriChoice
from dom0.hypervisor.libvirt.backend import LibvirtHypervisor
from dom0.model import GuestDetails
from dom0.observe import bundle

URI = "test:///default"


def dom0(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI, as a user runs it."""
    exe = Path(sys.executable).parent / "dom0"
    program = [str(exe)] if exe.exists() else [sys.executable, "-m", "dom0"]
    env = {k: v for k, v in os.environ.items() if k not in ("DOM0_CONNECT", "LIBVIRT_DEFAULT_URI")}
    return subprocess.run(
        [*program, "-c", URI, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60, check=False
    )


def members(path: Path) -> dict[str, bytes]:
    """The archive's files by their name inside the top directory."""
    with tarfile.open(path) as tar:
        out = {}
        for info in tar.getmembers():
            if info.isfile():
                f = tar.extractfile(info)
                assert f is not None
                out[info.name.split("/", 1)[1]] = f.read()
        return out


def test_bundle_from_the_cli_has_every_part_and_guests_json_matches_list(tmp_path: Path) -> None:
    target = tmp_path / "b.tar.gz"
    result = dom0("support-bundle", "-o", str(target), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["path"] == str(target)
    assert report["bytes"] == target.stat().st_size > 0
    files = members(target)
    assert {f"b/{name}" for name in files} == set(report["files"])
    for name in (
        "README.txt",
        "errors.txt",
        "host/facts.json",
        "host/meminfo.txt",
        "host/os-release.txt",
        "hypervisor.log",
        "guests/test.xml",
        "guests.json",
    ):
        assert name in files, name
    listed = json.loads(files["guests.json"])
    expected = json.loads(dom0("list", "--all", "--long", "--json").stdout)
    # The test driver's CPU time moves between the two calls; everything else must be the same, except what only
    # `list --long` reads beyond the hypervisor: each guest's OS from its disks, and which dom0 run holds it.
    for g in (*listed, *expected):
        del g["cpu_time_s"], g["cpu_time"]
    for g in expected:
        del g["os"], g["lock"]
    assert listed == expected
    assert "<name>test</name>" in files["guests/test.xml"].decode()
    facts = json.loads(files["host/facts.json"])
    assert facts["uri"] == URI
    assert facts["hypervisor"]["hypervisor"].lower() == "test"
    assert facts["cpu"]["processors"] >= 1
    assert facts["memory"]["MemTotal_kib"] > 0
    readme = files["README.txt"].decode()
    assert "taken at" in readme
    assert "guests/test.xml" in readme
    # test:///default's guest has no console log: recorded, not fatal.
    assert "guest test: no console log" in files["errors.txt"].decode()
    assert oct(target.stat().st_mode & 0o777) == "0o600"


def test_default_name_is_host_and_time_in_the_current_directory(tmp_path: Path) -> None:
    result = dom0("support-bundle", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (written,) = tmp_path.iterdir()
    assert re.fullmatch(r"dom0-support-[A-Za-z0-9._+-]+-\d{8}-\d{6}\.tar\.gz", written.name)
    assert result.stdout.startswith(f"wrote {written.name} (")
    with tarfile.open(written) as tar:
        assert f"{written.name.removesuffix('.tar.gz')}/guests.json" in tar.getnames()


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "keep.tar.gz"
    target.write_bytes(b"precious")
    result = dom0("support-bundle", "-o", str(target))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"dom0: error: {target} already exists; not overwriting it",
        "  hint: pick another name with -o FILE",
    ]
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tar.gz"]


def test_an_unwritable_place_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "b.tar.gz"
    result = dom0("support-bundle", "-o", str(target))
    assert result.returncode == 1
    assert result.stderr.startswith(f"dom0: error: cannot write {target}")
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_dmesg_on_the_test_driver_says_which_log(tmp_path: Path) -> None:
    host = dom0("dmesg")
    assert host.returncode == 0
    assert host.stdout.splitlines()[0] == "# the test driver keeps no log"
    guest = dom0("dmesg", "test")
    assert guest.returncode == 0
    assert guest.stdout == ""
    assert "test has no log readable from here" in guest.stderr
    assert "<log file=" in guest.stderr
    assert json.loads(dom0("dmesg", "test", "--json").stdout) == []
    unknown = dom0("dmesg", "nosuch")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("dom0: error: no guest named 'nosuch'")


class _Flaky(LibvirtHypervisor):
    """test:///default where one guest vanishes mid-way and another's logs cannot be read."""

    vanished = "vanishing"
    unreadable = "test"

    def details(self, ref: str) -> GuestDetails:
        if ref == self.guest(self.vanished).uuid:
            raise GuestNotFound(f"no guest named {ref!r}")
        return super().details(ref)

    def guest_logs(self, ref: str) -> list[LogText]:
        if ref == self.guest(self.unreadable).uuid:
            raise Dom0Error("cannot read /var/log/libvirt/qemu/test.log: Permission denied")
        return super().guest_logs(ref)


@pytest.fixture
def flaky() -> Iterator[_Flaky]:
    hv = _Flaky.open(UriChoice(URI, "test"))
    assert isinstance(hv, _Flaky)
    hv._conn.defineXML(
        "<domain type='test'><name>vanishing</name><memory>65536</memory><os><type>hvm</type></os></domain>"
    )
    yield hv
    hv.close()


def test_partial_failures_are_recorded_and_the_rest_is_kept(flaky: _Flaky, tmp_path: Path) -> None:
    taken = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    collected = bundle.collect(flaky, now=taken)
    path = bundle.default_path("host/1", taken, tmp_path)
    assert path.name == "dom0-support-host_1-20240506-070809.tar.gz"
    bundle.write(collected, path)
    files = members(path)
    errors = files["errors.txt"].decode()
    assert "guest vanishing: it went away while the bundle was being taken" in errors
    assert "logs of test: cannot read /var/log/libvirt/qemu/test.log: Permission denied" in errors
    assert [g["name"] for g in json.loads(files["guests.json"])] == ["test"]
    assert "guests/test.xml" in files
    assert "2024-05-06T07:08:09+00:00" in files["README.txt"].decode()
