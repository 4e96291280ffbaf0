"""The Hypervisor protocol over Xen's native `xl` toolstack (URI xl://), for Xen hosts without libvirt.

Differences from libvirt that users see:
- xl keeps no definitions: only running (or paused, crashed...) domains exist, so `include_inactive` changes
  nothing, every guest but Domain-0 is transient, and `start NAME` runs /etc/xen/NAME.cfg (or /etc/xen/NAME).
  A guest that is not running is found by that file's name (shut off, its details read from the file), so what
  works on a stopped guest (export, clone, inspect) works on xl:// too.
- A guest's definition is libxl's config as `xl list -l NAME` prints it (JSON), not an xl.cfg file.
- Types are named as libvirt's libxl driver names them: hypervisor type "xen", OS type "linux" (PV),
  "xenpvh" (PVH) or "hvm".
Every command runs through dom0.run; Domain-0 is listed (ID 0) as xl lists it, but cannot be controlled.
"""

from __future__ import annotations

import os
import socket
import stat
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlparse

from dom0 import run
from dom0.errors import CommandError, Dom0Error, GuestNotFound, GuestStateError, HypervisorUnavailable, UsageError
from dom0.filedata import DEFINITION_LIMIT, read_regular
from dom0.hypervisor.definition import DefinitionFormat, definition_format
from dom0.hypervisor.neighbours import neighbour_addresses
from dom0.hypervisor.protocol import LogText, UriChoice, guest_id, read_log_tail
from dom0.hypervisor.xl import config as xlcfg
from dom0.hypervisor.xl import parse as xlparse
from dom0.hypervisor.xl import xmconfig
from dom0.hypervisor.xl.parse import DomainConfig, ListRow, TopDomain
from dom0.model import (
    BalloonReport,
    DiskCounters,
    Guest,
    GuestAddress,
    GuestConfig,
    GuestCounters,
    GuestDetails,
    GuestMemory,
    GuestState,
    HostInfo,
    NicCounters,
    SaveFormat,
    StatsSource,
)
from dom0.saves.formats import HEAD_BYTES
from dom0.saves.formats import xl as xlsave

XL = "xl"
XENTOP = "xentop"
CONSOLE_LOG_DIR = Path("/var/log/xen/console")
XEN_LOG_DIR = Path("/var/log/xen")
CONFIG_DIR = Path("/etc/xen")
ESCAPE = b"\x1d"  # Ctrl-]: xl console's own detach key
CONSOLE_TAIL = 1024  # bytes of xl console's output kept to say why it failed

# xl create/restore boot a guest and wait for its devices; under emulation that takes ~10 s, so allow plenty.
SLOW_TIMEOUT_S = 600.0


def _fast_timeout() -> float:
    """Seconds a quick xl query may take before xenstored counts as hung: $DOM0_XL_TIMEOUT, default 30.

    A real host answers in milliseconds; an emulated dom0 busy restoring a guest has been seen to need over 30 s.
    """
    try:
        return max(1.0, float(os.environ.get("DOM0_XL_TIMEOUT", "30")))
    except ValueError:
        return 30.0


FAST_TIMEOUT_S = _fast_timeout()

UNAVAILABLE_HINT = (
    "is this a Xen dom0 with its toolstack running (xenstored, xenconsoled: `service xencommons start`) and are "
    "you root? Or pick libvirt with -c xen:///system"
)
# What xl (or Debian's wrapper around it) prints when there is no Xen or no toolstack to talk to.
_UNAVAILABLE_SIGNS = (
    "cannot init xl context",
    "hypervisor information",
    "hypervisor is not xen",
    "libxl_ctx_alloc",
    "could not obtain handle",
    "xenstore",
    "xs_open",
    "permission denied",
    "command not found",
)


def _ref_matches(ref: str, name: str, uuid: str, domid: int) -> bool:
    return ref == name or ref.lower() == uuid.lower() or guest_id(ref) == domid


