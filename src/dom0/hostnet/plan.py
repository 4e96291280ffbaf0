"""`dom0 net plan`: a bridge for the guests over a bond of the host's NICs (straight on the NIC when there is one),
written in the host's own format (ifupdown, systemd-networkd or netplan), with the bond watching carrier (miimon)
and never the ARP monitor, and installed on request with a backup of every file it replaces.

Nothing here brings an interface up or down: the admin runs the printed command, preferably from the console.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import re
import stat
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from dom0.errors import Dom0Error, UsageError
from dom0.filedata import read_regular

FORMATS = ("ifupdown", "networkd", "netplan")
MODES = ("active-backup", "balance-rr", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb")
MIIMON_MS = 100
# A NIC whose carrier comes back is used only after this long: switch ports and NICs often bounce while they
# negotiate. A multiple of MIIMON_MS, as the kernel requires.
UPDELAY_MS = 200
# Modes that spread traffic by a hash of the addresses: layer2+3 keeps one guest's flows on one NIC.
_HASHED = ("802.3ad", "balance-xor")
# configuration files are a few KiB; a larger one is not what this plan replaces
_FILE_LIMIT = 1 << 20
_IFNAMSIZ = 16  # the kernel's limit, with the terminating NUL
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class PlannedFile:
    """One configuration file of the plan: its absolute path on the host, its whole text and its mode."""

    path: str
    content: str
    mode: int = 0o644


@dataclass(frozen=True, slots=True)
class NetPlan:
    """What `dom0 net plan` proposes: the files (in the order to write them), the command that applies them, and
    notes the admin should read first (switch configuration, stanzas that would conflict)."""

    format: str
    bridge: str
    bond: str | None  # None: one NIC, bridged directly
    files: tuple[PlannedFile, ...]
    command: str
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Written:
    """What `--write` did: files written, files already as planned, and (original, backup) pairs."""

    written: tuple[Path, ...]
    unchanged: tuple[Path, ...]
    backups: tuple[tuple[Path, Path], ...]


# -- validation: at the edge, before anything is rendered -------------------------------------------------------------


def check_ifname(name: str, what: str) -> str:
    """`name` if Linux takes it as an interface name and every format can carry it unquoted; UsageError if not."""
    if not name or len(name) >= _IFNAMSIZ:
        raise UsageError(
            f"{what} {name!r}: an interface name is 1 to {_IFNAMSIZ - 1} characters",
            "give the name `ip link` shows (e.g. eno1, enp3s0f1, bond0, xenbr0)",
        )
    if name in (".", "..") or "/" in name or ":" in name or any(c.isspace() for c in name):
        raise UsageError(
            f"{what} {name!r} is not a valid interface name (no '/', ':' or whitespace, not '.' or '..')",
            "give the name `ip link` shows",
        )
    if not _PLAIN_NAME.fullmatch(name) or name.startswith("-"):
        raise UsageError(
            f"{what} {name!r}: dom0 writes only names of letters, digits, '.', '_' and '-' (not leading)",
            "rename the interface (udev or systemd .link file), or write this part of the configuration by hand",
        )
    return name


def parse_uplinks(text: str) -> tuple[str, ...]:
    """NIC[,NIC...] as --uplink takes it: each a valid name, none twice."""
    names = tuple(n.strip() for n in text.split(","))
    if not any(names):
        raise UsageError("--uplink names no NIC", "give the host's NICs, e.g. --uplink eno1,eno2")
    for n in names:
        check_ifname(n, "--uplink")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"--uplink names {', '.join(twice)} more than once", "name each NIC once")
    return names


def parse_address(
    address: str | None, gateway: str | None
) -> tuple[
    ipaddress.IPv4Interface | ipaddress.IPv6Interface | None, ipaddress.IPv4Address | ipaddress.IPv6Address | None
]:
    """--address ADDR/PREFIX and --gateway IP, checked together; (None, None) means DHCP."""
    iface = None
    if address is not None:
        if "/" not in address:
            raise UsageError(
                f"--address {address!r} has no prefix length", "write it as ADDR/PREFIX, e.g. 192.0.2.10/24"
            )
        try:
            iface = ipaddress.ip_interface(address)
        except ValueError as exc:
            raise UsageError(f"--address {address!r} is not ADDR/PREFIX: {exc}", "e.g. 192.0.2.10/24") from exc
    if gateway is None:
        return iface, None
    try:
        gw = ipaddress.ip_address(gateway)
    except ValueError as exc:
        raise UsageError(f"--gateway {gateway!r} is not an IP address", "e.g. --gateway 192.0.2.1") from exc
    if iface is None:
        raise UsageError("--gateway needs --address", "without --address the bridge asks DHCP, which names the gateway")
    if gw.version != iface.version:
        raise UsageError(f"--gateway {gw} and --address {iface} are not the same IP version", "give a matching pair")
    return iface, gw


# -- the host's format ------------------------------------------------------------------------------------------------


def default_format(root: Path) -> tuple[str, str]:
    """The format the host under `root` uses, and why: networkd files present, else netplan's, else ifupdown."""
    networkd = root / "etc/systemd/network"
    found = sorted(p.name for p in _listing(networkd) if p.suffix in (".network", ".netdev") and _is_file(p))
    if found:
        return "networkd", f"systemd-networkd configuration found (/etc/systemd/network/{found[0]})"
    netplan = sorted(p.name for p in _listing(root / "etc/netplan") if p.suffix == ".yaml" and _is_file(p))
    if netplan:
        return "netplan", f"netplan configuration found (/etc/netplan/{netplan[0]})"
    return "ifupdown", "no systemd-networkd or netplan configuration found: ifupdown (/etc/network/interfaces)"


