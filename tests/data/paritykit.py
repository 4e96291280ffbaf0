"""dom0's `image inspect` against virt-inspector on the same real Debian 12 image, field by field.

Shared by bench/inspector_parity_bench.py and tests/integration/test_inspect_packages.py: the image recipe (a
debootstrapped root packed into a partitioned 2 GiB sparse disk, /boot on partition 1 and / on partition 2, by the
UUIDs its fstab names), virt-inspector run once per image content (its XML cached by a hash of the image's data, as
one run costs 30-60 s of a helper VM under TCG), its XML read with the standard library, and the comparison.

virt-inspector names devices as its appliance sees them (/dev/sda2); dom0 says "partition 2": the comparison maps
one to the other. On Debian, libguestfs's product_name is /etc/debian_version as it stands ("12.15"), which dom0
reports as point_release (its product_name is os-release's PRETTY_NAME): those two are compared. virt-inspector
leaves out an application's element when the database has no value (no <epoch> for epoch 0, no <release> for a
Debian native version, no <source_package> when dpkg's status has no Source:): absent is "" or 0 on both sides.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imagebuild
import ostrees

from dom0 import run

MiB = 1024 * 1024
GiB = 1024 * MiB
IMAGE_SIZE = 2 * GiB
BOOT_START = 2048  # sectors
BOOT_MIB = 256
ROOT_START = BOOT_START + BOOT_MIB * 2048
CACHE = Path("/var/tmp/dom0-tests/inspect-parity")
VIRT_INSPECTOR_TIMEOUT = 900.0
# The fields of one operating system both tools report, in the order they are printed.
OS_FIELDS = (
    "root",
    "distro",
    "major_version",
    "minor_version",
    "arch",
    "hostname",
    "package_format",
    "package_management",
    "osinfo",
    "product_name",
)
APP_FIELDS = ("epoch", "version", "release", "arch", "source", "summary")


def pack_debian12(tree: Path, out: Path) -> Path:
    """`tree` (a Debian root whose fstab names ostrees.DEBOOT_*_UUID) as a 2 GiB sparse MBR disk: partition 1 is
    /boot (the tree's own /boot), partition 2 the root. Nothing is mounted: mkfs.ext4 -d only reads the tree."""
    work = out.parent / f".{out.name}.parts"
    work.mkdir(parents=True, exist_ok=True)
    try:
        boot = tree / "boot"
        img = imagebuild.sparse(out, IMAGE_SIZE)
        imagebuild.sfdisk(
            img,
            f"label: dos\nstart={BOOT_START}, size={BOOT_MIB}M, type=83, bootable\nstart={ROOT_START}, type=83\n",
        )
        p1 = imagebuild.mkfs("ext4", work / "p1", BOOT_MIB * MiB, ostrees.DEBOOT_BOOT_UUID, "boot", tree=boot)
        root_size = IMAGE_SIZE - ROOT_START * imagebuild.SECTOR
        p2 = imagebuild.mkfs("ext4", work / "p2", root_size, ostrees.DEBOOT_ROOT_UUID, "root", tree=tree)
        imagebuild.place(img, BOOT_START * imagebuild.SECTOR, p1)
        imagebuild.place(img, ROOT_START * imagebuild.SECTOR, p2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def tree_inputs(tree: Path) -> list[bytes]:
    """What a packed image of a debootstrapped root depends on: its build marker and the files inspection reads."""
    marker = tree.with_name(tree.name + ".complete")
    found = [marker.read_bytes() if marker.exists() else b""]
    for rel in ("var/lib/dpkg/status", "etc/hostname", "etc/fstab", "etc/debian_version"):
        found.append((tree / rel).read_bytes())
    return found


def cached_image(name: str, inputs: list[bytes], build: Callable[[Path], object], cache: Path = CACHE) -> Path:
    """CACHE/NAME-KEY.img, built by `build(path)` once per set of inputs (and this recipe) and then reused: mkfs.ext4
    writes a random hash seed, so a rebuilt image has other bytes and would miss virt-inspector's cached answer.
    Images of the same name built from other inputs are removed."""
    key = hashlib.sha256(f"{IMAGE_SIZE} {BOOT_START} {BOOT_MIB} {ROOT_START}".encode())
    for chunk in inputs:
        key.update(hashlib.sha256(chunk).digest())
    cache.mkdir(parents=True, exist_ok=True)
    img = cache / f"{name}-{key.hexdigest()[:16]}.img"
    if not img.exists():
        partial = img.with_suffix(".partial")
        build(partial)
        os.replace(partial, img)
        for old in cache.glob(f"{name}-*.img"):
            if old != img:
                old.unlink()
    return img


def data_hash(path: Path) -> str:
    """SHA-256 of an image's size and data regions (holes skipped: a sparse 2 GiB disk hashes in about a second)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        fd = fh.fileno()
        size = os.fstat(fd).st_size
        digest.update(str(size).encode())
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            digest.update(f"@{start}".encode())
            fh.seek(start)
            left = end - start
            while left > 0:
                chunk = fh.read(min(left, 4 * MiB))
                if not chunk:
                    break
                digest.update(chunk)
                left -= len(chunk)
            pos = end
    return digest.hexdigest()


@dataclass(frozen=True)
class InspectorRun:
    """virt-inspector's XML for an image and the seconds it took (cached: from the run that made the cache)."""

    xml: str | None
    seconds: float | None
    note: str  # how it ran ("ran", "cached from ..."), or why it could not run


def virt_inspector(img: Path, cache: Path = CACHE) -> InspectorRun:
    """virt-inspector -a IMG under TCG (no KVM here), or its cached answer for an image with the same data."""
    if shutil.which("virt-inspector") is None:
        return InspectorRun(None, None, "virt-inspector is not installed (apt-get install libguestfs-tools)")
    cache.mkdir(parents=True, exist_ok=True)
    cached = cache / f"virt-inspector-{data_hash(img)[:24]}.json"
    if cached.is_file():
        saved = json.loads(cached.read_text())
        return InspectorRun(saved["xml"], saved["seconds"], f"cached from a run of {saved['when']}")
    cmd = ["env", "LIBGUESTFS_BACKEND=direct", "LIBGUESTFS_BACKEND_SETTINGS=force_tcg", "virt-inspector", "-a"]
    start = time.perf_counter()
    try:
        proc = run.run([*cmd, str(img)], check=False, timeout=VIRT_INSPECTOR_TIMEOUT)
    except Exception as exc:  # a timeout: the appliance did not come up
        return InspectorRun(None, None, f"virt-inspector did not finish: {str(exc).splitlines()[0]}")
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        return InspectorRun(None, None, f"virt-inspector cannot run here: {err[-1] if err else proc.returncode}")
    xml = proc.stdout.decode()
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    tmp = cached.with_suffix(".partial")
    tmp.write_text(json.dumps({"xml": xml, "seconds": seconds, "when": when, "image": str(img)}))
    os.replace(tmp, cached)
    return InspectorRun(xml, seconds, "ran once (LIBGUESTFS_BACKEND_SETTINGS=force_tcg)")


@dataclass(frozen=True)
class Facts:
    """One operating system as both tools can be compared: plain fields, mountpoints, filesystems, applications."""

    fields: dict[str, Any]
    mountpoints: dict[str, str]  # mountpoint -> "partition N"
    filesystems: dict[str, tuple[str, str]]  # "partition N" -> (type, uuid)
    apps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (name, arch) -> APP_FIELDS


_SD = re.compile(r"/dev/[sv]da(\d+)\Z")


def _device(dev: str) -> str:
    """virt-inspector's /dev/sda2 as dom0 says it ("partition 2")."""
    m = _SD.match(dev)
    return f"partition {m.group(1)}" if m else dev


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.strip().lstrip("-").isdigit() else None


def from_xml(xml: str) -> Facts:
    """The first <operatingsystem> of virt-inspector's XML."""
    oses = ET.fromstring(xml).findall("operatingsystem")
    if not oses:
        raise ValueError("virt-inspector found no operating system")
    o = oses[0]
    fields: dict[str, Any] = {f: o.findtext(f) for f in OS_FIELDS}
    fields["root"] = _device(fields["root"] or "")
    for f in ("major_version", "minor_version"):
        fields[f] = _int(fields[f])
    mounts = {m.text or "": _device(m.get("dev", "")) for m in o.iterfind("mountpoints/mountpoint")}
    fss = {
        _device(f.get("dev", "")): (f.findtext("type") or "", f.findtext("uuid") or "")
        for f in o.iterfind("filesystems/filesystem")
    }
    apps: dict[tuple[str, str], dict[str, Any]] = {}
    for a in o.iterfind("applications/application"):
        name, arch = a.findtext("name") or "", a.findtext("arch") or ""
        apps[(name, arch)] = {
            "epoch": _int(a.findtext("epoch")) or 0,
            "version": a.findtext("version") or "",
            "release": a.findtext("release") or "",
            "arch": arch,
            "source": a.findtext("source_package") or "",
            "summary": a.findtext("summary") or "",
        }
    return Facts(fields, mounts, fss, apps)


def from_dom0(doc: dict[str, Any]) -> Facts:
    """The first operating system of `dom0 image inspect IMG --json --applications` (a key it lacks is None)."""
    systems = doc.get("operating_systems") or []
    if not systems:
        raise ValueError("dom0 found no operating system")
    s = systems[0]
    fields = {f: s.get(f) for f in OS_FIELDS}
    if s.get("distro") == "debian":
        fields["product_name"] = s.get("point_release")
    # virt-inspector lists the filesystems of the system's own mountpoints (and swap); dom0 lists the disk's.
    fss = {fs["location"]: (fs["type"] or "", fs["uuid"] or "") for fs in doc.get("filesystems", [])}
    apps: dict[tuple[str, str], dict[str, Any]] = {}
    for a in (s.get("applications") or {}).get("applications", []):
        apps[(a["name"], a["arch"])] = {f: a.get(f, "" if f != "epoch" else 0) for f in APP_FIELDS}
    return Facts(fields, dict(s.get("mountpoints") or {}), fss, apps)


def differences(vi: Facts, dom0: Facts) -> list[str]:
    """Each field where dom0 and virt-inspector disagree, one line each (empty: they agree)."""
    out = [
        f"{f}: virt-inspector {vi.fields[f]!r}, dom0 {dom0.fields.get(f)!r}"
        for f in OS_FIELDS
        if vi.fields[f] != dom0.fields.get(f)
    ]
    if vi.mountpoints != dom0.mountpoints:
        out.append(f"mountpoints: virt-inspector {vi.mountpoints}, dom0 {dom0.mountpoints}")
    for dev, (kind, uuid) in sorted(vi.filesystems.items()):
        if kind in ("", "unknown"):
            continue  # what virt-inspector could not name (a partition table's own entries)
        if dom0.filesystems.get(dev) != (kind, uuid):
            out.append(f"filesystem {dev}: virt-inspector {kind} {uuid}, dom0 {dom0.filesystems.get(dev)}")
    only_vi = sorted(set(vi.apps) - set(dom0.apps))
    only_dom0 = sorted(set(dom0.apps) - set(vi.apps))
    if only_vi:
        out.append(f"applications only virt-inspector lists ({len(only_vi)}): {_names(only_vi)}")
    if only_dom0:
        out.append(f"applications only dom0 lists ({len(only_dom0)}): {_names(only_dom0)}")
    for f in APP_FIELDS:
        differ = [k for k in sorted(set(vi.apps) & set(dom0.apps)) if vi.apps[k][f] != dom0.apps[k][f]]
        if differ:
            first = differ[0]
            out.append(
                f"application {f} differs for {len(differ)} packages, e.g. {first[0]}: "
                f"virt-inspector {vi.apps[first][f]!r}, dom0 {dom0.apps[first][f]!r}"
            )
    return out


def _names(keys: list[tuple[str, str]], most: int = 8) -> str:
    shown = ", ".join(f"{n} ({a})" if a else n for n, a in keys[:most])
    return shown + (f" and {len(keys) - most} more" if len(keys) > most else "")