class XlHypervisor:
    """Xen's `xl` toolstack seen through dom0's Hypervisor protocol."""

    def __init__(self, uri: str = "xl://", reason: str = "") -> None:
        self.uri = uri
        self._reason = reason
        # domid -> config; a domid is not reused until the counter wraps, so this cache only grows stale when a
        # domain goes away, and then it is simply not asked for again.
        self._configs: dict[int, DomainConfig] = {}
        # the xl.cfg of each stopped guest found so far, by the name and UUID it was asked by or has: later calls
        # name it by UUID, which no file name says
        self._cfg_paths: dict[str, Path] = {}

    @classmethod
    def open(cls, choice: UriChoice) -> XlHypervisor:
        """Check that `xl` is there; HypervisorUnavailable (with what was tried) when it is not."""
        host = urlparse(choice.uri).hostname
        if host and host != "localhost":
            raise HypervisorUnavailable(
                f"cannot connect to {choice.uri} ({choice.reason}): xl:// drives this host's Xen only",
                f"run dom0 on {host}, or reach it through libvirt with -c xen+ssh://root@{host}/system",
            )
        if not run.available(XL):
            raise HypervisorUnavailable(
                f"cannot connect to {choice.uri} ({choice.reason}): the xl command is not installed",
                "install Xen's tools (Debian: xen-utils), or pick libvirt with -c URI",
            )
        return cls(choice.uri, choice.reason)

    @property
    def save_format(self) -> SaveFormat:
        """`xl save` files."""
        return SaveFormat.XL

    def close(self) -> None:
        """Nothing to release: every call is a separate xl run."""

    # -- running xl -----------------------------------------------------------------------------------------

    def _run(self, args: Sequence[str], what: str, *, timeout: float = FAST_TIMEOUT_S, hint: str = "") -> str:
        """Run a Xen tool; a missing toolstack becomes HypervisorUnavailable, other failures say `what` failed."""
        try:
            return run.output(args, timeout=timeout)
        except CommandError as exc:
            detail = (exc.stderr or exc.message).strip()
            reason = f" ({self._reason})" if self._reason else ""
            if "did not finish within" in exc.message and timeout <= FAST_TIMEOUT_S:
                # xl blocks forever on a dead xenstored instead of failing
                raise HypervisorUnavailable(
                    f"cannot connect to {self.uri}{reason}: {exc.message}",
                    "is xenstored running? (`service xencommons status`); a hung xenstored needs the host's admin",
                ) from exc
            if any(sign in detail.lower() for sign in _UNAVAILABLE_SIGNS):
                raise HypervisorUnavailable(
                    f"cannot connect to {self.uri}{reason}: {_last_line(detail)}", UNAVAILABLE_HINT
                ) from exc
            raise Dom0Error(f"{what}: {_last_line(detail)}", hint or exc.hint) from exc

    def _xl(self, *args: str, what: str, timeout: float = FAST_TIMEOUT_S, hint: str = "") -> str:
        return self._run([XL, *args], what, timeout=timeout, hint=hint)

    def _rows(self) -> list[ListRow]:
        return xlparse.parse_list(self._xl("list", what="cannot list guests"))

    def _load_configs(self) -> None:
        entries = xlparse.parse_list_long(self._xl("list", "-l", what="cannot read the guests' configs"))
        self._configs = {c.domid: c for c in map(xlparse.domain_config, entries) if c.domid >= 0}

    def _config(self, row: ListRow) -> DomainConfig:
        """The config of a listed domain, read again only when the domid is new or carries another name."""
        cfg = self._configs.get(row.id)
        if cfg is None or (cfg.name and cfg.name != row.name):
            self._load_configs()
            cfg = self._configs.get(row.id)
        if cfg is None:  # the domain came or went between the two xl calls
            cfg = DomainConfig(row.id, row.name, "", "pv", 0, 0, 0, {})
        return cfg

    def _guest(self, row: ListRow, cfg: DomainConfig) -> Guest:
        return Guest(
            name=row.name,
            uuid=cfg.uuid or f"00000000-0000-0000-0000-{row.id:012x}",
            id=row.id,
            state=row.state,
            memory_kib=row.memory_mib * 1024,
            max_memory_kib=cfg.max_memory_kib or row.memory_mib * 1024,
            vcpus=row.vcpus,
            cpu_time_ns=row.cpu_time_ns,
            persistent=row.id == 0,  # xl forgets a domU once it stops; Domain-0 is always there
        )

    def _snapshot(self) -> list[tuple[Guest, DomainConfig]]:
        result = []
        for row in self._rows():
            cfg = self._config(row)
            result.append((self._guest(row, cfg), cfg))
        return result

    def _find(self, ref: str) -> tuple[Guest, DomainConfig]:
        for g, cfg in self._snapshot():
            if _ref_matches(ref, g.name, g.uuid, g.id if g.id is not None else -1):
                return g, cfg
        raise GuestNotFound(
            f"no guest named {ref!r} on {self.uri}",
            "guests are named by name, UUID or ID; `dom0 list` shows them (xl forgets guests once they stop)",
        )

    # -- seeing ---------------------------------------------------------------------------------------------

    def host(self) -> HostInfo:
        """Facts from `xl info`."""
        info = xlparse.parse_info(self._xl("info", what="cannot read host facts"))
        hostname = info.get("host", "")
        if not hostname or hostname == "(none)":
            hostname = socket.gethostname()
        return HostInfo(
            uri=self.uri,
            hostname=hostname,
            hypervisor="Xen",
            hypervisor_version=info.get("xen_version", ""),
            cpus=_int(info.get("nr_cpus")),
            memory_kib=_int(info.get("total_memory")) * 1024,
            free_memory_kib=_int(info.get("free_memory")) * 1024,
        )

    def guests(self, *, include_inactive: bool = False) -> list[Guest]:
        """The domains `xl list` shows, by ID; `include_inactive` adds nothing, as xl keeps no stopped guests."""
        return sorted((g for g, _ in self._snapshot()), key=lambda g: g.id or 0)

    def guest(self, ref: str) -> Guest:
        """The guest with that name, UUID or ID; one that is not running, by the name of its xl.cfg in /etc/xen."""
        try:
            return self._find(ref)[0]
        except GuestNotFound:
            stopped = self._stopped(ref)
            if stopped is None:
                raise
            return stopped[0]

    def _stopped(self, ref: str) -> tuple[Guest, GuestConfig, Path] | None:
        """A guest that is not running, as its xl.cfg describes it: /etc/xen/REF.cfg or /etc/xen/REF, or a file
        found so before under that name or UUID; None when there is none."""
        path = self._cfg_paths.get(ref) or self._cfg_paths.get(ref.lower()) or self._config_path(ref)
        if path is None:
            return None
        try:
            cfg = xlcfg.guest_config(xlcfg.parse(_read_cfg(path), str(path)))
        except UsageError as exc:
            raise GuestNotFound(f"{ref!r} is not running, and {exc.message}", exc.hint) from exc
        # xl draws a random UUID at each start of a file that names none; until then one derived from the file
        uuid = cfg.uuid.lower() or str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"file://{path}"))
        for key in (ref, cfg.name, uuid):
            self._cfg_paths[key] = path
        g = Guest(
            cfg.name, uuid, None, GuestState.SHUTOFF, cfg.memory_mib * 1024, cfg.max_memory_mib * 1024, cfg.vcpus, 0
        )
        return g, cfg, path

    def details(self, ref: str) -> GuestDetails:
        """What `list --long` shows, from the guest's `xl list -l` config (from its xl.cfg when it is not running)."""
        try:
            g, cfg = self._find(ref)
        except GuestNotFound:
            stopped = self._stopped(ref)
            if stopped is None:
                raise
            return _stopped_details(*stopped[:2])
        acts = xlparse.actions(cfg)
        log = CONSOLE_LOG_DIR / f"guest-{g.name}.log"
        return GuestDetails(
            guest=g,
            hypervisor_type="xen",
            os_type=xlparse.OS_TYPES.get(cfg.type, cfg.type),
            boot=xlparse.boot(cfg),
            disks=xlparse.disks(cfg),
            nics=xlparse.nics(cfg),
            autostart=False,  # xl has no autostart; xendomains starts /etc/xen/auto/* at boot
            on_poweroff=acts["on_poweroff"],
            on_reboot=acts["on_reboot"],
            on_crash=acts["on_crash"],
            console_log=str(log) if log.exists() else "",
        )

    def definition(self, ref: str) -> str:
        """libxl's config of the guest as JSON, exactly as `xl list -l NAME` prints it (xl keeps no xl.cfg)."""
        g, _ = self._find(ref)
        return self._xl("list", "-l", str(g.id), what=f"cannot read the config of {g.name!r}")

    def counters(self, refs: Sequence[str] = ()) -> list[GuestCounters]:
        """One `xentop -b -i 1 -x -n -f` run plus `xl list` (for IDs and CPU time to 0.1 s).

        xentop's counters are cumulative from the first iteration (it reads blkback's and netback's totals), so
        one iteration is enough. Disks are named as the guest names them (VBD 51712 -> xvda), bytes are
        sectors * 512, and NIC traffic is turned round to the guest's view (xentop counts on the host's vif).
        """
        top_text = self._run([XENTOP, "-b", "-i", "1", "-x", "-n", "-f"], "cannot read guest statistics")
        taken_at = time.monotonic()
        tops = {t.name: t for t in xlparse.parse_xentop(top_text)}
        snapshot = self._snapshot()
        wanted: set[int] | None = None
        if refs:
            wanted = set()
            for ref in refs:
                matches = [g for g, _ in snapshot if _ref_matches(ref, g.name, g.uuid, g.id or 0)]
                if not matches:
                    self._find(ref)  # raises GuestNotFound with the usual words
                wanted.update(g.id or 0 for g in matches)
        result = []
        for g, cfg in snapshot:
            if wanted is not None and (g.id or 0) not in wanted:
                continue
            top = tops.get(g.name)
            if top is None:
                continue  # the domain came or went between xentop and xl list
            result.append(counters_from_top(g, cfg, top, taken_at))
        return sorted(result, key=lambda c: c.guest.id or 0)

    def memory(self, refs: Sequence[str] = ()) -> list[GuestMemory]:
        """What `xl list` says of each running domain's memory: the pages it holds now, and its maximum.

        Xen keeps no guest-side statistics (its balloon driver reports nothing back), so the guests' own use is
        unknown here; the pages a domain holds are its whole cost to the host.
        """
        taken_at = time.monotonic()
        wanted = {self._find(ref)[0].id for ref in refs}
        result = []
        for g, _cfg in self._snapshot():
            if (wanted and g.id not in wanted) or not g.state.is_active:
                continue
            report = BalloonReport(current_kib=g.memory_kib, maximum_kib=g.max_memory_kib)
            result.append(GuestMemory(g, report, StatsSource.UNSUPPORTED, 0, None, taken_at))
        return result

    def addresses(self, ref: str) -> list[GuestAddress]:
        """xl knows no addresses (no DHCP server, no agent channel): this host's neighbour table by the guest's
        MACs, which holds a guest on a dom0 bridge once it has sent anything."""
        details = self.details(ref)
        if details.guest.state is GuestState.SHUTOFF:
            return []
        return neighbour_addresses(n.mac for n in details.nics)

    def set_memory_stats_period(self, ref: str, seconds: int) -> None:
        """Xen has no such statistics to turn on."""
        raise Dom0Error(
            f"cannot turn on memory statistics of {ref!r}: Xen's balloon driver reports no statistics to dom0",
            "read the guest's own `free -m` (or run a monitoring agent in it)",
        )

    def set_memory(self, ref: str, kib: int) -> None:
        """`xl mem-set`: the guest's balloon driver gives pages back to Xen or takes them."""
        self._control(ref, "change the memory of", lambda g: ["mem-set", str(g.id), f"{kib}k"])

    # -- control --------------------------------------------------------------------------------------------

    def create(self, definition: str) -> Guest:
        """Start a guest from xl.cfg text, or an old xm config converted to it (`xl create`); xl keeps no
        definition of it."""
        if definition_format(definition) is DefinitionFormat.LIBVIRT_XML:
            raise Dom0Error(
                "this is a libvirt domain XML: xl:// starts guests from an xl.cfg",
                "use -c xen:///system (libvirt's Xen driver), or `virsh domxml-to-native xen-xl FILE` for an xl.cfg",
            )
        definition = xmconfig.xl_text(definition)
        name = _cfg_name(definition)
        if not name:
            raise Dom0Error("the xl.cfg has no name=", 'add a line such as name = "web1"')
        self._refuse_existing(name, "name=")
        fd, path = tempfile.mkstemp(prefix=f"dom0-{name}-", suffix=".cfg")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(definition)
            self._xl(
                "create",
                path,
                what=f"cannot create guest {name!r}",
                timeout=SLOW_TIMEOUT_S,
                hint="check the file with `xl create -n FILE` (a dry run that prints the parsed config)",
            )
        finally:
            Path(path).unlink(missing_ok=True)
        return self.guest(name)

    def _refuse_existing(self, name: str, field: str) -> None:
        try:
            existing = self._find(name)[0]
        except GuestNotFound:
            return
        raise GuestStateError(f"guest {name!r} already runs (ID {existing.id})", f"pick another {field}")

    def start(self, ref: str) -> Guest:
        """xl keeps no definitions, so `start NAME` runs /etc/xen/NAME.cfg (or /etc/xen/NAME) with `xl create`."""
        try:
            self._find(ref)
        except GuestNotFound:
            pass
        else:
            raise GuestStateError(f"cannot start {ref!r}: it is already running", f"`dom0 list {ref}` shows its state")
        candidates = [CONFIG_DIR / f"{ref}.cfg", CONFIG_DIR / ref] if "/" not in ref else []
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise GuestNotFound(
                f"no guest named {ref!r} on {self.uri}: xl keeps no stopped guests, and there is no "
                f"{CONFIG_DIR / (ref + '.cfg')} or {CONFIG_DIR / ref}",
                "start it from its xl.cfg file with `dom0 create FILE`",
            )
        name = _cfg_name(_read_cfg(path), str(path)) or ref
        self._xl("create", str(path), what=f"cannot start {ref!r} from {path}", timeout=SLOW_TIMEOUT_S)
        return self.guest(name)

    def _control(self, ref: str, verb: str, args: Callable[[Guest], list[str]], *, active: bool = True) -> Guest:
        g = self.guest(ref)
        if active and not g.state.is_active:
            raise GuestStateError(f"cannot {verb} {ref!r}: it is not running", f"start it with `dom0 start {ref}`")
        if g.id == 0:
            raise GuestStateError(
                f"cannot {verb} Domain-0: it is the host's control domain, where dom0 itself runs",
                "shut the whole host down instead",
            )
        self._xl(*args(g), what=f"cannot {verb} {ref!r}", timeout=SLOW_TIMEOUT_S)
        return g

    def shutdown(self, ref: str) -> None:
        """Ask the guest to shut down (PV control, or the ACPI power button for HVM guests without PV drivers)."""
        self._control(ref, "shut down", lambda g: ["shutdown", "-F", str(g.id)])

    def reboot(self, ref: str) -> None:
        """Ask the guest to reboot."""
        self._control(ref, "reboot", lambda g: ["reboot", "-F", str(g.id)])

    def destroy(self, ref: str) -> None:
        """Stop the guest at once."""
        self._control(ref, "destroy", lambda g: ["destroy", str(g.id)])

    def pause(self, ref: str) -> None:
        """Stop scheduling the guest's CPUs."""
        if self.guest(ref).state == GuestState.PAUSED:
            raise GuestStateError(f"{ref!r} is already paused", f"`dom0 resume {ref}` lets it run again")
        self._control(ref, "pause", lambda g: ["pause", str(g.id)])

    def resume(self, ref: str) -> None:
        """Let a paused guest run again (`xl unpause`)."""
        if self.guest(ref).state != GuestState.PAUSED:
            raise GuestStateError(f"{ref!r} is not paused", "only a paused guest can be resumed")
        self._control(ref, "resume", lambda g: ["unpause", str(g.id)])

    def save(self, ref: str, path: str) -> None:
        """Write the guest's memory and state to `path` (`xl save`); the guest stops."""
        self._control(ref, "save", lambda g: ["save", str(g.id), path])

    def restore(self, path: str, *, paused: bool = False, expect: str = "") -> Guest:
        """Start a guest again from an `xl save` image (`xl restore [-p]`), optionally left paused.

        A regular file's header is read first, to name the guest and refuse one that already runs. Any other path
        (the FIFO dom0 restore streams into) is left whole for xl: its first bytes are the stream, so the caller
        checks the header, and the guest is found afterwards as the domain that is new (named `expect`, when
        given (its UUID or name), to tell it from guests other restores bring up at the same time).
        """
        try:
            regular = stat.S_ISREG(os.stat(path).st_mode)
            head = b""
            if regular:
                with open(path, "rb") as f:
                    head = f.read(HEAD_BYTES)
        except OSError as exc:
            raise Dom0Error(f"cannot read {path}: {exc.strerror}", "give the path of a file written by save") from exc
        args = ["restore", "-p"] if paused else ["restore"]
        if regular:
            header = xlsave.parse(head)
            if header.name:
                self._refuse_existing(header.name, "save file, or destroy the running guest first")
            self._xl(*args, path, what=f"cannot restore {path}", timeout=SLOW_TIMEOUT_S)
            return self.guest(header.uuid or header.name)
        before = {row.id for row in self._rows()}
        self._xl(*args, path, what=f"cannot restore {path}", timeout=SLOW_TIMEOUT_S)
        fresh = [row for row in self._rows() if row.id not in before]
        if expect:
            return self.guest(expect)
        if len(fresh) == 1:
            return self.guest(str(fresh[0].id))
        raise Dom0Error(f"restored {path}, but cannot tell which guest it is", "`dom0 list` shows it")

    def _config_path(self, name: str) -> Path | None:
        candidates = [CONFIG_DIR / f"{name}.cfg", CONFIG_DIR / name] if "/" not in name else []
        return next((p for p in candidates if p.is_file()), None)

    def editable_definition(self, ref: str) -> str:
        """The guest's xl.cfg file (/etc/xen/NAME.cfg or /etc/xen/NAME): xl keeps no definitions of its own."""
        try:
            name = self._find(ref)[0].name
        except GuestNotFound:
            stopped = self._stopped(ref)
            if stopped is not None:
                return _read_cfg(stopped[2])
            name = ref
        path = self._config_path(name)
        if path is None:
            raise Dom0Error(
                f"no xl.cfg for {name!r} in {CONFIG_DIR}", f"xl keeps no definitions: write {CONFIG_DIR / name}.cfg"
            )
        return _read_cfg(path)

    def define(self, definition: str) -> Guest:
        """Write the xl.cfg to /etc/xen/NAME.cfg (never over an existing file); `start NAME` then runs it."""
        cfg = xlcfg.guest_config(xlcfg.parse(definition, "the new definition"))
        if not cfg.name or "/" in cfg.name:
            raise Dom0Error("the new xl.cfg has no usable name")
        if self._config_path(cfg.name) is not None:
            raise Dom0Error(f"{CONFIG_DIR / cfg.name}.cfg already exists", "choose another name")
        path = CONFIG_DIR / f"{cfg.name}.cfg"
        with open(path, "x") as f:
            f.write(definition)
        return Guest(
            cfg.name, cfg.uuid, None, GuestState.SHUTOFF, cfg.memory_mib * 1024, cfg.max_memory_mib * 1024, cfg.vcpus, 0
        )

    def undefine(self, ref: str) -> None:
        """Remove /etc/xen/NAME.cfg of a stopped guest."""
        path = self._config_path(ref)
        if path is None:
            raise GuestNotFound(f"no xl.cfg for {ref!r} in {CONFIG_DIR}")
        path.unlink()

    def external_snapshot(self, ref: str, overlays: Mapping[str, str]) -> None:
        """xl cannot move a guest onto new overlay disks."""
        raise Dom0Error(
            "xl cannot give a guest new overlay disks", "clone with --mode snapshot (LVs) or reflink, or use libvirt"
        )

    def autostart_guests(self) -> list[str]:
        """Guests linked into /etc/xen/auto (xendomains' convention), by the name `start` takes."""
        auto = CONFIG_DIR / "auto"
        names = []
        for link in sorted(auto.glob("*")) if auto.is_dir() else []:
            target = link.resolve()
            if target.parent == CONFIG_DIR and target.is_file():
                names.append(target.name.removesuffix(".cfg"))
        return names

    def set_autostart(self, ref: str, enabled: bool) -> None:
        """Nothing: with xl, only `dom0 host start` (or xendomains) starts guests at boot, after restoring."""

    def console(self, ref: str) -> XlConsole:
        """Attach to the guest's console through `xl console` on a pseudo-terminal."""
        g = self.guest(ref)
        if not g.state.is_active:
            raise GuestStateError(f"{ref!r} is not running, so it has no console", f"`dom0 start {ref}` first")
        return XlConsole(run.spawn_pty([XL, "console", str(g.id)]), g.name)

    # -- logs -----------------------------------------------------------------------------------------------

    def hypervisor_log(self) -> LogText:
        """`xl dmesg`."""
        return LogText("xl dmesg: the Xen hypervisor's message buffer", self._xl("dmesg", what="cannot read xl dmesg"))

    def guest_logs(self, ref: str) -> list[LogText]:
        """xenconsoled's log of the guest's console, xl's log of it and its device model's, those that exist.

        They outlive the guest, so a guest that has stopped (and that xl no longer knows) is looked up by name.
        """
        try:
            name = self.guest(ref).name
        except GuestNotFound:
            name = ref
            if not _log_paths(name) or "/" in ref:
                raise
        logs = []
        for path, what in _log_paths(name):
            text = read_log_tail(path)
            if text is not None:
                logs.append(LogText(f"{what} of {name} ({path})", text))
        return logs