def _listing(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except OSError:
        return []


def _is_file(path: Path) -> bool:
    # a unit masked by a symlink to /dev/null configures nothing
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


# -- rendering --------------------------------------------------------------------------------------------------------


def plan_bridge(
    bridge: str,
    uplinks: tuple[str, ...],
    *,
    bond_mode: str,
    bond_name: str,
    address: str | None,
    gateway: str | None,
    format: str,
    root: Path | None = None,
) -> NetPlan:
    """The files that make `bridge` over a bond of `uplinks` (over the one uplink when there is one) in `format`.

    `root`, when given, is read only for notes (an ifupdown stanza already configuring one of these NICs).
    """
    check_ifname(bridge, "--bridge")
    for nic in uplinks:
        check_ifname(nic, "--uplink")
    if not uplinks:
        raise UsageError("--uplink names no NIC", "give the host's NICs, e.g. --uplink eno1,eno2")
    if len(set(uplinks)) != len(uplinks):
        raise UsageError("--uplink names a NIC more than once", "name each NIC once")
    if bond_mode not in MODES:
        raise UsageError(f"unknown bond mode {bond_mode!r}", "one of " + ", ".join(MODES))
    if format not in FORMATS:
        raise UsageError(f"unknown format {format!r}", "one of " + ", ".join(FORMATS))
    bond = check_ifname(bond_name, "--bond") if len(uplinks) > 1 else None
    taken = {bridge, *([bond] if bond else [])}
    clash = sorted(taken & set(uplinks)) or ([bridge] if bond == bridge else [])
    if clash:
        raise UsageError(f"{clash[0]} is named both as an uplink and as the bridge or bond", "give distinct names")
    iface, gw = parse_address(address, gateway)
    spec = _Spec(bridge, uplinks, bond, bond_mode, iface, gw)
    render = {"ifupdown": _ifupdown, "networkd": _networkd, "netplan": _netplan}[format]
    files, command = render(spec)
    notes = [*_mode_notes(spec), *_address_notes(spec)]
    if format == "ifupdown" and root is not None:
        notes += _ifupdown_conflicts(root, (*uplinks, *taken))
    if format == "networkd":
        notes.append(
            "systemd-networkd applies the first .network file (in name order) that matches a NIC: one sorting "
            "before 10-dom0-* and matching these NICs (e.g. Name=en*) wins; `networkctl status NIC` shows which"
        )
    notes.append(
        f"apply with `{command}` from the console (IPMI, iLO, serial or the VM host's console), not over SSH "
        "through these NICs: the host's address moves to the bridge and goes away for a moment, and a mistake "
        "leaves you cut off"
    )
    return NetPlan(format, bridge, bond, tuple(files), command, tuple(notes))


@dataclass(frozen=True, slots=True)
class _Spec:
    bridge: str
    uplinks: tuple[str, ...]
    bond: str | None
    mode: str
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface | None
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None

    @property
    def port(self) -> str:
        """The bridge's one port: the bond, or the NIC."""
        return self.bond or self.uplinks[0]

    def summary(self) -> str:
        if self.bond:
            return f"bridge {self.bridge} over {self.bond} ({self.mode}) of {', '.join(self.uplinks)}"
        return f"bridge {self.bridge} over {self.uplinks[0]} (one NIC: no bond)"


def _comment(prefix: str, *paragraphs: str) -> list[str]:
    """Paragraphs as comment lines of at most 100 columns, each line starting with `prefix` ('#', '        #')."""
    width = 100 - len(prefix) - 1
    return [f"{prefix} {line}" for text in paragraphs for line in textwrap.wrap(text, width)]


def _why_miimon(prefix: str) -> list[str]:
    """The comment every format carries above the bond's settings: what an admin tempted by ARP should read."""
    return _comment(
        prefix,
        f"The bond watches each NIC's carrier every {MIIMON_MS} ms (miimon), never with ARP probes: under a bridge "
        "the host's address sits on the bridge, not on the bond, so ARP probes miss their replies and the bond "
        f"flaps every few seconds; and a pulled cable is seen within {MIIMON_MS} ms, not after two ARP intervals.",
        f"updelay {UPDELAY_MS} ms: a NIC whose cable comes back is used only once it has had carrier that long "
        "(switch ports and NICs bounce while they negotiate); with no other NIC up the bond takes it at once.",
        "downdelay 0: a NIC that loses carrier is dropped at the next check, so traffic moves over without waiting.",
    )


def _why_no_stp(prefix: str) -> list[str]:
    return _comment(
        prefix,
        "STP off and forward delay 0: the bridge has one uplink (a bond is one port), so there is no loop for STP "
        "to break, and a port forwards at once instead of after 30 s of listening and learning.",
    )


def _header(comment: str, path: str, spec: _Spec) -> list[str]:
    return [
        f"{comment} {path}: written by `dom0 net plan` ({spec.summary()}).",
        f"{comment} Review it before applying it; the file it replaced, if any, is kept beside it as *.dom0-bak-*.",
    ]


def _ifupdown(spec: _Spec) -> tuple[list[PlannedFile], str]:
    path = f"/etc/network/interfaces.d/{spec.bridge}"
    lines = _header("#", path, spec)
    if spec.bond:
        lines += ["#", *_why_miimon("#"), ""]
        lines.append(f"# The NICs: no address and no `auto` of their own: {spec.bond} enslaves them when it comes up.")
        lines += [f"iface {nic} inet manual" for nic in spec.uplinks]
        lines += ["", f"auto {spec.bond}", f"iface {spec.bond} inet manual"]
        lines += [
            f"    bond-slaves {' '.join(spec.uplinks)}",
            f"    bond-mode {spec.mode}",
            f"    bond-miimon {MIIMON_MS}",
            f"    bond-updelay {UPDELAY_MS}",
            "    bond-downdelay 0",
        ]
        if spec.mode == "active-backup":
            lines.append(f"    bond-primary {spec.uplinks[0]}")
        if spec.mode in _HASHED:
            lines.append("    bond-xmit-hash-policy layer2+3")
        if spec.mode == "802.3ad":
            lines.append("    bond-lacp-rate slow")
    else:
        lines += ["", f"iface {spec.port} inet manual"]
    lines += ["", *_why_no_stp("#"), f"auto {spec.bridge}"]
    if spec.address is None:
        lines.append(f"iface {spec.bridge} inet dhcp")
    else:
        family = "inet" if spec.address.version == 4 else "inet6"
        lines += [f"iface {spec.bridge} {family} static", f"    address {spec.address.with_prefixlen}"]
        if spec.gateway is not None:
            lines.append(f"    gateway {spec.gateway}")
    lines += [f"    bridge_ports {spec.port}", "    bridge_stp off", "    bridge_fd 0", ""]
    command = f"ifup {spec.bond} {spec.bridge}" if spec.bond else f"ifup {spec.bridge}"
    return [PlannedFile(path, "\n".join(lines))], command


def _networkd(spec: _Spec) -> tuple[list[PlannedFile], str]:
    base = "/etc/systemd/network/10-dom0-"
    files: list[PlannedFile] = []

    def add(name: str, body: list[str], why: list[str] | None = None) -> None:
        path = base + name
        files.append(PlannedFile(path, "\n".join([*_header("#", path, spec), *(why or []), "", *body, ""])))

    add(
        f"{spec.bridge}.netdev",
        ["[NetDev]", f"Name={spec.bridge}", "Kind=bridge", "", "[Bridge]", "STP=no", "ForwardDelaySec=0"],
        ["#", *_why_no_stp("#")],
    )
    if spec.bond:
        bond = ["[Bond]", f"Mode={spec.mode}", f"MIIMonitorSec={MIIMON_MS}ms", f"UpDelaySec={UPDELAY_MS}ms"]
        bond.append("DownDelaySec=0")
        if spec.mode in _HASHED:
            bond.append("TransmitHashPolicy=layer2+3")
        if spec.mode == "802.3ad":
            bond.append("LACPTransmitRate=slow")
        add(f"{spec.bond}.netdev", ["[NetDev]", f"Name={spec.bond}", "Kind=bond", "", *bond], ["#", *_why_miimon("#")])
        for i, nic in enumerate(spec.uplinks):
            body = ["[Match]", f"Name={nic}", "", "[Network]", f"Bond={spec.bond}"]
            if spec.mode == "active-backup" and i == 0:
                body.append("PrimarySlave=true")
            add(f"{spec.bond}-{nic}.network", body)
    add(f"{spec.port}.network", ["[Match]", f"Name={spec.port}", "", "[Network]", f"Bridge={spec.bridge}"])
    net = ["[Match]", f"Name={spec.bridge}", "", "[Network]"]
    if spec.address is None:
        net.append("DHCP=yes")
    else:
        net.append(f"Address={spec.address.with_prefixlen}")
        if spec.gateway is not None:
            net.append(f"Gateway={spec.gateway}")
    add(f"{spec.bridge}.network", net)
    return files, f"networkctl reload && networkctl reconfigure {' '.join(spec.uplinks)}"


_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _yaml_name(name: str) -> str:
    """A name as a YAML key or list item: quoted unless YAML would read it as a plain string anyway."""
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name) and name.lower() not in _YAML_WORDS:
        return name
    return f'"{name}"'


