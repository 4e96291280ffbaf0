"""Reading what Xen's `xl` toolstack prints: `xl list`, `xl list -l` JSON, `xentop -b`, `xl info`.

The header of `xl save` files is read by dom0.saves.formats.xl, the one place that knows save image bytes.

Pure functions, no subprocess: the xl backend (dom0.hypervisor.xl.backend) runs the commands and maps the results.
The formats follow real Xen 4.17 output (recorded copies are in tests/data/xen/).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from dom0.errors import Dom0Error, UsageError
from dom0.model import Boot, BootKind, Disk, DiskSource, GuestState, Nic
from dom0.observe import vbd

DOM0_UUID = "00000000-0000-0000-0000-000000000000"
SECTOR_BYTES = 512  # blkback counts 512-byte sectors whatever the disk's block size

# --- state letters ------------------------------------------------------------------------------------------

# When several letters are set, the most telling one wins: a crashed guest is also shut down, a dying one too.
_STATE_PRIORITY = (
    ("c", GuestState.CRASHED),
    ("d", GuestState.DYING),
    ("s", GuestState.SHUTDOWN),
    ("p", GuestState.PAUSED),
    ("r", GuestState.RUNNING),
    ("b", GuestState.BLOCKED),
)


def state_from_letters(flags: str) -> GuestState:
    """The state behind `xl list`'s '-b----' or xentop's '--b---' (same letters, another order)."""
    letters = set(flags) - {"-"}
    for letter, state in _STATE_PRIORITY:
        if letter in letters:
            return state
    # No letter: the domain is between being scheduled and waiting, which to an operator is the same as idle.
    return GuestState.BLOCKED


# --- xl list --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListRow:
    """One line of `xl list`."""

    name: str
    id: int
    memory_mib: int
    vcpus: int
    flags: str
    cpu_time_ns: int

    @property
    def state(self) -> GuestState:
        """The run state the flags stand for."""
        return state_from_letters(self.flags)


# Name, ID, Mem, VCPUs, State, Time(s); the name is printed with %-40s and may contain spaces.
# State (xl_list.c): r, b, p, s, then the shutdown reason ('-rscwS', '?' when out of range), then d.
_LIST_ROW = re.compile(
    r"^(?P<name>.+?)\s+(?P<id>\d+)\s+(?P<mem>\d+)\s+(?P<vcpus>\d+)\s+(?P<flags>[rbpscwSd?-]{6})\s+"
    r"(?P<time>\d+(?:\.\d+)?)(?:\s.*)?$"
)


def parse_list(text: str) -> list[ListRow]:
    """Parse `xl list` (also `xl list -v`, whose extra columns are ignored)."""
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("Name "):
            continue
        m = _LIST_ROW.match(line.rstrip())
        if not m:
            raise Dom0Error(f"cannot read this line of `xl list`: {line.strip()!r}", "is this Xen's xl?")
        if m.group("name").strip() == "(null)":
            # a domain `xl create`/`xl restore` is still building (seen as "(null) ... r-ps?-"): not a guest yet
            continue
        rows.append(
            ListRow(
                name=m.group("name").strip(),
                id=int(m.group("id")),
                memory_mib=int(m.group("mem")),
                vcpus=int(m.group("vcpus")),
                flags=m.group("flags"),
                cpu_time_ns=round(float(m.group("time")) * 1e9),
            )
        )
    return rows


# --- xl list -l ------------------------------------------------------------------------------------------------


def parse_list_long(text: str) -> list[dict[str, Any]]:
    """The entries of `xl list -l` (a JSON array of {"domid": N, "config": {...}}), one per domain."""
    stripped = text.strip()
    if not stripped:
        return []
    if stripped[0] not in "[{":
        raise Dom0Error(
            "`xl list -l` did not print JSON",
            'set output_format="json" in /etc/xen/xl.conf (dom0 does not read the SXP format)',
        )
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise Dom0Error(f"cannot read the JSON of `xl list -l`: {exc}") from exc
    entries = value if isinstance(value, list) else [value]
    return [e for e in entries if isinstance(e, dict)]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """One `xl list -l` entry, with libxl's defaults filled in where the JSON leaves a key out."""

    domid: int
    name: str
    uuid: str
    type: str  # pv, pvh or hvm
    max_memory_kib: int
    target_memory_kib: int
    vcpus: int
    raw: dict[str, Any]

    @property
    def c_info(self) -> dict[str, Any]:
        """libxl's create info: name, uuid, type."""
        return _dict(_dict(self.raw.get("config")).get("c_info"))

    @property
    def b_info(self) -> dict[str, Any]:
        """libxl's build info: memory, vcpus, kernel or bootloader."""
        return _dict(_dict(self.raw.get("config")).get("b_info"))

    @property
    def config(self) -> dict[str, Any]:
        """The whole libxl domain config."""
        return _dict(self.raw.get("config"))


