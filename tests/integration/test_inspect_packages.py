"""`dom0 image inspect --applications` and `--diff` on real Debian 12 disks: the labs' debootstrapped root packed
as it is, and a copy with extra packages installed for real by `dpkg --root` (acl, attr and pv from the host's apt
cache when it has them, plus a small .deb built here with an epoch and a Source: field), both packed into
partitioned 2 GiB sparse images (tests/data/paritykit.py, the bench's recipe). Every new per-OS field is checked
against what the tree itself says, the packages against what dpkg-deb and dpkg-query say, and, where libguestfs
can start, the whole report against virt-inspector's (slow: its helper VM boots under TCG, about a minute, once
per image content; the XML is cached by the image's data hash).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import ostrees
import paritykit
import pytest
from unitkit import dom0

from dom0 import run

# Real packages whose dependencies (libacl1, libattr1, libc6) debootstrap's minbase already holds, at the
# versions bookworm's minbase has; used when the host's apt cache holds them (no network needed).
CACHED_DEBS = ("acl_2.3.1-3_amd64.deb", "attr_1%3a2.5.1-4_amd64.deb", "pv_1.6.20-1_amd64.deb")
APT_ARCHIVES = Path("/var/cache/apt/archives")
BUILT = {"Package": "dom0-parity-extra", "Version": "2:1.0.3-4", "Architecture": "all", "Source": "dom0-parity"}


@dataclass(frozen=True)
class Images:
    plain: Path  # the debootstrapped root as it is
    extra: Path  # the same with the extra packages installed
    point_release: str  # the root's /etc/debian_version
    installed: list[str]  # what dpkg-query listed as installed in the copy `extra` was packed from
    debs: dict[str, dict[str, str]]  # package -> its control fields (dpkg-deb -f)


def _missing() -> str:
    if os.geteuid() != 0:
        return "installing packages into a copy of the root with dpkg --root needs root"
    for tool in ("dpkg", "dpkg-deb", "dpkg-query", "sfdisk", "mkfs.ext4"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return ""


def _built_deb(where: Path) -> Path:
    """A small real .deb (dpkg-deb --build) with an epoch, a Debian revision and a Source: field."""
    pkg = where / "extra-pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "usr/share/doc/dom0-parity-extra").mkdir(parents=True)
    (pkg / "usr/share/doc/dom0-parity-extra/README").write_text("installed by dom0's package tests\n")
    (pkg / "DEBIAN/control").write_text(
        "".join(f"{k}: {v}\n" for k, v in BUILT.items())
        + "Maintainer: dom0 tests <tests@example.org>\nDescription: extra package of the parity tests\n"
        " Built by tests/integration/test_inspect_packages.py with dpkg-deb --build.\n"
    )
    deb = where / "dom0-parity-extra.deb"
    run.run(["dpkg-deb", "--root-owner-group", "--build", str(pkg), str(deb)], timeout=60)
    return deb


def _control(deb: Path) -> dict[str, str]:
    fields = ("Package", "Version", "Architecture", "Source", "Description")
    out = run.output(["dpkg-deb", "-f", str(deb), *fields], timeout=30)
    found: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key in fields and key not in found:
            found[key] = value.strip()
    return found


def _pack_with_packages(tree: Path, debs: list[Path], out: Path) -> None:
    """A copy of `tree` with `debs` installed by dpkg --root, packed at `out`; dpkg-query's list of what is
    installed in it beside it (NAME.installed), since the copy is gone when the cached image is reused."""
    copy = out.parent / f".{out.name}.root"
    shutil.rmtree(copy, ignore_errors=True)
    try:
        run.run(["cp", "-a", str(tree), str(copy)], timeout=300)  # the cache itself is never changed
        run.run(["dpkg", "--root", str(copy), "--log=/dev/null", "-i", *map(str, debs)], timeout=180)
        listed = run.output(
            ["dpkg-query", f"--admindir={copy}/var/lib/dpkg", "-W", "-f", "${db:Status-Abbrev} ${Package}\n"]
        )
        names = sorted(line.split()[1] for line in listed.splitlines() if line.startswith("ii "))
        out.with_suffix(".installed").write_text("\n".join(names) + "\n")
        paritykit.pack_debian12(copy, out)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    """Both images, built once per set of inputs under paritykit.CACHE (about 15 s) and reused after."""
    why = _missing()
    if why:
        pytest.skip(why)
    tree = ostrees.debootstrap_tree()
    if tree is None:
        pytest.skip("no debootstrapped Debian 12 root (needs root, debootstrap and a Debian mirror once)")
    base = tmp_path_factory.mktemp("packages")
    debs = [APT_ARCHIVES / name for name in CACHED_DEBS if (APT_ARCHIVES / name).is_file()]
    debs.append(_built_deb(base))
    controls = {c["Package"]: c for c in map(_control, debs)}
    inputs = paritykit.tree_inputs(tree)
    plain = paritykit.cached_image("plain-debian12", inputs, lambda out: paritykit.pack_debian12(tree, out))
    recipe = [Path(__file__).read_bytes(), *(json.dumps(c, sort_keys=True).encode() for c in controls.values())]
    extra = paritykit.cached_image(
        "extra-debian12", [*inputs, *recipe], lambda out: _pack_with_packages(tree, debs, out)
    )
    listed = extra.with_suffix(".installed").read_text().split()
    point = (tree / "etc/debian_version").read_text().strip()
    return Images(plain, extra, point, listed, controls)


def _split(version: str) -> tuple[int, str, str]:
    """Debian's [epoch:]upstream[-revision], as virt-inspector splits it."""
    epoch, sep, rest = version.partition(":")
    if not sep:
        epoch, rest = "0", version
    upstream, sep, revision = rest.rpartition("-")
    return (int(epoch), upstream, revision) if sep else (int(epoch), rest, "")


