"""A copy's definition: the source's libvirt XML or xl.cfg with a new identity, new disks and new per-guest paths.

Which format a definition is in, dom0.hypervisor.definition alone tells, for clone, export, import and create
alike. Pure functions on the definition's text, no libvirt import. Everything a guest owns on the host (disk
sources, console logs, channel sockets, NVRAM) gets a path of the clone's own; MACs and the UUID are new; what
libvirt fills in at run time (interface target names, aliases, a fixed graphics port) is dropped so libvirt chooses
afresh.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from dom0.errors import Dom0Error
from dom0.hypervisor.definition import DefinitionFormat, definition_format
from dom0.hypervisor.libvirt import domxml
from dom0.hypervisor.xl import config as xlcfg
from dom0.model import DiskSource


@dataclass(frozen=True, slots=True)
class DiskRewrite:
    """Where one of the clone's disks lives: a file or a block device (an LV), in which format."""

    path: str
    block: bool = False
    format: str = "raw"


@dataclass(frozen=True, slots=True)
class CloneChange:
    """Everything that differs between the source's definition and the clone's."""

    name: str
    uuid: str
    macs: tuple[str, ...]  # one per <interface>, in document order
    disks: Mapping[str, DiskRewrite]  # by target dev (vda, xvda...); disks not named here are shared as they are
    memory_mib: int = 0  # 0: keep
    vcpus: int = 0  # 0: keep


@dataclass(frozen=True, slots=True)
class ClonedDefinition:
    """The clone's definition (in the source's format), and the per-guest files it names instead of the source's
    (old path -> new path)."""

    text: str
    files: dict[str, str] = field(default_factory=dict)
    nvram: tuple[str, str] | None = None  # firmware variables: copied, unlike logs and sockets


def per_guest_path(path: str, old_name: str, new_name: str) -> str:
    """The clone's own version of a file the source owns, in the same directory (which exists): the source's name
    in the file name swapped for the clone's, or the clone's name put in front."""
    p = PurePosixPath(path)
    if old_name and old_name in p.name:
        return str(p.with_name(p.name.replace(old_name, new_name)))
    return str(p.with_name(f"{new_name}-{p.name}"))


def place_logs(xml: str, path: str) -> str:
    """The definition with every serial, console, channel or parallel <log> that names no file logging to `path`
    (import strips an export's log paths: where a guest's console is written on this host is this host's choice)."""
    root = ET.fromstring(xml)
    devices = root.find("devices")
    placed = False
    for tag in _FILE_SOURCES:
        for dev in devices.findall(tag) if devices is not None else ():
            for log in dev.findall("log"):
                if not log.get("file"):
                    log.set("file", path)
                    placed = True
    return ET.tostring(root, encoding="unicode") + "\n" if placed else xml


