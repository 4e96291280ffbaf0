"""`dom0 image inspect --applications` on dpkg systems: the real debootstrapped Debian 12's status file, the
fields as virt-inspector splits them, and hostile status files (bounded, one note, never a traceback)."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import ostrees
import pytest
from unitkit import dom0

from dom0.image.packages.records import MAX_PACKAGES

STANZA = (
    "Package: {name}\nStatus: install ok installed\nPriority: optional\nSection: misc\nInstalled-Size: 12\n"
    "Maintainer: Someone <someone@example.org>\nArchitecture: amd64\n{extra}Version: {version}\n"
    "Description: {summary}\n the long description,\n .\n over several lines\n\n"
)


def _stanza(name: str, version: str, summary: str = "a package", extra: str = "") -> str:
    return STANZA.format(name=name, version=version, summary=summary, extra=extra)


def _debian(tmp_path: Path, status: str | bytes | None) -> Path:
    root = ostrees.debian12().build(tmp_path / "root")
    target = root / "var/lib/dpkg/status"
    if status is None:
        target.unlink()
    elif isinstance(status, bytes):
        target.write_bytes(status)
    else:
        target.write_text(status)
    return root


def _apps(root: Path) -> dict[str, Any]:
    r = dom0("image", "inspect", str(root), "--applications", "--json")
    assert r.rc == 0, r.err
    assert "Traceback" not in r.err
    systems = json.loads(r.out)["operating_systems"]
    assert len(systems) == 1
    apps: dict[str, Any] = systems[0]["applications"]
    return apps


def _real_root() -> Path | None:
    for marker in sorted(glob.glob("/var/cache/dom0-tests/debootstrap-bookworm-*.complete")):
        root = Path(marker[: -len(".complete")])
        if (root / "var/lib/dpkg/status").is_file():
            return root
    return None


def test_real_debian_status_lists_what_dpkg_query_lists() -> None:
    root = _real_root()
    if root is None:
        pytest.skip("no debootstrapped Debian 12 root here (the labs build it)")
    listed = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${Package}\t${Version}\t${Architecture}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    apps = _apps(root)
    assert apps["database"] == "dpkg"
    assert apps["notes"] == []
    got = {a["name"]: a for a in apps["applications"]}
    assert len(apps["applications"]) == len(listed) > 50
    for line in listed:
        name, version, arch = line.split("\t")
        a = got[name]
        full = (f"{a['epoch']}:" if a["epoch"] else "") + a["version"] + (f"-{a['release']}" if a["release"] else "")
        assert full == version, name
        assert a["arch"] == arch
    # Fields dpkg-query does not print: a source package and a summary, as virt-inspector shows them.
    assert got["bsdutils"]["source"] == "util-linux"
    assert got["bsdutils"]["epoch"] == 1
    assert got["bash"]["summary"] == "GNU Bourne Again SHell"
    # The text view: the count, then a line per package.
    r = dom0("image", "inspect", str(root), "--applications")
    assert r.rc == 0
    assert f"    {len(listed)} packages (dpkg)" in r.out.splitlines()
    assert any(line.split()[:3] == ["bash", got["bash"]["version"] + "-" + got["bash"]["release"], "amd64"]
               for line in r.out.splitlines())  # fmt: skip


def test_fields_split_as_virt_inspector_and_only_installed_listed(tmp_path: Path) -> None:
    status = (
        _stanza("openssh-server", "1:9.2p1-2+deb12u3", "secure shell (SSH) server",
                "Source: openssh (1:9.2p1-2+deb12u3)\n")
        + _stanza("apache2-bin", "2.4.62-1~deb12u2", "Apache HTTP Server (modules and other binary files)",
                  "Source: apache2\n")
        + _stanza("native-tool", "3.134")
        + _stanza("multi-hyphen", "1.0-beta-3")
        + _stanza("gone", "1.0-1").replace("install ok installed", "deinstall ok config-files")
        + _stanza("half", "1.0-1").replace("install ok installed", "install ok half-configured")
        + _stanza("held", "2.0-1").replace("install ok installed", "hold ok installed")
    )  # fmt: skip
    root = _debian(tmp_path, status)
    # dpkg's previous copy lists a package removed since: it must not appear.
    (root / "var/lib/dpkg/status-old").write_text(status + _stanza("removed-since", "1.0-1"))
    apps = _apps(root)
    got = {a["name"]: a for a in apps["applications"]}
    assert list(got) == sorted(["openssh-server", "apache2-bin", "native-tool", "multi-hyphen", "held"])
    assert got["openssh-server"] == {
        "name": "openssh-server", "version": "9.2p1", "release": "2+deb12u3", "epoch": 1, "arch": "amd64",
        "source": "openssh", "summary": "secure shell (SSH) server",
    }  # fmt: skip
    assert (got["apache2-bin"]["version"], got["apache2-bin"]["release"]) == ("2.4.62", "1~deb12u2")
    assert got["apache2-bin"]["source"] == "apache2"
    assert (got["native-tool"]["version"], got["native-tool"]["release"], got["native-tool"]["source"]) == (
        "3.134", "", ""
    )  # fmt: skip
    assert (got["multi-hyphen"]["version"], got["multi-hyphen"]["release"]) == ("1.0-beta", "3")
    assert apps["notes"] == []


def test_without_the_option_nothing_is_read(tmp_path: Path) -> None:
    root = _debian(tmp_path, _stanza("bash", "5.2.15-2"))
    r = dom0("image", "inspect", str(root), "--json")
    assert r.rc == 0
    assert "applications" not in json.loads(r.out)["operating_systems"][0]
    assert "packages (dpkg)" not in dom0("image", "inspect", str(root)).out


def test_several_targets_with_applications_is_a_usage_error(tmp_path: Path) -> None:
    root = _debian(tmp_path, _stanza("bash", "5.2.15-2"))
    r = dom0("image", "inspect", str(root), str(root), "--applications")
    assert r.rc == 2
    assert r.out == ""
    assert "--applications lists the packages of one image or directory" in r.err
    assert "hint:" in r.err
    assert "Traceback" not in r.err


def test_no_package_database_is_said(tmp_path: Path) -> None:
    root = _debian(tmp_path, None)
    r = dom0("image", "inspect", str(root), "--applications")
    assert r.rc == 0
    assert "    no package database found (dpkg, rpm, apk or pacman)" in r.out.splitlines()


def test_huge_fields_and_broken_stanzas_skipped_with_one_note(tmp_path: Path) -> None:
    huge = "x" * (1024 * 1024)
    status = (
        _stanza("good", "1.0-1")
        + _stanza("huge-version", huge)
        + _stanza(huge, "1.0-1")
        + "Package: no-version\nStatus: install ok installed\n\n"
        + "Package: garbage\nStatus: install ok installed\nthis line has no colon\nVersion: 1-1\n\n"
        + _stanza("huge-summary", "2.0-1", summary=huge)
        + "\n\n\n"
    )
    apps = _apps(_debian(tmp_path, status))
    assert [a["name"] for a in apps["applications"]] == ["good", "huge-summary"]
    assert len(apps["applications"][1]["summary"]) == 256
    assert len(apps["notes"]) == 1
    assert apps["notes"][0].startswith("4 stanzas of /var/lib/dpkg/status skipped: damaged")


def test_a_status_larger_than_any_real_one_is_not_read(tmp_path: Path) -> None:
    root = _debian(tmp_path, _stanza("bash", "5.2.15-2"))
    with open(root / "var/lib/dpkg/status", "r+b") as fh:
        fh.truncate(65 * 1024 * 1024)  # sparse: costs no disk
    started = time.monotonic()
    apps = _apps(root)
    assert time.monotonic() - started < 10
    assert apps["applications"] == []
    assert apps["database"] == "dpkg"
    assert "/var/lib/dpkg/status could not be read: /var/lib/dpkg/status is 65.0 MiB" in apps["notes"][0]


def test_status_symlinked_out_of_the_guest_is_not_followed(tmp_path: Path) -> None:
    # On the host, the link's target holds a package list: read through the link it would be listed.
    outside = tmp_path / "host-status"
    outside.write_text(_stanza("host-only", "1.0-1"))
    root = _debian(tmp_path, None)
    os.symlink(str(outside), root / "var/lib/dpkg/status")
    apps = _apps(root)
    assert apps["applications"] == []
    assert apps["notes"] == [
        "/var/lib/dpkg/status is not a regular file inside the guest (a symlink out of the guest, or a device): "
        "not read"
    ]


def test_more_stanzas_than_the_limit_stop_there(tmp_path: Path) -> None:
    stanza = "Package: p{n}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1-{n}\n\n"
    status = "".join(stanza.format(n=n) for n in range(MAX_PACKAGES + 5))
    started = time.monotonic()
    apps = _apps(_debian(tmp_path, status))
    assert time.monotonic() - started < 30
    assert len(apps["applications"]) == MAX_PACKAGES
    assert apps["notes"] == [
        f"only the first {MAX_PACKAGES} packages of /var/lib/dpkg/status are listed: no real system has more"
    ]