def domain_config(entry: dict[str, Any]) -> DomainConfig:
    """Read one `xl list -l` entry; Domain-0's is sparse (no uuid, no vcpus), so every key is optional."""
    domid = _int(entry.get("domid"), -1)
    config = _dict(entry.get("config"))
    c_info, b_info = _dict(config.get("c_info")), _dict(config.get("b_info"))
    uuid = _str(c_info.get("uuid")) or (DOM0_UUID if domid == 0 else "")
    avail = b_info.get("avail_vcpus")
    vcpus = _int(b_info.get("max_vcpus"), 0) or (len(avail) if isinstance(avail, list) else 0)
    return DomainConfig(
        domid=domid,
        name=_str(c_info.get("name")),
        uuid=uuid,
        type=_str(c_info.get("type")) or "pv",
        max_memory_kib=_int(b_info.get("max_memkb")),
        target_memory_kib=_int(b_info.get("target_memkb")),
        vcpus=vcpus,
        raw=entry,
    )


# libvirt's libxl driver calls PV guests' OS type "linux" and PVH ones "xenpvh"; dom0 says the same on xl://.
OS_TYPES = {"pv": "linux", "pvh": "xenpvh", "hvm": "hvm"}

# libxl's on_* action names, spelled as libvirt spells them so both backends print the same words.
_ACTIONS = {
    "destroy": "destroy",
    "restart": "restart",
    "restart_rename": "rename-restart",
    "preserve": "preserve",
    "coredump_destroy": "coredump-destroy",
    "coredump_restart": "coredump-restart",
    "soft_reset": "soft-reset",
}
# xl.cfg(5): what each event does when the config does not say.
_ACTION_DEFAULTS = {"on_poweroff": "destroy", "on_reboot": "restart", "on_crash": "destroy"}


def actions(cfg: DomainConfig) -> dict[str, str]:
    """on_poweroff, on_reboot and on_crash, with xl's defaults for the ones the JSON leaves out."""
    result = {}
    for key, default in _ACTION_DEFAULTS.items():
        value = _str(cfg.config.get(key)).lower() or default
        result[key] = _ACTIONS.get(value, value.replace("_", "-"))
    return result


_HVM_BOOT = {"c": "hd", "d": "cdrom", "n": "network", "a": "fd"}


def boot(cfg: DomainConfig) -> Boot:
    """How the guest's kernel is found: kernel= (direct), bootloader= (pygrub) or the HVM firmware."""
    b = cfg.b_info
    pv = _dict(b.get("type.pv"))
    kernel = _str(b.get("kernel")) or _str(pv.get("kernel"))
    if kernel:
        return Boot(
            BootKind.KERNEL,
            kernel=kernel,
            initrd=_str(b.get("ramdisk")) or _str(pv.get("ramdisk")),
            cmdline=_str(b.get("cmdline")) or _str(pv.get("cmdline")),
        )
    loader = _str(b.get("bootloader")) or _str(pv.get("bootloader"))
    if loader:
        args = b.get("bootloader_args") or pv.get("bootloader_args") or []
        return Boot(BootKind.BOOTLOADER, bootloader=loader, cmdline=" ".join(str(a) for a in args))
    order = _str(_dict(b.get("type.hvm")).get("boot")) or ("cd" if cfg.type == "hvm" else "")
    return Boot(BootKind.FIRMWARE, devices=tuple(_HVM_BOOT.get(c, c) for c in order))