def _stopped_details(g: Guest, cfg: GuestConfig) -> GuestDetails:
    """What `list --long` shows of a guest that is not running: its xl.cfg's settings."""
    log = CONSOLE_LOG_DIR / f"guest-{g.name}.log"
    return GuestDetails(
        guest=g,
        hypervisor_type="xen",
        os_type=xlparse.OS_TYPES.get(cfg.type, str(cfg.type)),
        boot=cfg.boot,
        disks=cfg.disks,
        nics=cfg.nics,
        on_poweroff=cfg.on_poweroff,
        on_reboot=cfg.on_reboot,
        on_crash=cfg.on_crash,
        console_log=str(log) if log.exists() else "",
    )


def _cfg_name(text: str, source: str = "") -> str:
    """The name= of xl.cfg text, read by the xl.cfg parser (which names the line of anything it cannot read)."""
    value = xlcfg.parse(text, source).get("name")
    return value if isinstance(value, str) else ""


def _log_paths(name: str) -> list[tuple[Path, str]]:
    candidates = [
        (CONSOLE_LOG_DIR / f"guest-{name}.log", "console log"),
        (XEN_LOG_DIR / f"xl-{name}.log", "xl's log"),
        (XEN_LOG_DIR / f"qemu-dm-{name}.log", "the device model's log"),
    ]
    return [(p, w) for p, w in candidates if p.is_file()]


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "failed"


