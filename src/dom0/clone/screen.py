"""What an imported guest definition may name on this host: its disks where import writes them, and nothing else.

An export directory is untrusted: whoever wrote it chose every path in its definition. Left as they are, a disk of
`/etc/shadow`, a `<filesystem>` of `/`, a kernel, firmware or serial log path, an emulator or a QEMU command-line
argument would hand host files (or host programs) to the new guest. So before import defines anything, every disk
the manifest lists loses its source (import gives it the disk it writes), run-time and per-host details are dropped
for the host's defaults (emulator, security labels, log and socket paths, NVRAM contents), and whatever else names a
host path or host device is refused, listed by what it is. Pure functions on the definition's text.
"""

from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

from dom0.errors import Dom0Error, UsageError
from dom0.hypervisor.definition import DefinitionFormat
from dom0.hypervisor.xl import config as xlcfg
from dom0.hypervisor.xl import spec as xlspec

# A name that is safe as a file name, an LV name and an xl.cfg name: what `clone` and `import` accept.
GUEST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
GUEST_NAME_HINT = "use letters, digits, '-', '_' and '.' (not first), at most 100"
# A guest-side disk name (vda, xvda, hdc, sdb, xvdaa, ...): it becomes part of the new disk's file or LV name.
DISK_TARGET = re.compile(r"[a-z]{1,8}[a-z0-9]{0,8}")

# Firmware the host ships: a loader or NVRAM template there is the host's own, whoever named it.
_FIRMWARE = re.compile(r"/usr/(share/(OVMF|AAVMF|qemu|seabios|edk2|ovmf)|lib/xen(-[0-9.]+)?/boot)/[^/]+(/[^/]+)*")
_RANDOM = ("/dev/random", "/dev/urandom", "/dev/hwrng")
_CHAR_HOST_TYPES = ("file", "dev", "pipe")  # serial, console, channel, parallel backed by a host file or device
_ALWAYS_REFUSED = ("filesystem", "hostdev", "smartcard", "shmem")
_PATH_ATTRS = ("file", "dir", "path", "socket", "evdev", "template")
_LISTED_DISK_KEEP = ("driver", "target", "address", "boot", "serial", "wwn", "blockio", "iotune", "geometry", "alias")
_SHOWN = 6  # refused items named in the one-line error


# Asked of a kernel, initrd or device tree path a definition names: whether this host's administrator vouched for it
# (`dom0 import --boot-dir DIR`). Screening itself reads no host file.
BootFileCheck = Callable[[str], bool]


def no_boot_files(path: str) -> bool:
    """No direct-boot file is vouched for: every kernel or initrd path a definition names is refused."""
    return False


def valid_guest_name(name: str) -> bool:
    """Whether `name` may name a new guest (and so its disks' files and LVs)."""
    return bool(GUEST_NAME.fullmatch(name))


@dataclass(frozen=True, slots=True)
class Screened:
    """The definition import may define, and what was changed on the way (for the plan)."""

    text: str
    notes: tuple[str, ...]


class _Findings:
    def __init__(self) -> None:
        self.refused: list[str] = []
        self.notes: list[str] = []

    def refuse(self, what: str) -> None:
        if what not in self.refused:
            self.refused.append(what)

    def note(self, what: str) -> None:
        if what not in self.notes:
            self.notes.append(what)

    def check(self, source: str) -> None:
        if not self.refused:
            return
        shown = "; ".join(self.refused[:_SHOWN])
        more = f" and {len(self.refused) - _SHOWN} more" if len(self.refused) > _SHOWN else ""
        raise Dom0Error(
            f"{source} names host files or devices the export does not carry: {shown}{more}",
            "remove them from the guest's definition on the source host and export it again; a kernel or initrd "
            "this host has in the same place is kept with --boot-dir DIR",
        )


def _firmware(path: str) -> bool:
    return bool(_FIRMWARE.fullmatch(path)) and posixpath.normpath(path) == path and "/../" not in path