def disks(cfg: DomainConfig) -> tuple[Disk, ...]:
    """The guest's disks: block devices for /dev paths, files otherwise; an empty CD drive has no source."""
    result = []
    for d in cfg.config.get("disks") or []:
        if not isinstance(d, dict):
            continue
        source = _str(d.get("pdev_path"))
        if not source:
            kind = DiskSource.NONE
        elif source.startswith("/dev/"):
            kind = DiskSource.BLOCK
        else:
            kind = DiskSource.FILE
        target = _str(d.get("vdev"))
        result.append(
            Disk(
                target=target,
                source_kind=kind,
                source=source,
                device="cdrom" if _int(d.get("is_cdrom")) else "disk",
                bus="xen" if target.startswith("xvd") or cfg.type != "hvm" else "ide",
                format=_str(d.get("format")),
                # libxl leaves readwrite out of the JSON when it is 0, so absent means read-only
                readonly=not _int(d.get("readwrite")),
            )
        )
    return tuple(result)


def vif_name(domid: int, devid: int) -> str:
    """The host side of a guest's NIC as netback names it: vifDOMID.DEVID."""
    return f"vif{domid}.{devid}"


def nics(cfg: DomainConfig) -> tuple[Nic, ...]:
    """The guest's NICs; the host-side name is vifname= when the config set one, else vifDOMID.DEVID."""
    result = []
    for index, n in enumerate(cfg.config.get("nics") or []):
        if not isinstance(n, dict):
            continue
        devid = _int(n.get("devid"), index)
        bridge = _str(n.get("bridge"))
        result.append(
            Nic(
                mac=_str(n.get("mac")),
                kind="bridge" if bridge else "ethernet",
                source=bridge,
                model=_str(n.get("model")),
                target=_str(n.get("ifname")) or (vif_name(cfg.domid, devid) if cfg.domid >= 0 else ""),
            )
        )
    return tuple(result)


# --- xentop -b -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopVbd:
    """One `VBD ...` line of `xentop -x`: blkback's cumulative counters of one virtual disk."""

    number: int
    target: str
    oo_reqs: int
    rd_reqs: int
    wr_reqs: int
    rd_sectors: int
    wr_sectors: int


@dataclass(frozen=True, slots=True)
class TopNet:
    """One `NetN RX: ... TX: ...` line of `xentop -n`, counted on the host side (the vif), as xentop prints it."""

    index: int
    rx_bytes: int
    rx_packets: int
    tx_bytes: int
    tx_packets: int


@dataclass(frozen=True, slots=True)
class TopDomain:
    """One domain line of `xentop -b` with its network and VBD lines."""

    name: str
    state: GuestState
    cpu_s: int
    memory_kib: int
    max_memory_kib: int | None  # None: "no limit"
    vcpus: int
    nets: tuple[TopNet, ...] = ()
    vbds: tuple[TopVbd, ...] = ()


def _count(token: str) -> int:
    # xentop prints '-' when blkback's statistics could not be read
    return int(token) if token.isdigit() else 0


