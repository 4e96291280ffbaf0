"""What a clone will do, decided before anything is written: per disk, how it is copied and where it goes.

A running guest is copied only from something frozen in time (an LV snapshot, a reflink, a new overlay), or
while paused (--pause); never as a torn copy. Swap disks, found by their signature, are made afresh.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from dom0 import storage
from dom0.clone.definition import CloneChange, DiskRewrite, clone_definition, per_guest_path
from dom0.clone.macs import fresh_macs, fresh_uuid
from dom0.clone.screen import GUEST_NAME_HINT, valid_guest_name
from dom0.errors import Dom0Error, GuestNotFound, GuestStateError, UsageError
from dom0.guest.editors import EXT_TYPES
from dom0.guest.identity import IdentityChange, check_request, plan_identity
from dom0.hypervisor import Hypervisor
from dom0.image.layout import scan
from dom0.image.osinspect import find_roots
from dom0.image.source import open_image
from dom0.model import Disk, DiskSource, Guest, GuestState


class CloneMode(StrEnum):
    """How disks are copied (`auto` picks per disk)."""

    AUTO = "auto"
    SNAPSHOT = "snapshot"  # LVs: lvcreate -s, copy from the snapshot, remove it
    REFLINK = "reflink"  # files on btrfs/XFS: shared extents, instant
    OVERLAY = "overlay"  # files: source and clone each get a qcow2 overlay on the now read-only disk
    COPY = "copy"  # a full sparse copy (needs the source stopped or paused)


class Method(StrEnum):
    """What is done to one disk."""

    REFLINK = "reflink"
    COPY = "sparse copy"
    SNAPSHOT_COPY = "LV snapshot, copy, remove snapshot"
    LV_COPY = "copy to a new LV"
    OVERLAY = "qcow2 overlay"
    SWAP = "new swap (same size, UUID, label)"
    SHARE = "shared, not copied"


@dataclass(frozen=True, slots=True)
class CloneOptions:
    """What the user asked for."""

    new_name: str
    hostname: str = ""
    address: str = ""
    gateway: str = ""
    macs: tuple[str, ...] = ()
    memory_mib: int = 0
    vcpus: int = 0
    mode: CloneMode = CloneMode.AUTO
    pause: bool = False
    offline: bool = False

    def __post_init__(self) -> None:
        # Checked where the request comes in, before the source's disks are opened: a malformed hostname is then
        # reported as such, not as whatever reading the guest runs into first.
        check_request(self.hostname, self.address, self.gateway)


@dataclass(frozen=True, slots=True)
class DiskStep:
    """One disk of the clone."""

    target: str
    method: Method
    source: str
    dest: str
    format: str
    size_bytes: int
    block: bool = False
    vg: str = ""
    lv_name: str = ""
    swap_uuid: str = ""
    swap_label: str = ""
    source_overlay: str = ""  # OVERLAY: the source's own new overlay (it stops writing to the shared base)
    chain_dirs: tuple[str, ...] = ()  # where the source's qcow2 backing chain lives (storage.Volume.chain_dirs)


@dataclass(frozen=True, slots=True)
class ClonePlan:
    """Everything the clone will do; printable with --dry-run."""

    source: Guest
    name: str
    uuid: str
    macs: tuple[str, ...]
    definition: str
    files: tuple[tuple[str, str], ...]  # per-guest files the clone gets its own of (logs, sockets)
    nvram: tuple[str, str] | None
    disks: tuple[DiskStep, ...]
    pause: bool  # pause the source while copying
    identity: IdentityChange
    edits: tuple[str, ...] = ()  # the identity edits, as planned from the source's disk (redone on the copy)
    notes: tuple[str, ...] = ()

    @property
    def copied(self) -> tuple[DiskStep, ...]:
        """Disks whose data is copied (not swap, not shared)."""
        return tuple(d for d in self.disks if d.method not in (Method.SWAP, Method.SHARE))

    @property
    def written_bytes(self) -> int:
        """The size of the disks the clone gets of its own (copies, overlays, new swap); shared ones count nothing."""
        return sum(d.size_bytes for d in self.disks if d.method is not Method.SHARE)


def _running(g: Guest) -> bool:
    return g.state.is_active and g.state is not GuestState.PAUSED


def plan_clone(hv: Hypervisor, source_ref: str, options: CloneOptions, rng: random.Random | None = None) -> ClonePlan:
    """Check everything and decide every step; Dom0Error before anything is written when the clone cannot be made."""
    rng = rng or random.SystemRandom()
    source = hv.guest(source_ref)
    _check_new_name(hv, options.new_name)
    if options.offline and source.state.is_active:
        raise GuestStateError(
            f"{source.name} is running and --offline was asked", f"`dom0 shutdown --wait {source.name}` first"
        )
    details = hv.details(source.uuid)
    running = _running(source)
    pause = options.pause and running
    steps = tuple(_disk_step(d, source, options, running and not pause) for d in details.disks)
    _check_destinations(steps)
    macs = fresh_macs(hv, options.macs, len(details.nics), rng)
    new_uuid = fresh_uuid(rng)
    change = CloneChange(
        name=options.new_name,
        uuid=new_uuid,
        macs=macs,
        disks={
            s.target: DiskRewrite(s.dest, s.block, "qcow2" if s.method is Method.OVERLAY else s.format)
            for s in steps
            if s.method is not Method.SHARE
        },
        memory_mib=options.memory_mib,
        vcpus=options.vcpus,
    )
    cloned = clone_definition(hv.editable_definition(source.uuid), change)
    identity = IdentityChange(
        hostname=options.hostname,
        address=options.address,
        gateway=options.gateway,
        macs=tuple(zip((n.mac for n in details.nics), macs, strict=True)),
    )
    notes: list[str] = []
    edits = _preview_identity(steps, identity, notes)
    if any(s.method is Method.OVERLAY for s in steps):
        notes.append(f"{source.name} will write to a new overlay; its current disk becomes the shared read-only base")
    return ClonePlan(
        source=source,
        name=options.new_name,
        uuid=new_uuid,
        macs=macs,
        definition=cloned.text,
        files=tuple(sorted(cloned.files.items())),
        nvram=cloned.nvram,
        disks=steps,
        pause=pause,
        identity=identity,
        edits=edits,
        notes=tuple(notes),
    )


def _preview_identity(steps: tuple[DiskStep, ...], change: IdentityChange, notes: list[str]) -> tuple[str, ...]:
    """The identity edits, planned from the source's root filesystem: checks them before anything is written."""
    for step in steps:
        if step.method in (Method.SHARE, Method.SWAP):
            continue
        try:
            with open_image(step.source, format=step.format, backing_dirs=step.chain_dirs) as source:
                roots = find_roots(source, scan(source))
                if roots:
                    fs, tree, system = roots[0]
                    if fs.type not in EXT_TYPES:
                        raise Dom0Error(
                            f"the guest's root filesystem is {fs.type}: dom0 edits ext2/3/4 from userspace only",
                            "clone it with virt-clone and reset its identity with virt-sysprep",
                        )
                    return tuple(str(e) for e in plan_identity(tree, system, change))
        except Dom0Error as exc:
            if "root filesystem is" in exc.message:
                raise
            notes.append(f"cannot read {step.target} to plan the identity reset: {exc.message}")
            continue
    if change.hostname or change.address:
        raise Dom0Error("no operating system found on the guest's disks: cannot set its hostname or IP")
    notes.append("no operating system found on the guest's disks: its identity inside is not reset")
    return ()


