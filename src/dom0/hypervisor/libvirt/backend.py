"""The Hypervisor protocol over libvirt: QEMU/KVM, Xen's libxl driver and the test:// driver.

This package is the only one that imports libvirt, so `dom0 --help` and pure commands never pay for it. What only some
methods need (uuid, html, subprocess through dom0.run) is imported in them: `dom0 list` is run all day and every
import is paid on each run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import libvirt

from dom0.errors import (
    CommandError,
    Dom0Error,
    GuestNotFound,
    GuestStateError,
    HypervisorUnavailable,
)
from dom0.filedata import read_regular
from dom0.hypervisor.definition import DefinitionFormat, definition_format
from dom0.hypervisor.libvirt import domxml, memstats
from dom0.hypervisor.libvirt.console import LibvirtConsole, ensure_event_loop
from dom0.hypervisor.libvirt.failures import message, translated
from dom0.hypervisor.neighbours import neighbour_addresses
from dom0.hypervisor.protocol import Console, LogText, UriChoice, guest_id, read_log_tail
from dom0.model import (
    DiskCounters,
    Guest,
    GuestAddress,
    GuestCounters,
    GuestDetails,
    GuestMemory,
    GuestState,
    HostInfo,
    NicCounters,
    SaveFormat,
    StatsSource,
)

T = TypeVar("T")

# libvirt prints every error to stderr unless a handler swallows it; dom0 reports errors itself.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: GuestState.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: GuestState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: GuestState.BLOCKED,
    libvirt.VIR_DOMAIN_PAUSED: GuestState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: GuestState.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: GuestState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: GuestState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: GuestState.PMSUSPENDED,
}

_COUNTER_STATS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_INTERFACE
    | libvirt.VIR_DOMAIN_STATS_BLOCK
)

# What `dom0 list` and `dom0 mem` read of every guest in one round trip. NOWAIT: a guest whose QEMU is busy (a
# migration, a hung monitor) is reported without its balloon figures instead of stalling the whole listing.
_ROW_STATS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
)
_NOWAIT = getattr(libvirt, "VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT", 0)


# How long opening a connection may take, and libvirt's keepalive once open (libvirtd's own defaults: 5 s, 5).
def _env_seconds(name: str, default: float) -> float:
    """A number of seconds from the environment; `default` when unset or not a positive number."""
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if 0 < value < 86400 else default


CONNECT_TIMEOUT_S = _env_seconds("DOM0_CONNECT_TIMEOUT", 30.0)
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 5

URI_HINT = "URIs look like qemu:///system, xen:///system or test:///default"


def _guest_from_domain(dom: libvirt.virDomain, info: Sequence[int]) -> Guest:
    state, max_mem, mem, vcpus, cpu_time = info[:5]
    dom_id = dom.ID()
    return Guest(
        name=dom.name(),
        uuid=dom.UUIDString(),
        id=dom_id if dom_id >= 0 else None,
        state=_STATES.get(state, GuestState.NOSTATE),
        memory_kib=mem if dom_id >= 0 else 0,
        max_memory_kib=max_mem,
        vcpus=vcpus,
        cpu_time_ns=cpu_time,
    )


def _guest_from_stats(dom: libvirt.virDomain, stats: dict[str, Any]) -> Guest:
    dom_id = dom.ID()
    return Guest(
        name=dom.name(),
        uuid=dom.UUIDString(),
        id=dom_id if dom_id >= 0 else None,
        state=_STATES.get(stats.get("state.state", 0), GuestState.NOSTATE),
        memory_kib=int(stats.get("balloon.current", 0)) if dom_id >= 0 else 0,
        max_memory_kib=int(stats.get("balloon.maximum", 0)),
        vcpus=int(stats.get("vcpu.current", 0)),
        cpu_time_ns=int(stats.get("cpu.time", 0)),
    )


def _sort_key(g: Guest) -> tuple[int, int, str]:
    return (0, g.id, g.name) if g.id is not None else (1, 0, g.name)


class LibvirtHypervisor:
    """A libvirt connection seen through dom0's Hypervisor protocol."""

    def __init__(self, conn: libvirt.virConnect, uri: str) -> None:
        self._conn = conn
        self.uri = uri

    @classmethod
    def open(cls, choice: UriChoice) -> LibvirtHypervisor:
        """Connect; HypervisorUnavailable with what was tried when nothing answers."""
        _check_test_node_file(choice)
        # test:// runs inside this process: nothing there can stop answering, so it is opened directly (a thread
        # and the event loop would slow its parse of a large node file by half).
        in_process = choice.uri.startswith("test:")
        try:
            if in_process:
                conn = libvirt.open(choice.uri)
            else:
                ensure_event_loop()  # the keepalive below needs it, registered before the connection opens
                conn = _answered_within(CONNECT_TIMEOUT_S, lambda: libvirt.open(choice.uri), choice)
        except libvirt.libvirtError as exc:
            raise HypervisorUnavailable(
                f"cannot connect to {choice.uri} ({choice.reason}): {message(exc)}",
                _connect_hint(choice.uri, message(exc)),
            ) from exc
        if conn is None:
            raise HypervisorUnavailable(f"cannot connect to {choice.uri} ({choice.reason})", URI_HINT)
        # A daemon that stops answering (hung, or its host gone) then fails the pending call after about
        # KEEPALIVE_INTERVAL_S * (KEEPALIVE_COUNT + 1) seconds instead of leaving dom0 waiting forever.
        if not in_process:
            with suppress(libvirt.libvirtError):
                conn.setKeepAlive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT)
        return cls(conn, conn.getURI() or choice.uri)

    def close(self) -> None:
        """Release the connection."""
        with suppress(libvirt.libvirtError):
            self._conn.close()

    @property
    def is_xen(self) -> bool:
        """Whether this connection drives Xen (through libvirt's libxl driver)."""
        return str(self._conn.getType()).lower() == "xen"

    @property
    def save_format(self) -> SaveFormat | None:
        """QEMU's or libxl's save image format; None for drivers dom0 does not save through (test://)."""
        kind = str(self._conn.getType()).lower()
        return {"qemu": SaveFormat.QEMU, "xen": SaveFormat.LIBXL}.get(kind)

    @property
    def is_local(self) -> bool:
        """Whether the hypervisor runs on this machine, so its log files can be read here."""
        return not urlparse(self.uri).hostname

    # -- seeing ---------------------------------------------------------------------------------------------

    def host(self) -> HostInfo:
        """Facts about the host and the hypervisor."""
        with translated("cannot read host facts"):
            info = self._conn.getInfo()
            try:
                free = self._conn.getFreeMemory() // 1024
            except libvirt.libvirtError:
                free = 0
            version = self._conn.getVersion()
            return HostInfo(
                uri=self.uri,
                hostname=self._conn.getHostname(),
                hypervisor=str(self._conn.getType()),
                hypervisor_version=f"{version // 1000000}.{version // 1000 % 1000}.{version % 1000}",
                cpus=int(info[2]),
                memory_kib=int(info[1]) * 1024,
                free_memory_kib=int(free),
            )

    def guests(self, *, include_inactive: bool = False) -> list[Guest]:
        """Guests sorted as `xl list` sorts them: by ID, then inactive ones by name; one bulk call for them all."""
        flags = 0 if include_inactive else libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
        return sorted((g for g, _stats in self._row_stats(flags)), key=_sort_key)

    def _row_stats(self, flags: int, domains: Sequence[libvirt.virDomain] = ()) -> list[tuple[Guest, dict[str, Any]]]:
        """Each guest's list row and its bulk statistics (state, balloon, vCPUs, CPU time) in one round trip.

        Drivers that leave row fields out of bulk statistics (test:// reports the state only) are asked with
        virDomainGetInfo for those guests, and drivers without bulk statistics at all (Xen's libxl in libvirt 9)
        for every guest; a guest that went away meanwhile is left out.
        """
        with translated("cannot read the guests' statistics"):
            try:
                records = self._bulk_stats(_ROW_STATS, flags | _NOWAIT, domains)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                    raise
                try:
                    records = self._bulk_stats(_ROW_STATS, flags, domains)  # a driver older than NOWAIT
                except libvirt.libvirtError as again:
                    if again.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                        raise
                    active = flags & libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
                    listed = domains or self._conn.listAllDomains(
                        libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE if active else 0
                    )
                    records = [(dom, {}) for dom in listed]
        rows = []
        for dom, stats in records:
            try:
                if all(key in stats for key in memstats.ROW_KEYS):
                    rows.append((_guest_from_stats(dom, stats), stats))
                else:
                    rows.append((_guest_from_domain(dom, dom.info()), stats))
            except libvirt.libvirtError:
                continue  # the guest went away between listing and asking
        return rows

    def _bulk_stats(
        self, groups: int, flags: int, domains: Sequence[libvirt.virDomain]
    ) -> list[tuple[libvirt.virDomain, dict[str, Any]]]:
        if domains:
            list_flags = flags & ~libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
            return list(self._conn.domainListGetStats(list(domains), groups, list_flags))
        return list(self._conn.getAllDomainStats(groups, flags))

    def _exists(self, ref: str) -> bool:
        try:
            self._domain(ref)
        except GuestNotFound:
            return False
        return True

    def _domain(self, ref: str) -> libvirt.virDomain:
        lookups: list[Callable[[], libvirt.virDomain]] = [lambda: self._conn.lookupByName(ref)]
        number = guest_id(ref)
        if number is not None:
            lookups.append(lambda: self._conn.lookupByID(number))
        import uuid

        try:
            uuid.UUID(ref)
            lookups.append(lambda: self._conn.lookupByUUIDString(ref))
        except ValueError:
            pass
        for lookup in lookups:
            try:
                return lookup()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise Dom0Error(f"cannot look up guest {ref!r}: {message(exc)}") from exc
        raise GuestNotFound(
            f"no guest named {ref!r} on {self.uri}",
            "guests are named by name, UUID or ID; `dom0 list --all` shows them all",
        )

    def guest(self, ref: str) -> Guest:
        """The guest with that name, UUID or ID."""
        dom = self._domain(ref)
        with translated(f"cannot read guest {ref!r}"):
            g = _guest_from_domain(dom, dom.info())
            persistent = bool(dom.isPersistent())
        return replace(g, persistent=persistent)

    def details(self, ref: str) -> GuestDetails:
        """What `list --long` shows for one guest."""
        dom = self._domain(ref)
        with translated(f"cannot read guest {ref!r}"):
            g = _guest_from_domain(dom, dom.info())
            g = replace(g, persistent=bool(dom.isPersistent()))
            parsed = domxml.parse(dom.XMLDesc(0))
            autostart = bool(dom.autostart()) if g.persistent else False
        return GuestDetails(
            guest=g,
            hypervisor_type=parsed.hypervisor_type,
            os_type=parsed.os_type,
            boot=parsed.boot,
            disks=parsed.disks,
            nics=parsed.nics,
            autostart=autostart,
            on_poweroff=parsed.on_poweroff,
            on_reboot=parsed.on_reboot,
            on_crash=parsed.on_crash,
            console_log=parsed.console_log,
        )

    def definition(self, ref: str) -> str:
        """The guest's libvirt XML."""
        dom = self._domain(ref)
        with translated(f"cannot read the definition of {ref!r}"):
            return str(dom.XMLDesc(0))

    def editable_definition(self, ref: str) -> str:
        """The inactive XML with everything in it (a transient guest has only its live XML)."""
        dom = self._domain(ref)
        with translated(f"cannot read the definition of {ref!r}"):
            flags = libvirt.VIR_DOMAIN_XML_SECURE
            if dom.isPersistent():
                flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
            return str(dom.XMLDesc(flags))

    def define(self, definition: str) -> Guest:
        """virsh define; refuses a name or UUID that is taken instead of redefining that guest."""
        name, uuid = domxml.name_of(definition), domxml.uuid_of(definition)
        for ref in (name, uuid):
            if ref and self._exists(ref):
                raise Dom0Error(f"a guest {ref!r} already exists on {self.uri}", "choose another name")
        with translated("cannot define the guest", "check the XML with `virt-xml-validate`"):
            dom = self._conn.defineXML(definition)
            return self.guest(dom.UUIDString())

    def undefine(self, ref: str) -> None:
        """virsh undefine (with its NVRAM and managed-save image, which only the defined guest had)."""
        dom = self._domain(ref)
        with translated(f"cannot undefine {ref!r}"):
            flags = libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            try:
                dom.undefineFlags(flags)
            except libvirt.libvirtError:
                dom.undefine()  # drivers without those flags (Xen's libxl)

    def external_snapshot(self, ref: str, overlays: Mapping[str, str]) -> None:
        """A disk-only external snapshot without snapshot metadata: the overlays simply become the disks."""
        dom = self._domain(ref)
        disks = "".join(
            f"<disk name='{_attr(t)}' snapshot='external'><driver type='qcow2'/><source file='{_attr(p)}'/></disk>"
            for t, p in overlays.items()
        )
        others = "".join(
            f"<disk name='{_attr(d.target)}' snapshot='no'/>"
            for d in self.details(ref).disks
            if d.target not in overlays and d.device == "disk"
        )
        xml = f"<domainsnapshot><disks>{disks}{others}</disks></domainsnapshot>"
        flags = (
            libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
            | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
            | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
        )
        with translated(f"cannot give {ref!r} new overlay disks"):
            dom.snapshotCreateXML(xml, flags)

    def counters(self, refs: Sequence[str] = ()) -> list[GuestCounters]:
        """Cumulative counters of running guests, in one call where the driver allows it."""
        domains = [self._domain(r) for r in refs]
        try:
            if domains:
                records = self._conn.domainListGetStats(domains, _COUNTER_STATS, 0)
            else:
                records = self._conn.getAllDomainStats(_COUNTER_STATS, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                raise Dom0Error(f"cannot read guest statistics: {message(exc)}") from exc
            return self._counters_one_by_one(domains)
        now = time.monotonic()
        records = [(dom, stats) for dom, stats in records if dom.ID() >= 0]
        # Some drivers (test://) answer bulk statistics with the state group only; ask those guests one by one.
        partial = [dom for dom, stats in records if "cpu.time" not in stats]
        complete = [_counters_from_stats(dom, stats, now) for dom, stats in records if "cpu.time" in stats]
        if partial:
            complete += self._counters_one_by_one(partial)
        return sorted(complete, key=lambda c: _sort_key(c.guest))

    def _counters_one_by_one(self, domains: list[libvirt.virDomain]) -> list[GuestCounters]:
        """For drivers without bulk statistics: info() plus per-device calls."""
        if not domains:
            domains = self._conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        result = []
        for dom in domains:
            try:
                guest = _guest_from_domain(dom, dom.info())
                parsed = domxml.parse(dom.XMLDesc(0))
                disks = []
                for d in parsed.disks:
                    if d.target and d.source:
                        rd_req, rd_bytes, wr_req, wr_bytes, _err = dom.blockStats(d.target)
                        disks.append(DiskCounters(d.target, rd_bytes, wr_bytes, rd_req, wr_req))
                nics = []
                for n in parsed.nics:
                    if n.target:
                        s = dom.interfaceStats(n.target)
                        nics.append(NicCounters(n.target, n.mac, s[0], s[4], s[1], s[5]))
            except libvirt.libvirtError:
                continue
            result.append(GuestCounters(guest, time.monotonic(), tuple(disks), tuple(nics)))
        return sorted(result, key=lambda c: _sort_key(c.guest))

    # -- control --------------------------------------------------------------------------------------------

    def memory(self, refs: Sequence[str] = ()) -> list[GuestMemory]:
        """Balloon reports of running guests from one bulk call; the live XML only of guests without a fresh report
        from their driver, to say why (no balloon device, stats period off, a driver that stopped answering)."""
        domains = [self._domain(r) for r in refs]
        now = time.monotonic()
        driver = str(self._conn.getType())
        result = []
        for guest, stats in self._row_stats(libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE, domains):
            if guest.id is None:
                continue
            report = memstats.balloon_report(stats)
            wall = time.time()
            if report.from_guest and memstats.is_fresh(report, wall):
                source, period = StatsSource.POLLED, 0
            else:
                try:
                    xml = self._conn.lookupByUUIDString(guest.uuid).XMLDesc(0)
                except libvirt.libvirtError:
                    continue  # gone meanwhile
                source, period = memstats.stats_source(xml, driver)
                if not (source is StatsSource.POLLED and memstats.is_fresh(report, wall, period)):
                    report = memstats.hypervisor_side(report)
            pid = memstats.qemu_pid(self.uri, guest.name) if self.is_local else None
            result.append(GuestMemory(guest, report, source, period, pid, now))
        return sorted(result, key=lambda m: _sort_key(m.guest))

    def addresses(self, ref: str) -> list[GuestAddress]:
        """virsh domifaddr with each source libvirt has (its DHCP leases, the guest agent, its ARP view), then this
        host's neighbour table by the guests' MACs: a bridged guest without libvirt's DHCP is only found there."""
        dom = self._domain(ref)
        if not dom.isActive():
            return []
        found: list[GuestAddress] = []
        sources = (
            (libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, "lease"),
            (libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, "agent"),
            (libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP, "arp"),
        )
        for flag, source in sources:
            try:
                interfaces = dom.interfaceAddresses(flag)
            except libvirt.libvirtError:
                continue  # no agent, a driver without that source: the others may still know
            for name, info in (interfaces or {}).items():
                mac = str(info.get("hwaddr") or "").lower()
                for a in info.get("addrs") or []:
                    address = str(a.get("addr", "")).split("%")[0]
                    if address and mac != "00:00:00:00:00:00" and not address.startswith(("127.", "::1", "fe80:")):
                        prefix = a.get("prefix")
                        interface = str(name) if source == "agent" else ""
                        found.append(GuestAddress(address, mac, source, prefix, interface))
        # Per NIC: a guest with one NIC on libvirt's NAT network (leased) and one on a plain bridge is found by
        # the lease for the first and only in the neighbour table for the second.
        known = {a.mac for a in found}
        found += neighbour_addresses(n.mac for n in domxml.parse(dom.XMLDesc(0)).nics if n.mac.lower() not in known)
        unique: dict[str, GuestAddress] = {}
        for a in found:
            unique.setdefault(a.address, a)  # the first source that knew it: leases before the agent before ARP
        return list(unique.values())

    def set_memory_stats_period(self, ref: str, seconds: int) -> None:
        """virsh dommemstat --period N --live."""
        dom = self._domain(ref)
        with translated(f"cannot turn on memory statistics of {ref!r}", "the guest needs a virtio balloon device"):
            dom.setMemoryStatsPeriod(seconds, libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def set_memory(self, ref: str, kib: int) -> None:
        """virsh setmem --live: the balloon driver in the guest gives memory back or takes it."""
        dom = self._domain(ref)
        with translated(f"cannot change the memory of {ref!r}", "only a running guest's balloon can move"):
            dom.setMemoryFlags(kib, libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def create(self, definition: str) -> Guest:
        """Start a guest from libvirt XML without keeping the definition (`virsh create`, `xm create`); on the Xen
        driver from an xl.cfg or old xm config too, which libvirt turns into XML (`virsh domxml-from-native`)."""
        if self.is_xen and definition_format(definition) is DefinitionFormat.XL_CFG:
            definition = self._xml_from_xl(definition)
        try:
            name = domxml.name_of(definition)
        except Exception as exc:
            raise Dom0Error(f"not a libvirt domain definition: {exc}", "the file must be libvirt domain XML") from exc
        if not name:
            raise Dom0Error("the definition has no <name>", "add <name>...</name> to the domain XML")
        try:
            existing = self.guest(name)
        except GuestNotFound:
            pass
        else:
            if existing.state.is_active:
                raise GuestStateError(f"guest {name!r} already runs (ID {existing.id})", "pick another <name>")
            raise GuestStateError(f"a guest named {name!r} is already defined", f"start it with `dom0 start {name}`")
        with translated(f"cannot create guest {name!r}", "check the XML with `virt-xml-validate FILE`"):
            dom = self._conn.createXML(definition, 0)
            return _guest_from_domain(dom, dom.info())

    def _xml_from_xl(self, text: str) -> str:
        """The domain XML libvirt's Xen driver makes of an xl.cfg (an xm config is converted to one first)."""
        # Imported here: only `create` of a non-XML file on Xen needs the xl.cfg parsers, and every other dom0 run
        # through libvirt would pay for loading them (noticeable in an emulated Xen dom0).
        from dom0.hypervisor.xl import xmconfig

        xl = xmconfig.xl_text(text)
        with translated("libvirt cannot read the xl.cfg", "check the file with `xl create -n FILE`"):
            return str(self._conn.domainXMLFromNative("xen-xl", xl, 0))

    def _control(self, ref: str, verb: str, call: Callable[[libvirt.virDomain], object], *, active: bool) -> None:
        dom = self._domain(ref)
        state = _STATES.get(dom.info()[0], GuestState.NOSTATE)
        if active and not state.is_active:
            raise GuestStateError(f"cannot {verb} {ref!r}: it is not running", f"start it with `dom0 start {ref}`")
        if not active and state.is_active:
            raise GuestStateError(f"cannot {verb} {ref!r}: it is already running", f"`dom0 list {ref}` shows its state")
        with translated(f"cannot {verb} {ref!r}"):
            call(dom)

    def start(self, ref: str) -> Guest:
        """Start a defined guest."""
        self._control(ref, "start", lambda d: d.create(), active=False)
        return self.guest(ref)

    def shutdown(self, ref: str) -> None:
        """Ask the guest for an orderly shutdown (ACPI power button, or Xen's shutdown request)."""
        self._control(ref, "shut down", lambda d: d.shutdown(), active=True)

    def reboot(self, ref: str) -> None:
        """Ask the guest to reboot."""
        self._control(ref, "reboot", lambda d: d.reboot(0), active=True)

    def destroy(self, ref: str) -> None:
        """Stop the guest at once."""
        self._control(ref, "destroy", lambda d: d.destroy(), active=True)

    def pause(self, ref: str) -> None:
        """Stop scheduling the guest's CPUs."""
        if self.guest(ref).state == GuestState.PAUSED:
            raise GuestStateError(f"{ref!r} is already paused", f"`dom0 resume {ref}` lets it run again")
        self._control(ref, "pause", lambda d: d.suspend(), active=True)

    def resume(self, ref: str) -> None:
        """Let a paused guest run again."""
        if self.guest(ref).state != GuestState.PAUSED:
            raise GuestStateError(f"{ref!r} is not paused", "only a paused guest can be resumed")
        self._control(ref, "resume", lambda d: d.resume(), active=True)

    def save(self, ref: str, path: str) -> None:
        """Write the guest's memory and state to `path` (virsh save); the guest stops."""
        self._control(ref, "save", lambda d: d.save(path), active=True)

    def restore(self, path: str, *, paused: bool = False, expect: str = "") -> Guest:
        """Start a guest again from a file written by save (virsh restore), optionally left paused."""
        with translated(f"cannot restore {path}", "give the path of a file written by save, readable by libvirtd"):
            if expect or not Path(path).is_file():
                xml = ""  # a FIFO: reading its header here would eat the stream
            else:
                try:
                    xml = self._conn.saveImageGetXMLDesc(path, 0)
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                        raise
                    xml = ""  # libvirt's Xen (libxl) driver cannot read a save file's XML: find what is new
            active = libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE
            before = set() if expect or xml else {d.UUIDString() for d in self._conn.listAllDomains(active)}
            self._conn.restoreFlags(path, None, libvirt.VIR_DOMAIN_SAVE_PAUSED if paused else 0)
            if expect:
                return self.guest(expect)
            if not xml:
                after = self._conn.listAllDomains(active)
                fresh = [d.UUIDString() for d in after if d.UUIDString() not in before]
                if len(fresh) == 1:
                    return self.guest(fresh[0])
                raise Dom0Error(f"restored {path}, but cannot tell which guest it is", "`dom0 list` shows it")
        return self.guest(domxml.uuid_of(xml) or domxml.name_of(xml))

    def autostart_guests(self) -> list[str]:
        """Defined guests with libvirt's autostart flag set."""
        with translated("cannot list guests"):
            domains = self._conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART)
            return sorted(d.name() for d in domains)

    def set_autostart(self, ref: str, enabled: bool) -> None:
        """libvirt's autostart flag (only defined guests have one)."""
        dom = self._domain(ref)
        with translated(f"cannot change autostart of {ref!r}"):
            if dom.isPersistent():
                dom.setAutostart(1 if enabled else 0)

    def console(self, ref: str) -> Console:
        """Attach to the guest's first serial console through a libvirt stream."""
        dom = self._domain(ref)
        if not _STATES.get(dom.info()[0], GuestState.NOSTATE).is_active:
            raise GuestStateError(f"{ref!r} is not running, so it has no console", f"`dom0 start {ref}` first")
        return LibvirtConsole.attach(self.uri, dom.UUIDString(), ref)

    # -- logs -----------------------------------------------------------------------------------------------

    def hypervisor_log(self) -> LogText:
        """`xl dmesg` on Xen; the host kernel's log for QEMU/KVM, which live in the host kernel."""
        from dom0 import run

        if not self.is_local:
            raise Dom0Error(f"the log of the remote host {urlparse(self.uri).hostname} is not readable from here")
        if self.is_xen:
            return LogText("xl dmesg: the Xen hypervisor's message buffer", run.output(["xl", "dmesg"]))
        if self.uri.startswith("test:"):
            return LogText("the test driver keeps no log", "")
        try:
            text = run.output(["dmesg"])
        except CommandError as exc:
            raise Dom0Error(f"cannot read the host kernel log: {exc}", "run as root") from exc
        return LogText("dmesg: the host kernel's log (KVM and QEMU's host side report there)", text)

    def guest_logs(self, ref: str) -> list[LogText]:
        """The guest's console log and libvirt's log of the guest, those that exist and can be read."""
        details = self.details(ref)
        if not self.is_local or self.uri.startswith("test:"):
            return []  # test:// guests are imaginary: a same-named file on disk belongs to a real guest
        driver = "libxl" if self.is_xen else "qemu"
        candidates = [
            (details.console_log, f"console log of {details.guest.name} ({details.console_log})"),
            (
                f"/var/log/libvirt/{driver}/{details.guest.name}.log",
                f"libvirt's log of {details.guest.name} (/var/log/libvirt/{driver}/{details.guest.name}.log)",
            ),
        ]
        if self.is_xen and not details.console_log:
            # libvirt's XML of a Xen guest names no console log; xenconsoled --log=guest keeps one here
            xen_log = f"/var/log/xen/console/guest-{details.guest.name}.log"
            candidates.insert(0, (xen_log, f"console log of {details.guest.name} ({xen_log})"))
        logs = []
        for path, source in candidates:
            text = read_log_tail(Path(path)) if path else None
            if text is not None:
                logs.append(LogText(source, text))
        return logs


# A test driver node file describes a whole imaginary host; anything this large is the wrong file.
NODE_FILE_LIMIT = 16 << 20


def _answered_within(seconds: float, call: Callable[[], T], choice: UriChoice) -> T:
    """`call()`'s result, or HypervisorUnavailable when it has not returned after `seconds`: a daemon that accepts
    connections but never answers would otherwise hang dom0 (and every script calling it) for good."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def attempt() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    worker = threading.Thread(target=attempt, name="libvirt-connect", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise HypervisorUnavailable(
            f"{choice.uri} ({choice.reason}) did not answer within {seconds:g} s",
            "is the daemon hung? check `systemctl status libvirtd` (or virtqemud/virtxend); on a very busy host "
            "set DOM0_CONNECT_TIMEOUT to wait longer",
        )
    if failure:
        raise failure[0]
    return outcome[0]


def _check_test_node_file(choice: UriChoice) -> None:
    """test:///PATH has libvirt load PATH as an imaginary host. Only a <node> document is handed over: libvirt
    would read a FIFO or device forever, and quotes a file that is no XML on stderr (/etc/passwd, line by line)."""
    parsed = urlparse(choice.uri)
    if parsed.scheme != "test" or parsed.netloc or parsed.path in ("", "/", "/default"):
        return
    path = Path(parsed.path)
    hint = "test:///default is libvirt's built-in test host; test:///PATH needs a test driver <node> XML file"
    try:
        data = read_regular(path, NODE_FILE_LIMIT)
    except Dom0Error as exc:
        raise HypervisorUnavailable(f"cannot connect to {choice.uri} ({choice.reason}): {exc.message}", hint) from exc
    if domxml.root_tag(data) != "node":
        raise HypervisorUnavailable(
            f"cannot connect to {choice.uri} ({choice.reason}): {path} is not a libvirt test driver <node> file", hint
        )


def _connect_hint(uri: str, message: str) -> str:
    if "no connection driver" in message or "no driver" in message or "unsupported" in message.lower():
        return URI_HINT
    if "socket" in message or "Connection refused" in message:
        return "is libvirtd running? start it (systemctl start libvirtd), or pick another hypervisor with -c URI"
    if "ermission" in message or "authentication" in message:
        return "run as root, or as a member of the libvirt group"
    return f"check that the hypervisor at {uri} is up; {URI_HINT}"


def _counters_from_stats(dom: libvirt.virDomain, stats: dict[str, Any], now: float) -> GuestCounters:
    guest = _guest_from_stats(dom, stats)
    disks = tuple(
        DiskCounters(
            target=str(stats.get(f"block.{i}.name", "")),
            rd_bytes=int(stats.get(f"block.{i}.rd.bytes", 0)),
            wr_bytes=int(stats.get(f"block.{i}.wr.bytes", 0)),
            rd_reqs=int(stats.get(f"block.{i}.rd.reqs", 0)),
            wr_reqs=int(stats.get(f"block.{i}.wr.reqs", 0)),
        )
        for i in range(int(stats.get("block.count", 0)))
    )
    nics = tuple(
        NicCounters(
            target=str(stats.get(f"net.{i}.name", "")),
            rx_bytes=int(stats.get(f"net.{i}.rx.bytes", 0)),
            tx_bytes=int(stats.get(f"net.{i}.tx.bytes", 0)),
            rx_packets=int(stats.get(f"net.{i}.rx.pkts", 0)),
            tx_packets=int(stats.get(f"net.{i}.tx.pkts", 0)),
        )
        for i in range(int(stats.get("net.count", 0)))
    )
    return GuestCounters(guest, now, disks, nics)


def _attr(text: str) -> str:
    """`text` safe inside a single-quoted XML attribute."""
    from html import escape

    return escape(text, quote=True)  # &, <, >, " and ' all become entities
