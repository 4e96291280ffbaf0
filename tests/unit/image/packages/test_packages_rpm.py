"""`dom0 image inspect --applications` on rpm systems: a real sqlite rpmdb made by rpm itself, hostile header
blobs and databases (bounded, noted, never a traceback), and the Berkeley DB format through the host's rpm."""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import subprocess
import time
from pathlib import Path

import ostrees
import pytest
from unitkit import dom0, inspected_applications

from dom0 import run
from dom0.image.osinspect import inspect_tree
from dom0.image.packages import read_applications
from dom0.image.packages.records import MAX_PACKAGES
from dom0.image.tree import DirectoryTree

SPEC = """\
Name: {name}
Version: {version}
Release: {release}
{epoch}Summary: {summary}
License: MIT
BuildArch: noarch
%description
Built by dom0's tests.
%files
"""


def _fedora(tmp_path: Path) -> tuple[Path, Path]:
    """A Fedora 39 tree whose rpm database lives where Fedora keeps it (/var/lib/rpm a symlink to it)."""
    root = ostrees.fedora39().build(tmp_path / "root")
    dbdir = root / "usr/lib/sysimage/rpm"
    dbdir.mkdir(parents=True)
    shutil.rmtree(root / "var/lib/rpm", ignore_errors=True)
    (root / "var/lib").mkdir(parents=True, exist_ok=True)
    os.symlink("../../usr/lib/sysimage/rpm", root / "var/lib/rpm")
    return root, dbdir


def _rpmbuild(tmp_path: Path, name: str, version: str, release: str, *, epoch: int | None, summary: str) -> Path:
    top = tmp_path / "rpmbuild"
    spec = top / "SPECS" / f"{name}.spec"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(
        SPEC.format(name=name, version=version, release=release, summary=summary,
                    epoch=f"Epoch: {epoch}\n" if epoch is not None else "")
    )  # fmt: skip
    subprocess.run(
        ["rpmbuild", "--define", f"_topdir {top}", "--define", f"_tmppath {tmp_path}", "-bb", str(spec)],
        capture_output=True,
        check=True,
    )
    return top / "RPMS" / "noarch" / f"{name}-{version}-{release}.noarch.rpm"


@pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="rpm is not installed (scripts/setup-host.sh installs it)")
def test_real_sqlite_rpmdb_made_by_rpm(tmp_path: Path) -> None:
    root, dbdir = _fedora(tmp_path)
    packages = [
        _rpmbuild(tmp_path, "openssh-server", "9.3p1", "10.fc39", epoch=2, summary="An open source SSH server daemon"),
        _rpmbuild(tmp_path, "httpd", "2.4.58", "1.fc39", epoch=None, summary="Apache HTTP Server"),
    ]
    rpm = ["rpm", "--define", "_db_backend sqlite", "--dbpath", str(dbdir)]
    subprocess.run([*rpm, "--initdb"], capture_output=True, check=True)
    subprocess.run([*rpm, "-i", "--justdb", "--nodeps", *map(str, packages)], capture_output=True, check=True)
    assert (dbdir / "rpmdb.sqlite").is_file()
    apps = inspected_applications(root)
    assert apps["database"] == "rpm-sqlite"
    assert apps["notes"] == []
    assert apps["applications"] == [
        {"name": "httpd", "version": "2.4.58", "release": "1.fc39", "epoch": 0, "arch": "noarch",
         "source": "httpd", "summary": "Apache HTTP Server"},
        {"name": "openssh-server", "version": "9.3p1", "release": "10.fc39", "epoch": 2, "arch": "noarch",
         "source": "openssh-server", "summary": "An open source SSH server daemon"},
    ]  # fmt: skip
    r = dom0("image", "inspect", str(root), "--applications")
    assert "    2 packages (rpm-sqlite)" in r.out.splitlines()
    assert any(line.split()[:3] == ["openssh-server", "2:9.3p1-10.fc39", "noarch"] for line in r.out.splitlines())


# --- hostile header blobs -------------------------------------------------------------------------------------

STRING, INT32, I18N = 6, 4, 9


def _header(entries: list[tuple[int, int, str | int]], *, count: dict[int, int] | None = None) -> bytes:
    """An rpm header as the database stores it: index count, data size, 16-byte entries, data store."""
    index, data = b"", b""
    for tag, kind, value in entries:
        if kind == INT32:
            data += b"\0" * (-len(data) % 4)
            offset, data = len(data), data + struct.pack(">I", int(value))
        else:
            offset, data = len(data), data + str(value).encode() + b"\0"
        index += struct.pack(">IIII", tag, kind, offset, (count or {}).get(tag, 1))
    return struct.pack(">II", len(entries), len(data)) + index + data


def _package(name: str, summary: str = "a package") -> list[tuple[int, int, str | int]]:
    return [(1000, STRING, name), (1001, STRING, "1.0"), (1002, STRING, "1.el9"), (1004, I18N, summary),
            (1022, STRING, "x86_64"), (1044, STRING, f"{name}-1.0-1.el9.src.rpm")]  # fmt: skip


def _sqlite_db(path: Path, blobs: list[bytes]) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
    db.executemany("INSERT INTO Packages (blob) VALUES (?)", [(b,) for b in blobs])
    db.commit()
    db.close()