def _netplan(spec: _Spec) -> tuple[list[PlannedFile], str]:
    path = f"/etc/netplan/60-{spec.bridge}.yaml"
    y = _yaml_name
    lines = [*_header("#", path, spec), "network:", "  version: 2", "  ethernets:"]
    lines += [f"    {y(nic)}:" + "\n      dhcp4: false\n      dhcp6: false" for nic in spec.uplinks]
    if spec.bond:
        lines += ["  bonds:", f"    {y(spec.bond)}:"]
        lines.append(f"      interfaces: [{', '.join(y(n) for n in spec.uplinks)}]")
        lines += ["      parameters:", *_why_miimon("        #"), f"        mode: {spec.mode}"]
        lines += [
            f"        mii-monitor-interval: {MIIMON_MS}",
            f"        up-delay: {UPDELAY_MS}",
            "        down-delay: 0",
        ]
        if spec.mode == "active-backup":
            lines.append(f"        primary: {y(spec.uplinks[0])}")
        if spec.mode in _HASHED:
            lines.append("        transmit-hash-policy: layer2+3")
        if spec.mode == "802.3ad":
            lines.append("        lacp-rate: slow")
    lines += ["  bridges:", f"    {y(spec.bridge)}:", f"      interfaces: [{y(spec.port)}]"]
    if spec.address is None:
        lines.append("      dhcp4: true")
    else:
        lines.append(f'      addresses: ["{spec.address.with_prefixlen}"]')
        if spec.gateway is not None:
            lines += ["      routes:", "        - to: default", f'          via: "{spec.gateway}"']
    lines += ["      parameters:", *_why_no_stp("        #"), "        stp: false", "        forward-delay: 0", ""]
    # netplan warns about (and future versions refuse) a configuration others can read: it may hold secrets
    return [PlannedFile(path, "\n".join(lines), 0o600)], "netplan generate && netplan apply"


