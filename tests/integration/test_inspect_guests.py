"""`dom0 image inspect --all` on real QEMU guests: every guest's operating system at a glance, running or not.

Four guests of different distributions, built once for the module:
- `deb`: Debian 12 on a whole-disk ext4 image, running and writing to that filesystem (mode rootrw), so its journal
  is busy while dom0 reads the disk underneath it; its hostname inside ("web-inside") is not its guest name;
- `centos`: CentOS 5.3 on a partitioned (MBR) image, shut off;
- `alpine`: Alpine 3.19 on a qcow2 overlay on a qcow2 base (a chain), running, never adapted from Xen (its only
  login is on hvc0);
- `broken`: shut off, its disk file is gone: its row says why, and the others still show.
Each boots (or would boot) the host's Debian kernel directly, so the KERNEL column compares that kernel with the
newest one installed inside.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imagebuild
import ostrees
import pytest

from . import guestkit
from .conftest import SESSION, Dom0, virsh

MiB = 1024 * 1024


@dataclass(frozen=True)
class Lab:
    kit: guestkit.Kit
    names: dict[str, str]  # role -> guest name
    images: dict[str, Path]  # role -> the disk image it boots
    consoles: dict[str, Path]


def _tree(role: str, where: Path) -> Path:
    if role == "deb":
        tree = ostrees.debian12().build(where / "tree-deb")
        guestkit.identity_tree(tree)
        (tree / "etc/hostname").write_text("web-inside\n")
        (tree / "var/tmp").mkdir(parents=True, exist_ok=True)
        return tree
    if role == "centos":
        return ostrees.centos53().build(where / "tree-centos")
    tree = ostrees.alpine().build(where / "tree-alpine")
    # moved from Xen without adapting: a login on Xen's console only, none a KVM guest's console would show
    (tree / "etc/inittab").write_text("::sysinit:/sbin/openrc sysinit\nhvc0::respawn:/sbin/getty -L 0 hvc0 vt100\n")
    return tree


def _images(where: Path) -> dict[str, Path]:
    deb = imagebuild.mkfs("ext4", where / "deb.img", 64 * MiB, str(uuidlib.uuid4()), "root", tree=_tree("deb", where))
    centos = imagebuild.sparse(where / "centos.img", 64 * MiB)
    imagebuild.sfdisk(centos, "label: dos\nstart=2048, type=83, bootable\n")
    part = imagebuild.mkfs(
        "ext3", where / "centos-p1", 63 * MiB, str(uuidlib.uuid4()), "/", tree=_tree("centos", where)
    )
    imagebuild.place(centos, 2048 * 512, part)
    part.unlink()
    raw = imagebuild.mkfs(
        "ext4", where / "alpine-base.raw", 32 * MiB, str(uuidlib.uuid4()), "alpine", tree=_tree("alpine", where)
    )
    base = imagebuild.qcow2(raw, where / "alpine-base.qcow2")
    raw.unlink()
    alpine = imagebuild.overlay(base, where / "alpine.qcow2")
    for p in (deb, centos, base, alpine):
        p.chmod(0o666)
    for t in where.glob("tree-*"):
        shutil.rmtree(t)
    return {"deb": deb, "centos": centos, "alpine": alpine, "broken": where / "gone.img"}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    kit = guestkit.build_kit(modules=guestkit.IDENTITY_MODULES)
    where = kit.work_dir / f"inspect-{SESSION}"
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    where.chmod(0o755)
    images = _images(where)
    names = {role: f"dom0test-{SESSION}-insp{role}" for role in images}
    uuids = {role: str(uuidlib.uuid4()) for role in images}
    consoles = {}
    modes = {"deb": "rootrw", "alpine": "idle"}
    try:
        for role, image in images.items():
            gdir = where / role
            gdir.mkdir()
            gdir.chmod(0o755)
            xml = guestkit.domain_xml(
                name=names[role], uuid=uuids[role], kit=kit, guest_dir=gdir, disks=[image], mode=modes.get(role, "idle")
            )
            if image.suffix == ".qcow2":
                xml = xml.replace("<driver name='qemu' type='raw'/>", "<driver name='qemu' type='qcow2'/>")
            (gdir / "domain.xml").write_text(xml)
            virsh("define", str(gdir / "domain.xml"))
            consoles[role] = gdir / "console.log"
        for role in modes:
            virsh("start", names[role])
        yield Lab(kit, names, images, consoles)
    finally:
        listed = virsh("list", "--all", "--uuid", check=False).split()
        for u in uuids.values():  # only the exact guests this module defined
            if u in listed:
                virsh("destroy", u, check=False)
                virsh("undefine", u, check=False)
        shutil.rmtree(where, ignore_errors=True)


def _wait_booted(lab: Lab, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    for role, text in (("deb", "dom0test rootrw mounted"), ("alpine", guestkit.READY)):
        while not guestkit.console_has(lab.consoles[role], text):
            if time.monotonic() > deadline:
                pytest.fail(f"{lab.names[role]} did not print {text!r} within {timeout:g} s")
            time.sleep(0.5)


def _rows(out: str, lab: Lab) -> dict[str, dict[str, Any]]:
    reports = json.loads(out)
    by_guest = {r["guest"]: r for r in reports if r.get("guest")}
    return {role: by_guest[name] for role, name in lab.names.items()}


def test_all_guests_one_row_each_with_their_facts(lab: Lab, dom0: Dom0) -> None:
    _wait_booted(lab)
    r = dom0("image", "inspect", "--all", "--json", check=False)
    assert r.returncode == 1, r.stdout + r.stderr  # one guest's disk is unreadable: said, after every row
    rows = _rows(r.stdout, lab)

    deb = rows["deb"]
    assert deb["state"] == "running"
    assert deb["error"] is None
    assert (deb["row"]["distro"], deb["row"]["version"]) == ("debian", "12")
    assert deb["row"]["packages"] == "apt"
    assert deb["row"]["kernel"] == "6.1.0-10-amd64"  # the newest installed inside
    assert deb["row"]["boots"] == lab.kit.kernel.name.removeprefix("vmlinuz-")  # what libvirt hands it
    assert deb["row"]["hostname"] == "web-inside"

    centos = rows["centos"]
    assert centos["state"] == "shutoff"
    assert centos["error"] is None
    assert (centos["row"]["distro"], centos["row"]["version"]) == ("centos", "5.3")
    assert centos["row"]["packages"] == "yum"
    assert centos["row"]["kernel"] == "2.6.18-128.el5xen"
    assert centos["row"]["hostname"] == "centos5.localdomain"

    alpine = rows["alpine"]
    assert alpine["state"] == "running"
    assert alpine["error"] is None
    assert (alpine["row"]["distro"], alpine["row"]["version"]) == ("alpine", "3.19.1")
    assert alpine["row"]["packages"] == "apk"
    assert alpine["row"]["hostname"] == "alpine-guest"

    broken = rows["broken"]
    assert broken["state"] == "shutoff"
    assert "gone.img" in broken["error"]

    # Both run on KVM: Debian has a login on tty1, the unadapted Alpine only on Xen's hvc0.
    assert deb["row"]["console"] == "yes"
    assert alpine["row"]["console"].startswith("no"), alpine["row"]
    assert "hvc0" in alpine["row"]["console"]
    # The table says the same to a person: a row per guest, the unreadable one with its reason.
    table = dom0("image", "inspect", *lab.names.values(), check=False)
    assert table.returncode == 1
    print(table.stdout, table.stderr)
    print(dom0("image", "inspect", lab.names["deb"]).stdout)
    print(dom0("list", "--long", lab.names["deb"]).stdout)
    lines = table.stdout.splitlines()
    for role, name in lab.names.items():
        row = next((line for line in lines if line.startswith(name)), None)
        assert row is not None, f"no row for {name}:\n{table.stdout}"
        if role == "deb":
            assert "web-inside (differs)" in row
            assert "Debian 12" in row
            assert "running" in row
            assert "web-inside" in row
        if role == "centos":
            assert "CentOS" in row
            assert "5.3" in row
    assert f"{lab.names['broken']}: not read: disk vda: {lab.images['broken']}: no such file" in lines
    # The host hands the Debian guest a kernel it does not have inside (nor its modules): said, with the fix.
    boots = lab.kit.kernel.name.removeprefix("vmlinuz-")
    assert any(
        line.startswith(
            f"{lab.names['deb']}: boots {boots}, which is not installed inside; the newest there is 6.1.0-10"
        )
        for line in lines
    ), table.stdout


def test_running_guest_is_read_as_it_is_and_said_so(lab: Lab, dom0: Dom0) -> None:
    _wait_booted(lab)
    r = dom0("image", "inspect", lab.names["deb"], "--json")
    doc = json.loads(r.stdout)
    report = doc[0] if isinstance(doc, list) else doc
    text = json.dumps(report)
    # The guest writes to its mounted ext4 all the time: dom0 says its reading may miss what is not written back.
    assert "while running" in text or "while the guest runs" in text, text
    assert virsh("domstate", lab.names["deb"]).strip() == "running"  # read under it, never paused or stopped


def test_a_guest_name_and_an_image_path_in_one_call(lab: Lab, dom0: Dom0) -> None:
    r = dom0("image", "inspect", lab.names["centos"], str(lab.images["alpine"]), "--json")
    reports = json.loads(r.stdout)
    assert len(reports) == 2
    assert reports[0]["guest"] == lab.names["centos"]
    assert reports[0]["row"]["distro"] == "centos"
    assert reports[1]["guest"] is None
    assert reports[1]["row"]["distro"] == "alpine"
    assert reports[1]["target"] == str(lab.images["alpine"])


def test_list_long_shows_the_os_line(lab: Lab, dom0: Dom0) -> None:
    out = dom0("list", "--long", lab.names["centos"]).stdout
    os_line = next((line for line in out.splitlines() if line.strip().startswith("os ")), None)
    assert os_line is not None, out
    assert "CentOS" in os_line
    assert "5.3" in os_line
    assert "centos5.localdomain" in os_line
    doc = json.loads(dom0("list", "--long", "--json", lab.names["centos"]).stdout)
    assert doc[0]["os"]["distro"] == "centos"
