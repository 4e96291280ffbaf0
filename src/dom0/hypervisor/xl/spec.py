"""The disk and vif spec strings of xl.cfg (xl-disk-configuration(5), xl-network-configuration(5)).

Both directions: a spec string to dom0's Disk/Nic, and a Disk/Nic back to a spec in the key=value form,
keeping the parameters dom0 does not model (backendtype, script, rate, ...) from the entry it replaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dom0.errors import UsageError
from dom0.model import Disk, DiskSource, Nic

DISK_HINT = (
    "a disk spec looks like 'format=raw, vdev=xvda, access=rw, target=/dev/vg0/guest'; see xl-disk-configuration(5)"
)
VIF_HINT = "a vif spec looks like 'mac=00:16:3e:12:34:56,bridge=xenbr0'; see xl-network-configuration(5)"

_FORMATS = ("raw", "qcow", "qcow2", "vhd", "qed", "empty")
_ACCESS = {"": "", "r": "ro", "ro": "ro", "w": "rw", "rw": "rw"}
_NAMED = (
    "format",
    "vdev",
    "access",
    "devtype",
    "backend",
    "backendtype",
    "script",
    "specification",
    "grant_usage",
    "colo-host",
    "colo-port",
    "colo-export",
    "active-disk",
    "hidden-disk",
)
_FLAGS = ("cdrom", "direct-io-safe", "discard", "no-discard", "trusted", "untrusted", "colo")
# Prefixes xend needed in front of the target; xl strips them (tap:aio:/x is two of them).
_FORMAT_PREFIX = re.compile(r"(raw|qcow2?|vhd):")
_SCRIPT_PREFIX = re.compile(r"(iscsi|e?nbd|drbd):")
_IGNORED_PREFIX = re.compile(r"(tapdisk|tap2?|aio|ioemu|file|phy):")
_UNKNOWN_PREFIX = re.compile(r"[a-z][a-z0-9]*:(?=[^a-z0-9]|[a-z0-9]+[^a-z0-9:])")
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


def _disk_error(spec: str, message: str) -> UsageError:
    return UsageError(f"disk spec {spec!r}: {message}", DISK_HINT)


@dataclass(frozen=True, slots=True)
class DiskSpec:
    """A parsed disk spec: the parameters dom0 models, and the others in their order (flags have value None)."""

    target: str = ""
    format: str = ""
    vdev: str = ""
    access: str = ""
    devtype: str = ""
    script: str = ""
    backendtype: str = ""
    phy: bool = False  # written with xend's phy: prefix: the target is a block device
    others: tuple[tuple[str, str | None], ...] = ()

    def to_disk(self) -> Disk:
        """The Disk this spec gives the guest."""
        cdrom = self.devtype == "cdrom"
        target = self.target
        if target and not target.startswith("/") and not self.script:
            target = "/dev/" + target  # as xl does for relative paths
        if not target:
            kind = DiskSource.NONE
        elif self.script:
            kind = DiskSource.NETWORK
        elif self.phy or self.backendtype == "phy" or target.startswith("/dev/"):
            kind = DiskSource.BLOCK
        else:
            kind = DiskSource.FILE
        return Disk(
            target=self.vdev,
            source_kind=kind,
            source=target,
            device="cdrom" if cdrom else "disk",
            bus=_bus(self.vdev),
            format=self.format or "raw",
            readonly=self.access == "ro" or (cdrom and not self.access),
        )


def _bus(vdev: str) -> str:
    for prefix, bus in (("xvd", "xen"), ("hd", "ide"), ("sd", "scsi")):
        if vdev.startswith(prefix):
            return bus
    return ""


def _items(spec: str) -> list[str]:
    """Split at commas, except that `target=` takes the rest of the spec, commas and all."""
    items: list[str] = []
    pos = 0
    while pos < len(spec):
        while pos < len(spec) and spec[pos] in " \t":
            pos += 1
        if spec.startswith("target=", pos):
            items.append(spec[pos:])
            break
        comma = spec.find(",", pos)
        if comma < 0:
            if pos < len(spec):
                items.append(spec[pos:])
            break
        items.append(spec[pos:comma])
        pos = comma + 1
    return items


def parse_disk(spec: str) -> DiskSpec:
    """Parse one disk spec, positional ('phy:/dev/vg/lv,xvda,w') or key=value form. Raises UsageError."""
    fields: dict[str, str] = {}
    others: list[tuple[str, str | None]] = []
    positional: list[str] = []
    deprecated = phy = False
    for raw in _items(spec):
        item = raw
        key, eq, value = item.partition("=")
        if eq:
            if key == "target":
                fields["target"] = value
            elif key in _NAMED:
                if key in fields:
                    raise _disk_error(spec, f"{key} is given twice")
                fields[key] = value
                if key not in ("format", "vdev", "access", "devtype", "script", "backendtype"):
                    others.append((key, value))
            else:
                raise _disk_error(spec, f"unknown parameter {key!r}")
            continue
        if item in _FLAGS:
            if item == "cdrom":
                fields["devtype"] = "cdrom"
            else:
                others.append((item, None))
            continue
        if not positional and "target" not in fields:
            while m := (_FORMAT_PREFIX.match(item) or _SCRIPT_PREFIX.match(item) or _IGNORED_PREFIX.match(item)):
                deprecated = True
                word = m.group(1)
                if _FORMAT_PREFIX.match(item):
                    fields["format"] = word
                elif _SCRIPT_PREFIX.match(item):
                    fields["script"] = "block-" + word
                phy = phy or word == "phy"
                item = item[m.end() :]
            if _UNKNOWN_PREFIX.match(item):
                raise _disk_error(spec, f"unknown prefix {item.split(':')[0]!r}:")
        positional.append(item)
    _assign_positional(spec, positional, fields, deprecated)
    access = fields.get("access", "")
    if access not in _ACCESS:
        raise _disk_error(spec, f"access {access!r} is not r, ro, w or rw")
    if fields.get("format", "") not in ("", *_FORMATS):
        raise _disk_error(spec, f"format {fields['format']!r} is not one of {', '.join(_FORMATS)}")
    if fields.get("devtype", "") not in ("", "cdrom", "disk"):
        raise _disk_error(spec, f"devtype {fields['devtype']!r} is not cdrom")
    if not fields.get("vdev"):
        raise _disk_error(spec, "no vdev (the device name the guest sees, e.g. xvda)")
    return DiskSpec(
        target=fields.get("target", ""),
        format=fields.get("format", ""),
        vdev=fields["vdev"],
        access=_ACCESS[access],
        devtype=fields.get("devtype", ""),
        script=fields.get("script", ""),
        backendtype=fields.get("backendtype", ""),
        phy=phy,
        others=tuple(others),
    )


def _assign_positional(spec: str, positional: list[str], fields: dict[str, str], deprecated: bool) -> None:
    order = ["target", "format", "vdev", "access"]
    for given in positional:
        item = given
        while order and order[0] in fields:
            order.pop(0)
        if order and order[0] == "format" and (deprecated or item not in ("", *_FORMATS)):
            # xend's syntax has no format column: target,vdev[:devtype],access
            order.pop(0)
        if not order:
            raise _disk_error(spec, f"too many positional parameters at {item!r}")
        name = order.pop(0)
        if name == "vdev" and ":" in item:
            item, _, devtype = item.partition(":")
            if devtype not in ("cdrom", "disk"):
                raise _disk_error(spec, f"unknown device type {devtype!r} after the vdev")
            fields["devtype"] = devtype
        if item or name == "target":
            fields[name] = item


def disk_spec(disk: Disk, previous: str = "") -> str:
    """A Disk as a key=value disk spec, keeping the unmodelled parameters of the spec it replaces."""
    kept: list[str] = []
    if previous:
        try:
            old = parse_disk(previous)
        except UsageError:
            old = DiskSpec()
        if old.to_disk().source_kind == disk.source_kind:
            kept += [f"backendtype={old.backendtype}"] if old.backendtype else []
            kept += [f"script={old.script}"] if old.script else []
        kept += [k if v is None else f"{k}={v}" for k, v in old.others]
    fmt = {"": "raw", "aio": "raw"}.get(disk.format, disk.format)
    if fmt not in _FORMATS:
        raise UsageError(f"disk {disk.target}: xl cannot use the {fmt!r} format", f"xl reads {', '.join(_FORMATS)}")
    if not disk.target or "," in disk.target or "=" in disk.target:
        raise UsageError(f"disk {disk.target!r} has no usable device name", "give the disk a vdev such as xvdb")
    parts = [f"format={fmt}", f"vdev={disk.target}", "access=ro" if disk.readonly else "access=rw"]
    if disk.device == "cdrom":
        parts.append("devtype=cdrom")
    parts += kept
    if disk.source:
        parts.append(f"target={disk.source}")
    return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class VifSpec:
    """A parsed vif spec: its key=value pairs in order (a bare word has value None)."""

    pairs: tuple[tuple[str, str | None], ...]

    def get(self, key: str) -> str:
        """The value of `key`, '' when absent."""
        return next((v or "" for k, v in self.pairs if k == key), "")

    def to_nic(self) -> Nic:
        """The Nic this spec gives the guest (MAC in lower case, as xl and libvirt show it)."""
        return Nic(
            mac=self.get("mac").lower(),
            kind="bridge",
            source=self.get("bridge"),
            model=self.get("model"),
            target=self.get("vifname"),
        )


def parse_vif(spec: str) -> VifSpec:
    """Parse one vif spec ('mac=..,bridge=xenbr0,model=..,vifname=..,ip=..'). Raises UsageError."""
    pairs: list[tuple[str, str | None]] = []
    for piece in spec.split(","):
        item = piece.strip()
        if not item:
            continue
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not key:
            raise UsageError(f"vif spec {spec!r}: {item!r} has no key", VIF_HINT)
        pairs.append((key, value if eq else None))
    mac = next((v for k, v in pairs if k == "mac"), None)
    if mac is not None and not _MAC.fullmatch(mac):
        raise UsageError(f"vif spec {spec!r}: {mac!r} is not a MAC address", VIF_HINT)
    return VifSpec(tuple(pairs))


def vif_spec(nic: Nic, previous: str = "") -> str:
    """A Nic as a vif spec, keeping the other parameters (ip, rate, script, ...) of the spec it replaces."""
    mine = ("mac", "bridge", "model", "vifname")
    try:
        kept = [p for p in parse_vif(previous).pairs if p[0] not in mine] if previous else []
    except UsageError:
        kept = []
    for value in (nic.mac, nic.source, nic.model, nic.target):
        if "," in value or "=" in value:
            raise UsageError(f"vif value {value!r} cannot hold ',' or '='", "xl vif specs are comma-separated")
    parts = [f"{k}={v}" for k, v in zip(mine, (nic.mac, nic.source, nic.model, nic.target), strict=True) if v]
    parts += [k if v is None else f"{k}={v}" for k, v in kept]
    return ",".join(parts)
