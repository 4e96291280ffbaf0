"""`dom0 image inspect --applications` on Alpine (apk's installed database) and Arch (pacman's local database),
written in those tools' own formats, and hostile ones (bounded, noted, never a traceback)."""

from __future__ import annotations

from pathlib import Path

import ostrees
from unitkit import dom0, inspected_applications

APK_INSTALLED = """\
C:Q1bNGdpVAtX7nR1qJ1lLdJ0H6X1Sw=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:383152
I:622592
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1700000000
c:a8a0b2f3e6b5c3d1e2f4a5b6c7d8e9f0a1b2c3d4
p:so:libc.musl-x86_64.so.1=1
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1yUM+7pXzZs8AAzd8AK0+zbPvo9M=
R:libc.musl-x86_64.so.1
a:0:0:777
Z:Q17yJ3JFNypA4mxhJJr0ou6CzsJVI=

C:Q1kC6ZkvhBXrxY3ucDyMmXAE2jaaM=
P:openssh-server
V:9.6_p1-r0
A:x86_64
S:371337
I:852992
T:OpenSSH server
U:https://www.openssh.com/portable.html
L:SSH-OpenSSH
o:openssh
m:Natanael Copa <ncopa@alpinelinux.org>
D:openssh-keygen openssh-server-common so:libc.musl-x86_64.so.1 so:libcrypto.so.3 so:libz.so.1
F:usr
F:usr/sbin
R:sshd
a:0:0:755
Z:Q1c0fOcrFRf0PM7YhUZ7VLBfknkpU=

"""


def _alpine(tmp_path: Path, installed: str | None) -> Path:
    root = ostrees.alpine().build(tmp_path / "root")
    if installed is not None:
        db = root / "lib/apk/db"
        db.mkdir(parents=True)
        (db / "installed").write_text(installed)
    return root


def test_apk_installed_database(tmp_path: Path) -> None:
    apps = inspected_applications(_alpine(tmp_path, APK_INSTALLED))
    assert apps == {
        "database": "apk",
        "applications": [
            {"name": "musl", "version": "1.2.4_git20230717", "release": "r4", "epoch": 0, "arch": "x86_64",
             "source": "musl", "summary": "the musl c library (libc) implementation"},
            {"name": "openssh-server", "version": "9.6_p1", "release": "r0", "epoch": 0, "arch": "x86_64",
             "source": "openssh", "summary": "OpenSSH server"},
        ],
        "notes": [],
    }  # fmt: skip


def test_apk_broken_records_and_huge_fields(tmp_path: Path) -> None:
    huge = "y" * (512 * 1024)
    broken = (
        APK_INSTALLED
        + f"P:{huge}\nV:1.0-r0\n\n"  # a name no package has
        + "P:no-version\nA:x86_64\n\n"
        + "this is not an apk line\nP:garbled\nV:1.0-r0\n\n"
        + f"P:long-summary\nV:2.0-r1\nT:{huge}\n\n"
        + "\n\n\n"
    )
    apps = inspected_applications(_alpine(tmp_path, broken))
    assert [a["name"] for a in apps["applications"]] == ["long-summary", "musl", "openssh-server"]
    assert len(apps["applications"][0]["summary"]) == 256
    assert apps["notes"] == [
        "3 records of /lib/apk/db/installed skipped: damaged (a missing name or version, or a field over 4096 bytes)"
    ]


# --- pacman ---------------------------------------------------------------------------------------------------------

BASH_DESC = """\
%NAME%
bash

%VERSION%
5.2.026-2

%BASE%
bash

%DESC%
The GNU Bourne Again shell

%URL%
https://www.gnu.org/software/bash/bash.html

%ARCH%
x86_64

%BUILDDATE%
1706738373

%INSTALLDATE%
1707000000

%PACKAGER%
Someone <someone@archlinux.org>

%SIZE%
9410877

%LICENSE%
GPL-3.0-or-later

%VALIDATION%
pgp

%DEPENDS%
readline
libreadline.so=8-64
glibc
ncurses

%PROVIDES%
sh

"""

SYSTEMD_LIBS_DESC = BASH_DESC.replace("bash\n\n%VERSION%\n5.2.026-2", "systemd-libs\n\n%VERSION%\n1:255.3-2").replace(
    "%BASE%\nbash", "%BASE%\nsystemd"
)


def _arch(tmp_path: Path, descs: dict[str, str | None]) -> Path:
    root = ostrees.arch().build(tmp_path / "root")
    local = root / "var/lib/pacman/local"
    local.mkdir(parents=True)
    (local / "ALPM_DB_VERSION").write_text("9\n")
    for entry, desc in descs.items():
        (local / entry).mkdir()
        (local / entry / "files").write_text("%FILES%\nusr/\n\n")
        if desc is not None:
            (local / entry / "desc").write_text(desc)
    return root


def test_pacman_local_database(tmp_path: Path) -> None:
    apps = inspected_applications(
        _arch(tmp_path, {"bash-5.2.026-2": BASH_DESC, "systemd-libs-1:255.3-2": SYSTEMD_LIBS_DESC})
    )
    assert apps == {
        "database": "pacman",
        "applications": [
            {"name": "bash", "version": "5.2.026", "release": "2", "epoch": 0, "arch": "x86_64", "source": "bash",
             "summary": "The GNU Bourne Again shell"},
            {"name": "systemd-libs", "version": "255.3", "release": "2", "epoch": 1, "arch": "x86_64",
             "source": "systemd", "summary": "The GNU Bourne Again shell"},
        ],
        "notes": [],
    }  # fmt: skip
    r = dom0("image", "inspect", str(_arch(tmp_path / "again", {"bash-5.2.026-2": BASH_DESC})), "--applications")
    assert "    1 packages (pacman)" in r.out.splitlines()


def test_pacman_hostile_entries(tmp_path: Path) -> None:
    huge = "z" * (300 * 1024)
    root = _arch(
        tmp_path,
        {
            "bash-5.2.026-2": BASH_DESC,
            "no-desc-1-1": None,
            "huge-desc-1-1": f"%NAME%\nhuge\n\n%VERSION%\n1-1\n\n%DESC%\n{huge}\n\n",
            "huge-name-1-1": f"%NAME%\n{'n' * 5000}\n\n%VERSION%\n1-1\n\n",
            "no-version-1-1": "%NAME%\nno-version\n\n",
        },
    )
    # A desc that is a symlink out of the guest names nothing the guest holds.
    (root / "var/lib/pacman/local/escape-1-1").mkdir()
    (root / "var/lib/pacman/local/escape-1-1/desc").symlink_to(tmp_path / "host-desc")
    (tmp_path / "host-desc").write_text(BASH_DESC.replace("bash\n\n%VERSION%", "host-only\n\n%VERSION%"))
    apps = inspected_applications(root)
    assert [a["name"] for a in apps["applications"]] == ["bash"]
    assert apps["notes"] == [
        "5 package directories of /var/lib/pacman/local skipped: damaged (a missing name or version, or a field over "
        "4096 bytes)"
    ]
