"""Xen virtual block device numbers (xen docs/misc/vbd-interface.txt) to device names and back."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dom0.errors import UsageError

XVD_MAJOR = 202
SD_MAJOR = 8
HD_MAJORS = (3, 22)  # hda/hdb on the primary IDE controller, hdc/hdd on the secondary
EXTENDED_FLAG = 1 << 28

_IDE_POSITION = ("primary master", "primary slave", "secondary master", "secondary slave")


@dataclass(frozen=True, slots=True)
class Vbd:
    """A decoded VBD: the number, the Linux device node and the name the guest sees."""

    number: int
    name: str
    scheme: str  # "xvd", "xvd-extended", "hd" or "sd"
    disk: int
    partition: int

    @property
    def major(self) -> int:
        """The device node's major number (0 for extended xvd numbers, which have no fixed node)."""
        return 0 if self.scheme == "xvd-extended" else self.number >> 8

    @property
    def minor(self) -> int:
        """The device node's minor number."""
        return 0 if self.scheme == "xvd-extended" else self.number & 0xFF

    def describe(self) -> str:
        """A sentence for `dom0 explain`: what the number is made of and what it means."""
        if self.scheme == "xvd-extended":
            parts = f"extended xvd: 1<<28 | disk {self.disk}<<8 | partition {self.partition}"
            return f"VBD {self.number} ({parts}) = {self.name}"
        node = f"{self.major}:{self.minor} (hex {self.major:x}:{self.minor:x})"
        kind = {
            "xvd": "Xen virtual disk",
            "sd": "SCSI disk",
            "hd": "IDE disk",
        }[self.scheme]
        where = f" ({_IDE_POSITION[self.disk]})" if self.scheme == "hd" else ""
        part = f", partition {self.partition}" if self.partition else ", whole disk"
        return f"VBD {self.number} = device {node} = {self.name}: {kind} {self.disk}{where}{part}"


def disk_letters(index: int) -> str:
    """0 -> 'a', 25 -> 'z', 26 -> 'aa': the letters Linux gives the disk with that index."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return letters


def disk_index(letters: str) -> int:
    """The inverse of disk_letters: 'a' -> 0, 'aa' -> 26."""
    index = 0
    for ch in letters:
        index = index * 26 + (ord(ch) - ord("a") + 1)
    return index - 1


def _name(prefix: str, disk: int, partition: int) -> str:
    return f"{prefix}{disk_letters(disk)}{partition or ''}"


def decode(number: int) -> Vbd:
    """Decode a VBD number; raise UsageError for numbers the interface does not define."""
    if number < 0:
        raise UsageError(f"{number} is not a VBD number", "VBD numbers are positive")
    if number & EXTENDED_FLAG and number < (2 << 28):
        disk, partition = (number >> 8) & 0xFFFFF, number & 0xFF
        return Vbd(number, _name("xvd", disk, partition), "xvd-extended", disk, partition)
    major, minor = number >> 8, number & 0xFF
    if major == XVD_MAJOR:
        disk, partition = minor >> 4, minor & 0xF
        return Vbd(number, _name("xvd", disk, partition), "xvd", disk, partition)
    if major == SD_MAJOR:
        disk, partition = minor >> 4, minor & 0xF
        return Vbd(number, _name("sd", disk, partition), "sd", disk, partition)
    if major in HD_MAJORS:
        disk = (minor >> 6) + (2 if major == 22 else 0)
        partition = minor & 0x3F
        return Vbd(number, _name("hd", disk, partition), "hd", disk, partition)
    raise UsageError(
        f"{number} is not a VBD number Xen defines (major {major}, minor {minor})",
        "Xen VBDs use majors 202 (xvd), 8 (sd), 3 and 22 (hd), or the extended 1<<28 scheme",
    )


_NAME = re.compile(r"^(?:/dev/)?(xvd|sd|hd)([a-z]+)(\d*)$")


def encode(name: str) -> Vbd:
    """The VBD number for a guest device name such as 'hdd', 'xvda1' or '/dev/xvdaa'."""
    m = _NAME.match(name.strip())
    if not m:
        raise UsageError(f"{name!r} is not a Xen disk name", "use a name like xvda, xvdb1, sdc or hdd")
    prefix, letters, part = m.group(1), m.group(2), m.group(3)
    disk, partition = disk_index(letters), int(part or 0)
    if prefix == "hd":
        if disk > 3 or partition > 63:
            raise UsageError(f"{name}: Xen has hda..hdd with partitions up to 63", "use xvd names for more disks")
        major = 3 if disk < 2 else 22
        number = major << 8 | (disk % 2) << 6 | partition
        return Vbd(number, name.removeprefix("/dev/"), "hd", disk, partition)
    if prefix == "sd":
        if disk > 15 or partition > 15:
            raise UsageError(f"{name}: Xen has sda..sdp with partitions up to 15", "use xvd names for more disks")
        return Vbd(SD_MAJOR << 8 | disk << 4 | partition, name.removeprefix("/dev/"), "sd", disk, partition)
    if disk <= 15 and partition <= 15:
        return Vbd(XVD_MAJOR << 8 | disk << 4 | partition, name.removeprefix("/dev/"), "xvd", disk, partition)
    if disk >= 1 << 20 or partition > 255:
        raise UsageError(f"{name}: beyond the extended xvd scheme", "disks up to 2^20, partitions up to 255")
    return Vbd(EXTENDED_FLAG | disk << 8 | partition, name.removeprefix("/dev/"), "xvd-extended", disk, partition)