def _check_new_name(hv: Hypervisor, name: str) -> None:
    if not valid_guest_name(name):
        raise UsageError(f"{name[:80]!r} cannot be a guest name", GUEST_NAME_HINT)
    try:
        hv.guest(name)
    except GuestNotFound:
        return
    raise Dom0Error(f"a guest named {name!r} already exists", "choose another name for the clone")


def _disk_step(disk: Disk, source: Guest, options: CloneOptions, live: bool) -> DiskStep:
    """How this disk is cloned; `live` means the source keeps running while its data is read."""
    if disk.device != "disk" or disk.readonly or disk.source_kind is DiskSource.NONE:
        return DiskStep(disk.target, Method.SHARE, disk.source, disk.source, disk.format or "raw", 0)
    if disk.source_kind not in (DiskSource.FILE, DiskSource.BLOCK):
        # Sharing a writable disk between two guests would corrupt it: refuse what dom0 cannot copy.
        raise Dom0Error(
            f"{disk.target} is a {disk.source_kind} disk ({disk.source}): dom0 clones files and block devices only",
            "for a storage pool volume, give the guest the volume's path (`virsh vol-path`) or clone with virt-clone",
        )
    volume = storage.probe(Path(disk.source), disk.format)
    swap = storage.swap_identity(volume.path, format=volume.format, chain_dirs=volume.chain_dirs)
    fmt = volume.format
    if swap is not None:
        dest, vg, lv = _destination(volume, source.name, options.new_name)
        return DiskStep(
            disk.target,
            Method.SWAP,
            disk.source,
            dest,
            "raw",
            volume.size_bytes,
            volume.kind != "file",
            vg,
            lv,
            swap_uuid=swap[0],
            swap_label=swap[1],
        )
    mode = options.mode
    if volume.kind == "lv":
        if mode in (CloneMode.REFLINK, CloneMode.OVERLAY):
            raise UsageError(f"{disk.target} is an LV: --mode {mode} works on files", "use --mode snapshot or copy")
        dest, vg, lv = _destination(volume, source.name, options.new_name)
        method = Method.SNAPSHOT_COPY if (live or mode is CloneMode.SNAPSHOT) else Method.LV_COPY
        return DiskStep(disk.target, method, disk.source, dest, "raw", volume.size_bytes, True, vg, lv)
    if volume.kind != "file":
        raise Dom0Error(f"{disk.target} ({disk.source}) is a block device dom0 cannot clone (not an LV)")
    dest, _, _ = _destination(volume, source.name, options.new_name)
    if mode is CloneMode.SNAPSHOT:
        raise UsageError(
            f"{disk.target} is a file: --mode snapshot works on LVs", "use --mode reflink, overlay or copy"
        )
    if mode is CloneMode.OVERLAY:
        base = Path(disk.source)
        own = str(base.with_name(f"{base.stem}-after-{options.new_name}.qcow2"))
        target = dest if dest.endswith(".qcow2") else str(Path(dest).with_suffix(".qcow2"))
        return DiskStep(
            disk.target, Method.OVERLAY, disk.source, target, fmt, volume.size_bytes,
            source_overlay=own, chain_dirs=volume.chain_dirs,
        )  # fmt: skip
    can_reflink = storage.reflink_supported(Path(disk.source).parent)
    if mode is CloneMode.REFLINK and not can_reflink:
        raise Dom0Error(
            f"the filesystem holding {disk.source} cannot reflink",
            "reflinks need btrfs or XFS (with reflink=1); use --mode copy with --pause, or --mode overlay",
        )
    if can_reflink and mode in (CloneMode.AUTO, CloneMode.REFLINK):
        return DiskStep(
            disk.target, Method.REFLINK, disk.source, dest, fmt, volume.size_bytes, chain_dirs=volume.chain_dirs
        )
    if live:
        raise GuestStateError(
            f"{source.name} is running and {disk.target} can only be copied whole: the copy would be torn",
            "add --pause (paused while copying), --offline after a shutdown, or --mode overlay",
        )
    return DiskStep(disk.target, Method.COPY, disk.source, dest, fmt, volume.size_bytes, chain_dirs=volume.chain_dirs)


def _destination(volume: storage.Volume, old: str, new: str) -> tuple[str, str, str]:
    """Where the clone's copy of `volume` goes: beside it, with the clone's name in place of the source's."""
    if volume.kind == "lv":
        lv = volume.lv.replace(old, new) if old in volume.lv else f"{new}-{volume.lv}"
        return f"/dev/{volume.vg}/{lv}", volume.vg, lv
    return per_guest_path(str(volume.path), old, new), "", ""


def _check_destinations(steps: tuple[DiskStep, ...]) -> None:
    seen: set[str] = set()
    for s in steps:
        if s.method is Method.SHARE:
            continue
        for path in (s.dest, s.source_overlay):
            if not path:
                continue
            if path in seen or Path(path).exists() or Path(path).is_symlink():
                raise Dom0Error(f"{path} already exists: the clone would overwrite it", "choose another name")
            seen.add(path)