def _mode_notes(spec: _Spec) -> list[str]:
    if spec.bond is None:
        return [f"one NIC ({spec.uplinks[0]}): no bond; the bridge sits straight on it (bond settings are not used)"]
    nics = ", ".join(spec.uplinks)
    match spec.mode:
        case "active-backup":
            return [
                f"active-backup needs nothing from the switch: {spec.uplinks[0]} carries the traffic while its link "
                f"is up, the others wait and take over within {MIIMON_MS} ms of a lost carrier"
            ]
        case "802.3ad":
            return [
                f"802.3ad needs LACP on the switch: configure the ports of {nics} as one LACP group (LAG, "
                "port-channel, trunk); without it the bond carries traffic on one link at best"
            ]
        case "balance-tlb" | "balance-alb":
            return [
                f"{spec.mode} needs no switch support, but it balances by the MAC addresses of the host's own traffic: "
                "guests behind the bridge keep their MACs, so their traffic may arrive on one NIC only and the switch "
                "sees their MACs move between ports; active-backup is the safe mode under a bridge"
            ]
        case _:
            return [
                f"{spec.mode} needs the switch ports of {nics} grouped as a static link aggregation (EtherChannel, "
                "trunk) without LACP"
                + ("; it also reorders TCP segments across links" if spec.mode == "balance-rr" else "")
            ]


