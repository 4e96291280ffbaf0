"""dom0's model as JSON-ready values: the keys scripts may rely on."""

from __future__ import annotations

from typing import Any

from dom0 import humanize
from dom0.errors import UsageError
from dom0.model import Disk, Guest, GuestDetails, HostInfo


def guest(g: Guest) -> dict[str, Any]:
    """The `xm list` columns of one guest, plus the state in words and CPU time readable."""
    cpu_s = g.cpu_time_ns / 1e9
    return {
        "name": g.name,
        "id": g.id,
        "uuid": g.uuid,
        "memory_mib": g.memory_kib // 1024,
        "max_memory_mib": g.max_memory_kib // 1024,
        "vcpus": g.vcpus,
        "state": g.state.value,
        "state_flags": g.state.flags,
        "state_words": g.state.words,
        "cpu_time_s": round(cpu_s, 1),
        "cpu_time": humanize.duration(cpu_s),
    }


def vbd_number(target: str) -> int | None:
    """The Xen VBD number of a guest device name, or None for names outside Xen's schemes (vda)."""
    from dom0.observe import vbd  # its patterns are compiled on import, which `dom0 list` without --long skips

    try:
        return vbd.encode(target).number
    except UsageError:
        return None


def disk(d: Disk) -> dict[str, Any]:
    """One virtual disk."""
    return {
        "target": d.target,
        "vbd": vbd_number(d.target),
        "device": d.device,
        "bus": d.bus,
        "source_kind": d.source_kind.value,
        "source": d.source,
        "format": d.format,
        "readonly": d.readonly,
    }


def details(d: GuestDetails) -> dict[str, Any]:
    """Everything `list --long` shows."""
    return {
        **guest(d.guest),
        "persistent": d.guest.persistent,
        "autostart": d.autostart,
        "hypervisor_type": d.hypervisor_type,
        "os_type": d.os_type,
        "boot": {
            "kind": d.boot.kind.value,
            "kernel": d.boot.kernel,
            "initrd": d.boot.initrd,
            "cmdline": d.boot.cmdline,
            "bootloader": d.boot.bootloader,
            "devices": list(d.boot.devices),
        },
        "disks": [disk(x) for x in d.disks],
        "nics": [
            {"mac": n.mac, "kind": n.kind, "source": n.source, "model": n.model, "target": n.target} for n in d.nics
        ],
        "on_poweroff": d.on_poweroff,
        "on_reboot": d.on_reboot,
        "on_crash": d.on_crash,
        "console_log": d.console_log,
    }


def host(h: HostInfo) -> dict[str, Any]:
    """Host facts."""
    return {
        "uri": h.uri,
        "hostname": h.hostname,
        "hypervisor": h.hypervisor,
        "hypervisor_version": h.hypervisor_version,
        "cpus": h.cpus,
        "memory_mib": h.memory_kib // 1024,
        "free_memory_mib": h.free_memory_kib // 1024,
    }