# Formats from xentop.c (tools/xentop/xentop.c, do_vbd and do_network):
#   "VBD %s %4d %s OO: %8llu   RD: %8llu   WR: %8llu   RSECT: %10llu   WSECT: %10llu"  (type, dev, "[%2x:%2x] ")
#   "Net%d RX: %8llubytes %8llupkts %8lluerr %8lludrop  TX: %8llubytes %8llupkts %8lluerr %8lludrop"
_VBD = re.compile(
    r"^VBD\s+\S+\s+(?P<dev>\d+)\s+(?:\[[^\]]*\]\s*)?OO:\s*(?P<oo>\S+)\s+RD:\s*(?P<rd>\S+)\s+WR:\s*(?P<wr>\S+)\s+"
    r"RSECT:\s*(?P<rsect>\S+)\s+WSECT:\s*(?P<wsect>\S+)\s*$"
)
_NET = re.compile(
    r"^Net(?P<i>\d+)\s+RX:\s*(?P<rxb>\d+)bytes\s+(?P<rxp>\d+)pkts\s+\d+err\s+\d+drop\s+"
    r"TX:\s*(?P<txb>\d+)bytes\s+(?P<txp>\d+)pkts\s+\d+err\s+\d+drop\s*$"
)
_DOMAIN_FIELDS = 18  # the columns after NAME, from STATE to SSID


def vbd_target(number: int) -> str:
    """The guest's name of a VBD number (51712 -> xvda); the number itself when Xen defines no name for it."""
    try:
        return vbd.decode(number).name
    except UsageError:
        return str(number)


def parse_xentop(text: str) -> list[TopDomain]:
    """Parse `xentop -b [-x] [-n] [-f]`; with several iterations, the last one wins.

    The NAME column is right-aligned to the header's width (wider with -f, so long names stay whole), so the
    name is cut at the header's end of NAME rather than split on spaces.
    """
    domains: list[TopDomain] = []
    name_end = 10
    current: dict[str, Any] | None = None

    def flush() -> None:
        if current is not None:
            domains.append(TopDomain(**{**current, "nets": tuple(current["nets"]), "vbds": tuple(current["vbds"])}))

    for line in text.splitlines():
        if not line.strip():
            continue
        stripped = line.strip()
        if stripped.startswith("NAME ") and "STATE" in stripped and "CPU(sec)" in stripped:
            flush()
            current = None
            domains = []  # a new iteration begins
            name_end = line.index("NAME") + len("NAME")
            continue
        m = _VBD.match(stripped)
        if m and current is not None:
            number = int(m.group("dev"))
            current["vbds"].append(
                TopVbd(
                    number=number,
                    target=vbd_target(number),
                    oo_reqs=_count(m.group("oo")),
                    rd_reqs=_count(m.group("rd")),
                    wr_reqs=_count(m.group("wr")),
                    rd_sectors=_count(m.group("rsect")),
                    wr_sectors=_count(m.group("wsect")),
                )
            )
            continue
        m = _NET.match(stripped)
        if m and current is not None:
            current["nets"].append(
                TopNet(
                    index=int(m.group("i")),
                    rx_bytes=int(m.group("rxb")),
                    rx_packets=int(m.group("rxp")),
                    tx_bytes=int(m.group("txb")),
                    tx_packets=int(m.group("txp")),
                )
            )
            continue
        if stripped.startswith("VCPUs(sec):") or (current is not None and re.match(r"^\d+:\s+\d+s", stripped)):
            continue  # -v lines: per-VCPU seconds, not used
        name, rest = line[:name_end].strip(), line[name_end:].replace("no limit", "nolimit").split()
        if len(rest) < _DOMAIN_FIELDS - 1 or not name:
            raise Dom0Error(f"cannot read this line of `xentop -b`: {stripped!r}", "is this Xen's xentop?")
        flush()
        maxmem = rest[5]
        current = {
            "name": name,
            "state": state_from_letters(rest[0]),
            "cpu_s": _count(rest[1]),
            "memory_kib": _count(rest[3]),
            "max_memory_kib": None if maxmem == "nolimit" else _count(maxmem),
            "vcpus": _count(rest[7]),
            "nets": [],
            "vbds": [],
        }
    flush()
    return domains


# --- xl info -------------------------------------------------------------------------------------------------


def parse_info(text: str) -> dict[str, str]:
    """`xl info`'s 'key : value' lines as a dict."""
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            info[key.strip()] = value.strip()
    return info
