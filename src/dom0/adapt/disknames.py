"""Disk names: a guest moved between IDE (hdX), SCSI/SATA (sdX), Xen (xvdX) and virtio (vdX) disks finds its
filesystems under another name. /etc/fstab, /etc/crypttab, grub's device.map, root= and resume= on the kernel
command line and initramfs-tools' resume file are rewritten: to UUID= (or LABEL=) where the filesystem at that
place has one, which no later move changes again, otherwise to the target's name with the same letter and number.

A kernel booted without an initrd cannot look a UUID up, so its root= gets the device name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dom0.image.probe import Filesystem

if TYPE_CHECKING:
    from dom0.adapt.files import Draft

FSTAB = "/etc/fstab"
CRYPTTAB = "/etc/crypttab"
DEVICE_MAP = ("/boot/grub/device.map", "/boot/grub2/device.map")
INITRAMFS_RESUME = "/etc/initramfs-tools/conf.d/resume"

_DISK = re.compile(r"^/dev/(hd|sd|xvd|vd)([a-z]{1,2})(\d*)$")
_BY_PATH = re.compile(r"^/dev/disk/by-(?:id|path)/\S+-part(\d+)$")
_LEADING = re.compile(r"^(\s*)(\S+)(.*)$", re.DOTALL)


@dataclass(frozen=True)
class DiskMap:
    """How the guest's device names become the target's: `prefix` (xvd, vd; "" for emulated disks, whose names
    the guest's kernel keeps: then only UUID=/LABEL= replace them) and the image's filesystems."""

    prefix: str
    filesystems: tuple[Filesystem, ...]

    def _at(self, letters: str, number: str) -> Filesystem | None:
        # The image is the guest's first disk: its partitions are (x)(v|s|h)da1.., a disk without a table is "a".
        if letters != "a":
            return None
        location = f"partition {number}" if number else "whole disk"
        return next((fs for fs in self.filesystems if fs.location == location), None)

    def rename(self, device: str, *, by_id: bool = True) -> tuple[str, str] | None:
        """(new name, how) for a device the target names otherwise; None when it needs no change."""
        m = _DISK.match(device)
        if m is None:
            p = _BY_PATH.match(device)
            # by-id/by-path names carry the old controller's model or bus: only a UUID or label survives the move.
            fs = self._at("a", p.group(1)) if p and by_id else None
            spec = _stable(fs) if fs else None
            return (spec, f"{device} -> {spec}") if spec else None
        kind, letters, number = m.groups()
        if kind == self.prefix:
            return None
        fs = self._at(letters, number) if by_id else None
        spec = _stable(fs) if fs else None
        if spec:
            return spec, f"{device} -> {spec} ({fs.location if fs else ''})"
        if not self.prefix:
            return None  # emulated disks: the guest's kernel keeps naming them as it did
        new = f"/dev/{self.prefix}{letters}{number}"
        return new, f"{device} -> {new}"

    def kernel_args(self, args: list[str], *, has_initrd: bool) -> tuple[list[str], list[str]]:
        """root= and resume= renamed; by UUID/LABEL only when an initrd is there to resolve them."""
        out, why = [], []
        for arg in args:
            key, eq, value = arg.partition("=")
            renamed = self.rename(value, by_id=has_initrd) if eq and key in ("root", "resume") else None
            if renamed:
                out.append(f"{key}={renamed[0]}")
                why.append(f"{key}={renamed[1]}")
            else:
                out.append(arg)
        return out, why

    def plan(self, draft: Draft) -> None:
        """fstab, crypttab, device.map and initramfs-tools' resume."""
        self._table(draft, FSTAB, 0, 0o644)
        self._table(draft, CRYPTTAB, 1, 0o600)
        for path in DEVICE_MAP:
            self._table(draft, path, 1, 0o644, by_id=False)  # grub's BIOS disks are whole disks by name
        text = draft.read(INITRAMFS_RESUME)
        if text is not None:
            lines = text.splitlines(keepends=True)
            whys = []
            for i, line in enumerate(lines):
                m = re.match(r"^(\s*RESUME=)(\S+)(.*)$", line, re.DOTALL)
                renamed = self.rename(m.group(2)) if m else None
                if m and renamed:
                    lines[i] = m.group(1) + renamed[0] + m.group(3)
                    whys.append(renamed[1])
            if whys:
                draft.update(INITRAMFS_RESUME, "".join(lines), "disk names: " + ", ".join(whys))

    def _table(self, draft: Draft, path: str, column: int, mode: int, *, by_id: bool = True) -> None:
        text = draft.read(path)
        if text is None:
            return
        lines = text.splitlines(keepends=True)
        whys = []
        for i, line in enumerate(lines):
            if line.lstrip().startswith("#") or not line.strip():
                continue
            parts = re.split(r"(\s+)", line)
            # parts alternates words and spaces; a leading space gives an empty first word.
            words = [j for j, p in enumerate(parts) if p and not p.isspace()]
            if len(words) <= column:
                continue
            at = words[column]
            renamed = self.rename(parts[at], by_id=by_id)
            if renamed:
                parts[at] = renamed[0]
                lines[i] = "".join(parts)
                whys.append(renamed[1])
        if whys:
            draft.update(path, "".join(lines), "disk names: " + ", ".join(whys), mode)


def _stable(fs: Filesystem) -> str | None:
    if fs.uuid:
        return f"UUID={fs.uuid}"
    if fs.label and not any(c.isspace() or c in "\"'\\#" for c in fs.label):
        return f"LABEL={fs.label}"
    return None