def test_hostile_headers_are_skipped_with_one_note(tmp_path: Path) -> None:
    root, dbdir = _fedora(tmp_path)
    good = _header(_package("good"))
    no_end = _header(_package("no-end"))[:-1] + b"x"  # the last string (SOURCERPM) runs off the data store
    far = bytearray(_header(_package("far")))
    struct.pack_into(">I", far, 8 + 8, 10**6)  # NAME's offset far past the data
    huge_index = struct.pack(">II", 2**31, 16) + b"\0" * 64
    short = _header(_package("short"))[:-10]  # the data store cut short of its declared size
    many = _header(_package("many-summaries"), count={1004: 2**31})  # a count of 2^31 on a field read once
    keys = _header(_package("gpg-pubkey"))
    _sqlite_db(dbdir / "rpmdb.sqlite", [good, no_end, bytes(far), huge_index, short, b"\1\2\3", many, keys])
    apps = inspected_applications(root)
    assert [a["name"] for a in apps["applications"]] == ["good", "many-summaries"]
    assert apps["applications"][0] == {"name": "good", "version": "1.0", "release": "1.el9", "epoch": 0,
                                       "arch": "x86_64", "source": "good", "summary": "a package"}  # fmt: skip
    assert len(apps["notes"]) == 1
    assert apps["notes"][0].startswith("5 package headers of /var/lib/rpm/rpmdb.sqlite skipped: damaged (first: ")


def test_a_packages_view_that_never_ends_is_abandoned(tmp_path: Path) -> None:
    root, dbdir = _fedora(tmp_path)
    db = sqlite3.connect(dbdir / "rpmdb.sqlite")
    db.execute(
        "CREATE VIEW Packages AS WITH RECURSIVE n(hnum, blob) AS (SELECT 1, x'00' UNION ALL "
        "SELECT hnum + 1, blob FROM n) SELECT hnum, blob FROM n WHERE hnum < 0"
    )
    db.commit()
    db.close()
    started = time.monotonic()
    apps = inspected_applications(root)
    assert time.monotonic() - started < 20
    assert apps["applications"] == []
    assert apps["notes"] == [
        "/var/lib/rpm/rpmdb.sqlite could not be read: it has no Packages table: not an rpm database"
    ]


def test_a_million_rows_are_read_only_up_to_the_package_limit(tmp_path: Path) -> None:
    root, dbdir = _fedora(tmp_path)
    # A million tiny rows, each a damaged header: no more rows than a real system's package limit are looked at.
    db = sqlite3.connect(dbdir / "rpmdb.sqlite")
    db.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
    db.execute(
        "INSERT INTO Packages (blob) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)"
        " SELECT x'00' FROM n"
    )
    db.commit()
    db.close()
    started = time.monotonic()
    apps = inspected_applications(root)
    assert time.monotonic() - started < 30
    assert apps["applications"] == []
    assert apps["notes"] == [
        f"{MAX_PACKAGES + 1} package headers of /var/lib/rpm/rpmdb.sqlite skipped: damaged (first: header 1: 1 bytes, "
        "shorter than a header's counts)"
    ]


def test_not_an_sqlite_file_and_an_oversized_one_are_noted(tmp_path: Path) -> None:
    root, dbdir = _fedora(tmp_path)
    (dbdir / "rpmdb.sqlite").write_bytes(b"this is not a database\n" * 100)
    apps = inspected_applications(root)
    assert apps["database"] == "rpm-sqlite"
    assert apps["applications"] == []
    assert apps["notes"][0].startswith("/var/lib/rpm/rpmdb.sqlite could not be read: the sqlite database could not")
    with open(dbdir / "rpmdb.sqlite", "r+b") as fh:
        fh.truncate(600 * 1024 * 1024)  # sparse
    apps = inspected_applications(root)
    assert apps["notes"] == [
        "/var/lib/rpm/rpmdb.sqlite could not be read: /var/lib/rpm/rpmdb.sqlite is 600.0 MiB, more than the "
        "512.0 MiB an rpm database can be (the image may be damaged or hostile)"
    ]


# --- the Berkeley DB format, read only through the host's rpm -------------------------------------------------------


def _centos5(tmp_path: Path) -> Path:
    root = ostrees.centos53().build(tmp_path / "root")
    (root / "var/lib/rpm").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/rpm/Packages").write_bytes(b"\0\x06\x15\x61" + b"not really a hash database" * 100)
    return root


def test_berkeley_db_without_rpm_on_the_host_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _centos5(tmp_path)
    monkeypatch.setattr(run, "available", lambda program: False)
    tree = DirectoryTree(root)
    system = inspect_tree(tree)
    assert system is not None
    apps = read_applications(tree, system)
    assert apps.database == "rpm-bdb"
    assert apps.apps == ()
    assert apps.notes == (
        "/var/lib/rpm/Packages is a Berkeley DB rpm database, which dom0 reads only through the host's rpm tool, and "
        "it is not installed: the packages are not listed (apt-get install rpm)",
    )


@pytest.mark.skipif(shutil.which("rpm") is None, reason="rpm is not installed (scripts/setup-host.sh installs it)")
def test_berkeley_db_rpm_cannot_read_is_noted(tmp_path: Path) -> None:
    apps = inspected_applications(_centos5(tmp_path))
    assert apps["database"] == "rpm-bdb"
    assert apps["applications"] == []
    assert apps["notes"][0].startswith(
        "/var/lib/rpm/Packages is a Berkeley DB rpm database; the host's rpm could not read it ("
    )
    assert "dom0-rpmdb-" not in apps["notes"][0]  # the guest's directory is named, not dom0's private copy