def _address_notes(spec: _Spec) -> list[str]:
    if spec.address is None:
        return [f"{spec.bridge} asks DHCP for the host's address (give --address ADDR/PREFIX for a static one)"]
    if spec.gateway is not None and spec.gateway not in spec.address.network:
        return [f"the gateway {spec.gateway} is outside {spec.address.network}: check --gateway"]
    return []


def _ifupdown_conflicts(root: Path, names: tuple[str, ...]) -> list[str]:
    """Notes for each line of the host's /etc/network/interfaces that already configures one of `names`."""
    path = root / "etc/network/interfaces"
    try:
        text = read_regular(path, _FILE_LIMIT).decode(errors="replace")
    except Dom0Error:
        return []
    notes = []
    sources_dir = False
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if len(words) >= 2 and words[0] in ("source", "source-directory") and "interfaces.d" in words[1]:
            sources_dir = True
        if len(words) >= 2 and words[0] == "iface" and words[1] in names:
            notes.append(
                f"/etc/network/interfaces line {number} configures {words[1]} too: `ifdown {words[1]}` first, then "
                "delete or comment out that stanza (ifupdown refuses an interface defined twice)"
            )
    if not sources_dir:
        notes.append(
            "/etc/network/interfaces does not read /etc/network/interfaces.d: add `source /etc/network/interfaces.d/*`"
        )
    return notes


# -- writing ----------------------------------------------------------------------------------------------------------


def target_of(root: Path, file: PlannedFile) -> Path:
    """Where `file` lands under `root`."""
    return root / file.path.lstrip("/")


def replaced(plan: NetPlan, root: Path) -> list[str | None]:
    """For each file of the plan, the path it would replace (an existing file there), or None."""
    return [f.path if os.path.lexists(target_of(root, f)) else None for f in plan.files]


def backup_name(target: Path, stamp: str, n: int = 0) -> Path:
    """NAME.dom0-bak-STAMP (then .1, .2, ...): beside the file, out of what the tools read.

    In a directory ifupdown sources wholesale (`source /etc/network/interfaces.d/*` is Debian's default) any name
    would be read as configuration, and a second copy of the stanzas breaks `ifup`: there the backup is a dot-file,
    which the glob skips. networkd reads only *.network/*.netdev and netplan *.yaml, which the suffix avoids.
    """
    name = f"{target.name}.dom0-bak-{stamp}" + (f".{n}" if n else "")
    if target.parent.name == "interfaces.d":
        name = "." + name
    return target.with_name(name)