def screen(
    text: str, fmt: DefinitionFormat, targets: Collection[str], source: str, boot_file: BootFileCheck = no_boot_files
) -> Screened:
    """The definition, in format `fmt`, screened for import: `screen_xml` or `screen_xl`."""
    if fmt is DefinitionFormat.XL_CFG:
        return screen_xl(text, targets, source, boot_file)
    return screen_xml(text, targets, source, boot_file)


def screen_xml(
    xml: str,
    targets: Collection[str],
    source: str = "the export's definition",
    boot_file: BootFileCheck = no_boot_files,
) -> Screened:
    """The definition with the manifest's disks (by target) bare of sources, ready for clone_xml to give them theirs.

    Dom0Error naming everything refused; the notes say what was dropped for the host's defaults.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise Dom0Error(f"{source} is not valid XML ({exc})", "copy the export again; `dom0 export` wrote it") from exc
    if root.tag != "domain":
        raise Dom0Error(
            f"{source} is not a libvirt domain definition (its root is <{_tag(root)}>)", "copy the export again"
        )
    found = _Findings()
    _drop_everywhere(root, "seclabel", found, "security labels dropped: this host's defaults apply")
    for node in root.findall("resource"):
        root.remove(node)
        found.note("resource partition dropped: this host's default applies")
    kept = _os(root, found, boot_file)
    devices = root.find("devices")
    if devices is not None:
        _devices(devices, set(targets), found)
    for parent, node in _walk(root):
        if node in kept:
            continue
        if node.tag.startswith("{"):
            found.refuse(f"<{_tag(node)}> (hypervisor pass-through settings)")
            parent.remove(node)
            continue
        for attr, value in node.attrib.items():
            if value.startswith("/") or (attr in _PATH_ATTRS and value):
                found.refuse(f"<{_tag(node)} {attr}={value!r}>")
        text = (node.text or "").strip()
        if text.startswith("/"):
            found.refuse(f"<{_tag(node)}> {text!r}")
    found.check(source)
    return Screened(ET.tostring(root, encoding="unicode") + "\n", tuple(found.notes))


def _tag(node: ET.Element) -> str:
    return node.tag.rpartition("}")[2][:40]


def _walk(root: ET.Element) -> Iterator[tuple[ET.Element, ET.Element]]:
    """(parent, child) over the document, outside <metadata> (libvirt stores it and acts on none of it); the
    paths import accepts (host firmware, the host's random sources) are not visited."""
    for child in list(root):
        if child.tag == "metadata":
            continue
        yield root, child
        if child.tag == "loader" or (child.tag == "nvram" and not (child.text or "").strip()):
            continue
        if child.tag == "backend" and (child.text or "").strip() in _RANDOM:
            continue
        yield from _walk(child)


def _drop_everywhere(root: ET.Element, tag: str, found: _Findings, note: str) -> None:
    for parent in list(root.iter()):
        for child in parent.findall(tag):
            parent.remove(child)
            found.note(note)


def _os(root: ET.Element, found: _Findings, boot_file: BootFileCheck) -> list[ET.Element]:
    """Screen <os> and the bootloader; the kernel, initrd and dtb nodes kept because the administrator vouched for
    them (`boot_file`)."""
    kept: list[ET.Element] = []
    for parent in list(root.iter()):
        for emulator in parent.findall("emulator"):
            found.note(f"emulator {(emulator.text or '').strip()!r} dropped: this host's default is used")
            parent.remove(emulator)
    os_node = root.find("os")
    if os_node is not None:
        for tag in ("kernel", "initrd", "dtb"):
            for node in os_node.findall(tag):
                path = (node.text or "").strip()
                if path and boot_file(path):
                    kept.append(node)
                    found.note(f"{tag} {path!r} kept: this host's file, in a --boot-dir")
                elif path:
                    found.refuse(f"{tag} {path!r}")
        for loader in os_node.findall("loader"):
            path = (loader.text or "").strip()
            if path and not _firmware(path):
                found.refuse(f"loader {path!r}")
        for nvram in os_node.findall("nvram"):
            if (nvram.text or "").strip():
                found.note(f"NVRAM {(nvram.text or '').strip()!r} not carried: a fresh one from the host's template")
                nvram.text = None
            template = nvram.get("template", "")
            if template and not _firmware(template):
                found.refuse(f"NVRAM template {template!r}")
            if not nvram.attrib:
                os_node.remove(nvram)
    for bootloader in root.findall("bootloader"):
        program = (bootloader.text or "").strip()
        if posixpath.basename(program) == "pygrub":
            bootloader.text = "pygrub"
            if program != "pygrub":
                found.note(f"bootloader {program!r}: this host's pygrub")
        elif program:
            found.refuse(f"bootloader {program!r}")
    for args in root.findall("bootloader_args"):
        root.remove(args)
        found.note(f"bootloader arguments {(args.text or '').strip()!r} dropped")
    return kept


def _source_of(node: ET.Element) -> str:
    source = node.find("source")
    if source is None:
        return ""
    return next((v for k, v in source.attrib.items() if k in ("file", "dev", "dir", "name", "path", "volume")), "")


def _devices(devices: ET.Element, targets: set[str], found: _Findings) -> None:
    for disk in devices.findall("disk"):
        target_node = disk.find("target")
        target = target_node.get("dev", "") if target_node is not None else ""
        where = f"disk {target or '(no target)'} ({disk.get('type', 'file')} {_source_of(disk)!r})"
        if target in targets:
            if disk.get("device", "disk") != "disk":
                found.refuse(where + f" is a {disk.get('device')}, the manifest says a disk")
            for child in list(disk):
                if child.tag not in _LISTED_DISK_KEEP:
                    disk.remove(child)  # its source, mirror, backing chain: import gives it the disk it writes
            targets.discard(target)
        elif disk.get("device") in ("cdrom", "floppy"):
            if disk.find("source") is not None:
                found.note(f"{disk.get('device')} {target}: medium {_source_of(disk)!r} ejected (not in the export)")
            for child in list(disk):
                if child.tag not in (*_LISTED_DISK_KEEP, "readonly"):
                    disk.remove(child)
            disk.set("type", "file")
        else:
            found.refuse(where + " is not in the export")
    for target in sorted(targets):
        found.refuse(f"disk {target} of the manifest is not in the definition")
    for tag in _ALWAYS_REFUSED:
        for node in devices.findall(tag):
            found.refuse(f"{tag} {node.get('type', '')} {_source_of(node)!r}".replace("  ", " "))
    for tpm in devices.findall("tpm"):
        if tpm.get("model") == "passthrough" or any(b.get("type") == "passthrough" for b in tpm.findall("backend")):
            found.refuse("tpm passthrough of the host's TPM")
    for node in devices.findall("input"):
        if node.get("type") in ("passthrough", "evdev"):
            found.refuse(f"input {node.get('type')} of a host input device")
    for nic in devices.findall("interface"):
        if nic.get("type") == "hostdev":
            found.refuse("interface of type hostdev (a host PCI device)")
        for script in (*nic.findall("script"), *nic.findall("downscript")):
            found.refuse(f"interface {script.tag} {script.get('path', '')!r} (a host program)")
    for tag in ("serial", "console", "channel", "parallel"):
        for dev in devices.findall(tag):
            for log in dev.findall("log"):
                # Kept without its path: import gives it one of this host's (clone/definition.place_logs).
                found.note(f"{tag} log {log.attrib.pop('file', '')!r}: a log file of this host's instead")
            kind = dev.get("type", "pty")
            if kind in _CHAR_HOST_TYPES:
                found.refuse(f"{tag} of type {kind} ({_source_of(dev)!r})")
            elif kind == "unix":
                for source in dev.findall("source"):
                    if source.attrib.pop("path", ""):
                        found.note(f"{tag} socket path dropped: libvirt makes its own")
    for graphics in devices.findall("graphics"):
        for node in (graphics, *graphics.findall("listen")):
            if node.attrib.pop("socket", ""):
                found.note("graphics socket path dropped: libvirt makes its own")


# -- xl.cfg ---------------------------------------------------------------------------------------------------

# Settings that name no host file, device or program; anything else in an exported xl.cfg is refused.
_XL_SAFE = frozenset(
    (
        *("name", "uuid", "type", "builder", "memory", "maxmem", "vcpus", "maxvcpus", "cpus", "cpu_weight", "cap"),
        *("on_poweroff", "on_reboot", "on_crash", "on_watchdog", "on_soft_reset", "extra", "cmdline", "root"),
        *("boot", "acpi", "apic", "pae", "hap", "nestedhvm", "viridian", "localtime", "rtc_timeoffset", "vnc"),
        *("vncdisplay", "vncunused", "vnclisten", "sdl", "stdvga", "videoram", "vga", "usb", "keymap", "timer_mode"),
        *("hpet", "tsc_mode", "shadow_memory", "xen_platform_pci", "pvh", "max_grant_frames", "max_maptrack_frames"),
        *("nographic", "vif", "disk", "vkb", "vfb", "serial", "usbdevice", "bootloader", "bootloader_args"),
        "device_model_version",
    )
)
_HOST_PATH = re.compile(r"(^|[=:,\s])/")


# The xl.cfg settings naming a file for direct kernel boot, kept only when the administrator vouches for it.
_XL_BOOT_FILES = frozenset(("kernel", "ramdisk", "device_tree"))


def screen_xl(
    text: str, targets: Collection[str], source: str = "the export's xl.cfg", boot_file: BootFileCheck = no_boot_files
) -> Screened:
    """The xl.cfg with only settings that name nothing on the host; Dom0Error naming what is refused."""
    try:
        doc = xlcfg.parse(text, source)
        values = doc.values()
    except UsageError as exc:
        raise Dom0Error(exc.message, exc.hint) from exc
    found = _Findings()
    kept: set[str] = set()
    for key, value in values.items():
        if key in _XL_BOOT_FILES and isinstance(value, str) and boot_file(value):
            kept.add(key)
            found.note(f"{key} {value!r} kept: this host's file, in a --boot-dir")
        elif key not in _XL_SAFE:
            found.refuse(f"setting {key}")
    left = set(targets)
    for spec in _xl_strings(values.get("disk")):
        try:
            disk = xlspec.parse_disk(spec)
        except UsageError as exc:
            raise Dom0Error(f"{source}: disk {spec!r}: {exc.message}", exc.hint) from exc
        target = disk.to_disk().target
        if disk.script:
            found.refuse(f"disk {target} script {disk.script!r} (a host program)")
        if target in left:
            left.discard(target)
        elif disk.to_disk().source:
            found.refuse(f"disk {target} ({disk.to_disk().source!r}) is not in the export")
    for target in sorted(left):
        found.refuse(f"disk {target} of the manifest is not in the definition")
    for spec in _xl_strings(values.get("vif")):
        for item in spec.split(","):
            key = item.partition("=")[0].strip()
            if key in ("script", "backend"):
                found.refuse(f"vif {item.strip()!r}")
    bootloader = str(values.get("bootloader") or "")
    if bootloader and posixpath.basename(bootloader) != "pygrub":
        found.refuse(f"bootloader {bootloader!r}")
    elif bootloader != "pygrub" and bootloader:
        doc.set("bootloader", "pygrub")
        found.note(f"bootloader {bootloader!r}: this host's pygrub")
    if doc.remove("bootloader_args"):
        found.note("bootloader arguments dropped")
    for key in ("serial", "usbdevice"):
        for value in _xl_strings(values.get(key)):
            if value not in ("pty", "tablet", "mouse", "keyboard", "none", ""):
                found.refuse(f"{key} {value!r}")
    for key, setting in values.items():
        if key in ("disk", "bootloader", "bootloader_args") or key in kept:
            continue
        for item in _xl_strings(setting):
            if _HOST_PATH.search(item):
                found.refuse(f"{key} {item!r}")
    found.check(source)
    return Screened(doc.render(), tuple(found.notes))


def _xl_strings(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, tuple):
        return tuple(s for v in value for s in _xl_strings(v))
    return (str(value),)
