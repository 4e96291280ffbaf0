"""What TARGET names for the image verbs: an image file, a block device (an LV) or a guest, turned into its disks.

`image adapt` and `image hints` write, so they refuse a guest that runs; `image inspect` only reads, so it reads a
running guest's disks as they are (read-only, and it says so). Guests are looked up through the hypervisor here, in
the calling process: a libvirt connection is not fork-safe, so what a pool of image readers gets is plain data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dom0.errors import Dom0Error, GuestNotFound, HypervisorUnavailable

if TYPE_CHECKING:
    from dom0.cli.session import ImageOptions
    from dom0.hypervisor import Hypervisor
    from dom0.model import Guest, GuestDetails, GuestState

__all__ = ["DiskRef", "GuestFacts", "TargetImage", "guest_target", "hypervisor_target", "resolve_target"]


@dataclass(frozen=True, slots=True)
class DiskRef:
    """One disk to look at: its host path, its format (raw or qcow2), and the guest's name for it ("vda")."""

    path: str
    format: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class GuestFacts:
    """The guest behind a target, as its definition says: `hypervisor` is the adapt target its definition means
    (xen-pv, xen-pvh, xen-hvm, kvm) and `kernel` the host file it boots directly ("" when it boots from its disk)."""

    name: str
    uuid: str
    state: GuestState
    hypervisor: str
    kernel: str = ""


@dataclass(frozen=True, slots=True)
class TargetImage:
    """What TARGET named: in words, and the disks it stands for."""

    ref: str
    description: str
    disks: tuple[DiskRef, ...]
    notes: tuple[str, ...] = ()
    backing_dirs: tuple[str, ...] = ()  # where its qcow2 bases may be read from (--backing-dir)
    guest: GuestFacts | None = None


def _format_of(kind: str) -> str:
    return "qcow2" if "qcow2" in kind else "raw"


def hypervisor_target(details: GuestDetails) -> str:
    """The adapt target a definition means: Xen's PV ("linux"/"xen"), PVH and HVM guests, and KVM/QEMU.

    libvirt's test driver stands in for a KVM host in tests and benchmarks, whatever its <os><type> says.
    """
    if details.hypervisor_type == "xen":
        return {"linux": "xen-pv", "xen": "xen-pv", "xenpvh": "xen-pvh"}.get(details.os_type, "xen-hvm")
    return "kvm"


def guest_target(
    hypervisor: Hypervisor, guest: Guest, ref: str, *, live: bool = False, backing_dirs: tuple[str, ...] = ()
) -> TargetImage:
    """The disks of `guest` (named `ref` on the command line).

    `live` False (adapt): a guest that runs or is paused is refused, since editing its disks under it would corrupt
    them, and its read-only disks are left out. `live` True (inspect): its disks are read as they are, read-only.
    """
    from dom0.model import DiskSource, GuestState  # model costs a path-only `image inspect` its start-up time

    if not live and guest.state is not GuestState.SHUTOFF:
        raise Dom0Error(
            f"{guest.name} is {guest.state}: shut it down first (adapting a live guest's disks would corrupt them)",
            f"dom0 shutdown --wait {guest.name}",
        )
    details = hypervisor.details(guest.uuid)
    disks: list[DiskRef] = []
    notes: list[str] = []
    for d in details.disks:
        if d.device != "disk":
            continue
        if d.source_kind not in (DiskSource.FILE, DiskSource.BLOCK, DiskSource.VOLUME) or not d.source:
            notes.append(f"disk {d.target} ({d.source_kind} {d.source}) not read: it is not a local file")
            continue
        if d.readonly and not live:
            notes.append(f"disk {d.target} not edited: it is read-only")
            continue
        disks.append(DiskRef(d.source, "qcow2" if d.format == "qcow2" else "raw", d.target))
    facts = GuestFacts(
        guest.name,
        guest.uuid,
        guest.state,
        hypervisor_target(details),
        details.boot.kernel if details.boot.kind == "kernel" else "",
    )
    if not disks:
        raise Dom0Error(f"{guest.name} has no local disk dom0 can read", "give the path of its image instead")
    names = ", ".join(d.name for d in disks)
    state = "shut off" if guest.state is GuestState.SHUTOFF else str(guest.state)
    return TargetImage(
        ref, f"guest {guest.name} ({state}), disks {names}", tuple(disks), tuple(notes), backing_dirs, facts
    )


def resolve_target(
    ref: str, *, hv: Callable[[], Hypervisor], image_options: ImageOptions | None = None, live: bool = False
) -> TargetImage:
    """The disks TARGET names: an image or device path, else a guest's disks (see guest_target for `live`).

    A path wins over a guest of the same name (a note says so).
    """
    from dom0.image.source import open_image

    options = image_options or {"format": None, "backing_dirs": ()}
    backing = tuple(map(str, options["backing_dirs"]))
    path = Path(ref)
    if path.exists() or path.is_symlink():
        with open_image(path, **options) as source:
            kind = source.kind
        notes: list[str] = []
        if "/" not in ref:  # a guest name never has a slash: only a bare name can be both
            with contextlib.suppress(Dom0Error):
                guest = hv().guest(ref)
                done, do = ("inspected", "inspect") if live else ("adapted", "adapt")
                notes.append(
                    f"{ref} is both a file here and a guest ({guest.name}): the file is {done}; "
                    f"give the guest's UUID to {do} the guest"
                )
        disk = DiskRef(str(path), _format_of(kind))
        return TargetImage(ref, f"{ref} ({kind})", (disk,), tuple(notes), backing)
    if "/" in ref:
        raise Dom0Error(f"{ref}: no such image file or block device", "check the path (a guest's name has no '/')")
    try:
        hypervisor = hv()
        guest = hypervisor.guest(ref)
    except HypervisorUnavailable as exc:
        raise Dom0Error(
            f"{ref}: no such image file, and no hypervisor answered to look for a guest of that name ({exc.message})",
            "give the path of an image or block device, or the -c URI of the guest's hypervisor",
        ) from exc
    except GuestNotFound as exc:
        raise Dom0Error(
            f"{ref} is neither an image file nor a guest", "give an image, a block device (an LV) or a guest name"
        ) from exc
    return guest_target(hypervisor, guest, ref, live=live, backing_dirs=backing)
