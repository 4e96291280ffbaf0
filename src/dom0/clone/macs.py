"""A new guest's identity on a host: MACs within the hypervisor's prefix and unique on the host, a UUID."""

from __future__ import annotations

import random
import re
import uuid as uuidlib
from collections.abc import Iterable

from dom0.errors import Dom0Error, UsageError
from dom0.hypervisor import Hypervisor
from dom0.model import Nic, SaveFormat

XEN_PREFIX = "00:16:3e"  # Xen's OUI, as xl and xen-tools use
KVM_PREFIX = "52:54:00"  # QEMU/KVM's, as libvirt uses
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def normalise(mac: str) -> str:
    """Lower-case colon form; UsageError for anything that is not a unicast MAC."""
    value = mac.strip().lower().replace("-", ":")
    if not _MAC.match(value):
        raise UsageError(f"{mac!r} is not a MAC address", "write it as 52:54:00:12:34:56")
    if int(value[:2], 16) & 1:
        raise UsageError(f"{mac} is a multicast address", "a NIC needs a unicast MAC (even first byte)")
    return value


def new_macs(wanted: Iterable[str], count: int, taken: Iterable[str], prefix: str, rng: random.Random) -> list[str]:
    """`count` MACs: the `wanted` ones in order ('auto' or a MAC each), the rest random, none already `taken`."""
    used = {normalise(m) for m in taken if m}
    given = list(wanted)
    if len(given) > count:
        raise UsageError(f"{len(given)} --mac given, but the guest has {count} network interface(s)")
    result: list[str] = []
    for i in range(count):
        choice = given[i] if i < len(given) else "auto"
        if choice != "auto":
            mac = normalise(choice)
            if mac in used:
                raise UsageError(f"{mac} is already used on this host", "leave it out (or say auto) for a fresh one")
        else:
            while True:
                mac = prefix + "".join(f":{rng.randrange(256):02x}" for _ in range(3))
                if mac not in used:
                    break
        used.add(mac)
        result.append(mac)
    return result


def fresh_macs(hv: Hypervisor, wanted: Iterable[str], count: int, rng: random.Random) -> tuple[str, ...]:
    """MACs for a new guest on `hv`'s host: the hypervisor's prefix, none that a guest there already uses."""
    taken = [n.mac for g in hv.guests(include_inactive=True) for n in _nics(hv, g.uuid)]
    prefix = XEN_PREFIX if hv.save_format in (SaveFormat.LIBXL, SaveFormat.XL) else KVM_PREFIX
    return tuple(new_macs(wanted, count, taken, prefix, rng))


def fresh_uuid(rng: random.Random) -> str:
    """A random (version 4) UUID drawn from `rng`."""
    return str(uuidlib.UUID(int=rng.getrandbits(128), version=4))


def _nics(hv: Hypervisor, uuid: str) -> tuple[Nic, ...]:
    try:
        return hv.details(uuid).nics
    except Dom0Error:
        return ()  # a guest that vanished meanwhile holds no MAC