def test_every_new_field_of_the_real_image(images: Images) -> None:
    done = dom0("image", "inspect", str(images.extra), "--json", "--applications")
    assert done.rc == 0, done.err
    (system,) = json.loads(done.out)["operating_systems"]
    point = images.point_release  # "12.15": what the tree itself says
    major, minor = (int(x) for x in point.split(".")[:2])
    assert (system["root"], system["distro"], system["arch"]) == ("partition 2", "debian", "x86_64")
    assert (system["major_version"], system["minor_version"], system["point_release"]) == (major, minor, point)
    assert (system["osinfo"], system["package_format"], system["package_management"]) == ("debian12", "deb", "apt")
    assert system["mountpoints"] == {"/": "partition 2", "/boot": "partition 1"}
    apps = system["applications"]
    assert apps["database"] == "dpkg"
    installed = images.installed  # what dpkg itself says is installed in the copy
    assert sorted(a["name"] for a in apps["applications"]) == installed
    by_name = {a["name"]: a for a in apps["applications"]}
    for name, control in images.debs.items():
        epoch, version, release = _split(control["Version"])
        assert by_name[name] == {
            "name": name,
            "version": version,
            "release": release,
            "epoch": epoch,
            "arch": control["Architecture"],
            "source": control.get("Source", "").split(" ")[0],
            "summary": control["Description"],
        }
    assert by_name["dom0-parity-extra"]["epoch"] == 2
    text = dom0("image", "inspect", str(images.extra), "--applications")
    assert text.rc == 0, text.err
    assert f"    {len(installed)} packages (dpkg)" in text.out.splitlines()


def test_diff_against_the_image_without_them(images: Images) -> None:
    done = dom0("image", "inspect", "--diff", str(images.plain), str(images.extra))
    assert done.rc == 0, done.err
    lines = done.out.splitlines()
    n = len(images.debs)
    assert lines[0].startswith(f"{images.plain} -> {images.extra}: {n} added, 0 removed, 0 changed, ")
    assert sorted(line for line in lines if line.startswith(("+", "-", "~"))) == sorted(
        f"+ {name} {c['Version']}" for name, c in images.debs.items()
    )
    doc = json.loads(dom0("image", "inspect", "--diff", str(images.extra), str(images.plain), "--json").out)
    assert sorted(p["name"] for p in doc["packages"]["removed"]) == sorted(images.debs)
    assert doc["packages"]["added"] == []
    assert doc["packages"]["changed"] == []
    assert doc["facts"] == []


@pytest.mark.slow
def test_same_report_as_virt_inspector(images: Images) -> None:
    seen = paritykit.virt_inspector(images.extra)
    if seen.xml is None:
        pytest.skip(seen.note)
    done = dom0("image", "inspect", str(images.extra), "--json", "--applications")
    assert done.rc == 0, done.err
    vi = paritykit.from_xml(seen.xml)
    assert set(images.debs) <= {name for name, _ in vi.apps}
    assert paritykit.differences(vi, paritykit.from_dom0(json.loads(done.out))) == []