def counters_from_top(g: Guest, cfg: DomainConfig, top: TopDomain, taken_at: float) -> GuestCounters:
    """Merge one xentop domain into the guest's counters (pure, so the mapping is testable without Xen)."""
    guest = Guest(
        name=g.name,
        uuid=g.uuid,
        id=g.id,
        state=g.state,
        memory_kib=top.memory_kib or g.memory_kib,
        max_memory_kib=top.max_memory_kib or g.max_memory_kib,
        vcpus=top.vcpus or g.vcpus,
        # xl list's time has 0.1 s steps, xentop's whole seconds: take the finer one unless it lags behind
        cpu_time_ns=max(g.cpu_time_ns, top.cpu_s * 1_000_000_000),
        persistent=g.persistent,
    )
    disks = tuple(
        DiskCounters(
            target=v.target,
            rd_bytes=v.rd_sectors * xlparse.SECTOR_BYTES,
            wr_bytes=v.wr_sectors * xlparse.SECTOR_BYTES,
            rd_reqs=v.rd_reqs,
            wr_reqs=v.wr_reqs,
        )
        for v in top.vbds
    )
    nic_list = xlparse.nics(cfg)
    nics = []
    for net in top.nets:
        # xentop numbers a domain's vifs in /proc/net/dev order, which is the order they were plugged: devid order
        nic = nic_list[net.index] if net.index < len(nic_list) else None
        nics.append(
            NicCounters(
                target=nic.target if nic else xlparse.vif_name(g.id or 0, net.index),
                mac=nic.mac if nic else "",
                # the vif's receive is what the guest sent, and the other way round
                rx_bytes=net.tx_bytes,
                tx_bytes=net.rx_bytes,
                rx_packets=net.tx_packets,
                tx_packets=net.rx_packets,
            )
        )
    return GuestCounters(guest, taken_at, disks, tuple(nics))