def write_plan(plan: NetPlan, root: Path, now: float | None = None) -> Written:
    """Install the plan's files under `root`: each written to a temporary file beside it and renamed into place,
    a file it replaces kept as a backup (never over an older one). On any failure everything this run wrote is
    undone (originals back in place, new files and directories removed) and Dom0Error says what failed."""
    if not root.is_dir():
        raise Dom0Error(f"{root} is not a directory", "give --root the directory the host's /etc is under")
    stamp = time.strftime("%Y%m%d%H%M%S", time.localtime(now))
    made_dirs: list[Path] = []
    temps: list[tuple[PlannedFile, Path, Path]] = []  # (file, target, temporary)
    done: list[tuple[Path, Path | None]] = []  # (target, its backup or None for a new file), in order
    unchanged: list[Path] = []
    try:
        for f in plan.files:
            target = target_of(root, f)
            if _same_content(target, f.content):
                unchanged.append(target)
                continue
            made_dirs += _make_parents(target.parent, root)
            temps.append((f, target, _write_temp(target, f)))
        for _, target, tmp in temps:
            backup = _keep_backup(target, stamp)
            done.append((target, backup))
            os.replace(tmp, target)
            _sync_dir(target.parent)
    except BaseException as exc:
        _undo(done, temps, made_dirs)
        if isinstance(exc, OSError):
            where = exc.filename or root
            raise Dom0Error(
                f"cannot write {where}: {exc.strerror}; nothing was changed",
                "run as root, or give --root a directory you can write",
            ) from exc
        raise
    return Written(tuple(t for t, _ in done), tuple(unchanged), tuple((t, b) for t, b in done if b is not None))


def _same_content(target: Path, content: str) -> bool:
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise Dom0Error(f"cannot look at {target}: {exc.strerror}", "check the path and permissions") from exc
    if not stat.S_ISREG(st.st_mode):
        # a symlink is replaced by nothing of dom0's: where it points may be shared with other hosts or packages
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise Dom0Error(f"{target} is {kind}; dom0 replaces only regular files", "move it aside, then run again")
    return read_regular(target, _FILE_LIMIT) == content.encode()


def _make_parents(directory: Path, root: Path) -> list[Path]:
    """Create `directory` and missing parents (never `root` itself); the ones created, outermost first."""
    missing: list[Path] = []
    d = directory
    while d != root and not d.exists():
        missing.append(d)
        d = d.parent
    made = []
    for d in reversed(missing):
        os.mkdir(d, 0o755)
        made.append(d)
    return made


def _write_temp(target: Path, f: PlannedFile) -> Path:
    # a dot-name beside the target: the same filesystem (so the rename is atomic), and skipped by the tools' globs
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".dom0-tmp", dir=target.parent)
    try:
        os.fchmod(fd, f.mode)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(f.content)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def _keep_backup(target: Path, stamp: str) -> Path | None:
    """Hard-link the file at `target` to a new backup name (the link fails rather than overwrite an older backup);
    None when there is nothing to keep."""
    if not os.path.lexists(target):
        return None
    for n in range(100):
        backup = backup_name(target, stamp, n)
        try:
            os.link(target, backup, follow_symlinks=False)
        except FileExistsError:
            continue
        return backup
    raise OSError(errno.EEXIST, "too many backups made this second", str(target))


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _undo(done: list[tuple[Path, Path | None]], temps: list[tuple[PlannedFile, Path, Path]], dirs: list[Path]) -> None:
    """Put back what a failed write changed, newest first; best effort, as the failure is what gets reported."""
    for target, backup in reversed(done):
        with contextlib.suppress(OSError):
            if backup is None:
                target.unlink(missing_ok=True)
            else:
                os.replace(backup, target)  # the backup is the original's own inode
                # rename between two links of one inode does nothing: the replace never happened, drop the backup
                backup.unlink(missing_ok=True)
    for _, _, tmp in temps:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    for d in reversed(dirs):
        with contextlib.suppress(OSError):
            d.rmdir()