def clone_xml(xml: str, change: CloneChange) -> ClonedDefinition:
    """The clone's domain XML."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise Dom0Error(f"the source's definition is not valid XML: {exc}") from exc
    old_name = (root.findtext("name") or "").strip()
    _set_text(root, "name", change.name)
    _set_text(root, "uuid", change.uuid)
    if change.memory_mib:
        for tag in ("memory", "currentMemory"):
            node = root.find(tag)
            if node is not None:
                node.text, node.attrib = str(change.memory_mib * 1024), {"unit": "KiB"}
    if change.vcpus:
        vcpu = root.find("vcpu")
        if vcpu is not None:
            vcpu.text = str(change.vcpus)
            vcpu.attrib.pop("current", None)
    for tag in ("title", "description"):
        node = root.find(tag)
        if node is not None:
            root.remove(node)
    files: dict[str, str] = {}
    nvram = None
    devices = root.find("devices")
    if devices is not None:
        _disks(devices, change)
        _interfaces(devices, change.macs)
        nvram = _files(root, devices, old_name, change.name, files)
        for graphics in devices.findall("graphics"):
            if graphics.get("autoport") == "no" or graphics.get("port", "-1") not in ("-1", ""):
                graphics.attrib.pop("port", None)
                graphics.attrib.pop("tlsPort", None)
                graphics.set("autoport", "yes")
    _drop_children(root, "alias")  # run-time device names; a running transient guest's XML carries them
    return ClonedDefinition(ET.tostring(root, encoding="unicode") + "\n", files, nvram)


def _set_text(root: ET.Element, tag: str, text: str) -> None:
    node = root.find(tag)
    if node is None:
        node = ET.SubElement(root, tag)
    node.text = text


def _drop_children(root: ET.Element, tag: str) -> None:
    for parent in root.iter():
        for child in list(parent):
            if child.tag == tag:
                parent.remove(child)


def _disks(devices: ET.Element, change: CloneChange) -> None:
    for disk in devices.findall("disk"):
        target = disk.find("target")
        dev = target.get("dev", "") if target is not None else ""
        rewrite = change.disks.get(dev)
        if rewrite is None:
            continue
        source = disk.find("source")
        if source is None:
            source = ET.SubElement(disk, "source")
        keep = {k: v for k, v in source.attrib.items() if k not in ("file", "dev", "pool", "volume", "index")}
        source.attrib.clear()
        source.attrib.update(keep)
        for child in list(source):
            if child.tag != "seclabel":
                source.remove(child)
        disk.set("type", "block" if rewrite.block else "file")
        source.set("dev" if rewrite.block else "file", rewrite.path)
        backing = disk.find("backingStore")
        if backing is not None:
            disk.remove(backing)  # libvirt reads the new image's own chain
        driver = disk.find("driver")
        if driver is None:
            driver = ET.SubElement(disk, "driver", {"name": "qemu"})
        driver.set("type", rewrite.format)


def _interfaces(devices: ET.Element, macs: tuple[str, ...]) -> None:
    interfaces = devices.findall("interface")
    if len(macs) != len(interfaces):
        raise Dom0Error(f"the source has {len(interfaces)} network interfaces but {len(macs)} MACs were given")
    for nic, mac in zip(interfaces, macs, strict=True):
        node = nic.find("mac")
        if node is None:
            node = ET.SubElement(nic, "mac")
        node.attrib = {"address": mac}
        target = nic.find("target")
        if target is not None and target.get("dev", "").startswith(("vnet", "vif", "macvtap", "tap")):
            nic.remove(target)  # a name libvirt generated for the source's run


_FILE_SOURCES = ("serial", "console", "channel", "parallel")


def _files(
    root: ET.Element, devices: ET.Element, old_name: str, new_name: str, files: dict[str, str]
) -> tuple[str, str] | None:
    """Logs, sockets and NVRAM the source owns: the clone gets its own; the NVRAM pair, to copy."""

    def rename(node: ET.Element, attr: str) -> None:
        old = node.get(attr, "")
        if old and old.startswith("/") and not old.startswith("/dev/"):
            node.set(attr, files.setdefault(old, per_guest_path(old, old_name, new_name)))

    for tag in _FILE_SOURCES:
        for dev in devices.findall(tag):
            for log in dev.findall("log"):
                rename(log, "file")
            if dev.get("type") in ("file", "unix"):
                for source in dev.findall("source"):
                    rename(source, "path")
            if dev.get("type") == "pty":
                for source in dev.findall("source"):
                    source.attrib.pop("path", None)  # the source's pty of the moment
            dev.attrib.pop("tty", None)
    for graphics in devices.findall("graphics"):
        for listen in graphics.findall("listen"):
            if listen.get("type") == "socket":
                rename(listen, "socket")
        if graphics.get("socket"):
            rename(graphics, "socket")
    os_node = root.find("os")
    nvram = os_node.find("nvram") if os_node is not None else None
    if nvram is None or not (nvram.text or "").strip():
        return None
    old = (nvram.text or "").strip()
    nvram.text = per_guest_path(old, old_name, new_name)
    return old, nvram.text


def clone_definition(definition: str, change: CloneChange) -> ClonedDefinition:
    """The clone's definition in the source's own format: libvirt XML, or an xl.cfg on xl://."""
    if definition_format(definition) is DefinitionFormat.LIBVIRT_XML:
        return clone_xml(definition, change)
    return clone_xl_cfg(definition, change)


def definition_macs(definition: str) -> tuple[str, ...]:
    """The MACs of the definition's network interfaces, in order (empty where one has none yet)."""
    if definition_format(definition) is DefinitionFormat.LIBVIRT_XML:
        return tuple(n.mac for n in domxml.parse(definition).nics)
    return tuple(n.mac for n in xlcfg.guest_config(xlcfg.parse(definition)).nics)


def clone_xl_cfg(text: str, change: CloneChange) -> ClonedDefinition:
    """The clone's xl.cfg: the source's file with only the settings that differ rewritten (comments stay)."""
    doc = xlcfg.parse(text, "the source's xl.cfg")
    config = xlcfg.guest_config(doc)
    if len(change.macs) != len(config.nics):
        raise Dom0Error(f"the source has {len(config.nics)} vifs but {len(change.macs)} MACs were given")
    disks = []
    for disk in config.disks:
        rewrite = change.disks.get(disk.target)
        kind = DiskSource.BLOCK if rewrite and rewrite.block else DiskSource.FILE
        disks.append(
            disk if rewrite is None else replace(disk, source=rewrite.path, source_kind=kind, format=rewrite.format)
        )
    new = replace(
        config,
        name=change.name,
        uuid=change.uuid,
        disks=tuple(disks),
        nics=tuple(replace(n, mac=mac) for n, mac in zip(config.nics, change.macs, strict=True)),
        memory_mib=change.memory_mib or config.memory_mib,
        max_memory_mib=max(change.memory_mib, config.max_memory_mib) if change.memory_mib else config.max_memory_mib,
        vcpus=change.vcpus or config.vcpus,
        max_vcpus=max(change.vcpus, config.max_vcpus) if change.vcpus else config.max_vcpus,
    )
    xlcfg.apply_config(doc, new)
    return ClonedDefinition(doc.render())