class XlConsole:
    """`xl console` on a pseudo-terminal as a Console: bytes in and out; close detaches with Ctrl-].

    xl console ends with 0 when the guest's console goes away (the guest stopped); any other exit code means it could
    not attach (its lock file, xenstore, no console yet), which it says in its last line: an error here, not a
    console that closed.
    """

    def __init__(self, proc: run.PtyProcess, name: str) -> None:
        self._proc = proc
        self._name = name
        self._closed = False
        self._tail = b""  # what xl console printed last: its reason when it fails

    def read(self, timeout: float) -> bytes | None:
        """Bytes from the guest, b'' if none within `timeout`, None once the console closed; Dom0Error when xl
        console failed."""
        if self._closed:
            return None
        data = self._proc.read(timeout)
        if data is None:
            self._closed = True
            self._check_exit()
        else:
            self._tail = (self._tail + data)[-CONSOLE_TAIL:]
        return data

    def _check_exit(self) -> None:
        code = self._proc.close()
        if code == 0:
            return
        lines = [line.strip() for line in self._tail.decode(errors="replace").splitlines() if line.strip()]
        said = lines[-1] if lines else f"exit code {code}"
        if "Could not lock" in said:
            # xenconsole's own lock: one client per console, as libvirt's "active console session"
            raise GuestStateError(
                f"someone else is attached to the console of {self._name!r} ({said})",
                "detach them first (Ctrl-] in their session)",
            )
        raise Dom0Error(
            f"cannot attach to the console of {self._name!r}: xl console failed: {said}",
            f"`xl console {self._name}` fails the same way; is xenconsoled running (`service xencommons status`)?",
        )

    def write(self, data: bytes) -> None:
        """Send keystrokes to the guest."""
        try:
            self._proc.write(data)
        except OSError as exc:
            raise Dom0Error("the console closed while writing") from exc

    def close(self) -> None:
        """Detach (Ctrl-], as xl console expects) and reap the xl process; the guest keeps running."""
        if not self._closed:
            with suppress(OSError):
                self._proc.write(ESCAPE)
        self._closed = True
        self._proc.close()


def _read_cfg(path: Path) -> str:
    """An xl.cfg from /etc/xen: a bounded read of a regular file, as text."""
    try:
        return read_regular(path, DEFINITION_LIMIT).decode()
    except UnicodeDecodeError as exc:
        raise Dom0Error(f"{path} is not UTF-8 text (byte {exc.start})", "fix or replace that xl.cfg file") from exc
