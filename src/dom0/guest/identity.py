"""The identity of a cloned guest, reset inside its own files: hostname, /etc/hosts, static IP, MACs, machine-id,
SSH host keys, udev persistent-net rules and DHCP leases.

plan_identity only reads (so `dom0 clone --dry-run` can print the plan); apply_edits hands the plan to an editor.
Files derived from the guest's own (/etc/hosts, network configs) are edited line by line, and only when they are
regular files: a guest symlink is never read through to build content that is then written elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from dom0.errors import UsageError
from dom0.guest import net
from dom0.guest.net import NetConfig, Static
from dom0.image.osfacts import parse_keyvals
from dom0.image.osinspect import OperatingSystem
from dom0.image.tree import ResolvingTree

if TYPE_CHECKING:
    from dom0.guest.editors import GuestEditor

# /etc/hosts is the one file edited here that can be large by design (ad-blocking lists run to a few MiB).
MAX_HOSTS_READ = 16 * 1024 * 1024

__all__ = ["Edit", "IdentityChange", "apply_edits", "check_request", "plan_identity"]

# What systemd's first boot takes as "no ID yet" (machine-id(5)); cloud-init resets images the same way.
MACHINE_ID_UNSET = b"uninitialized\n"

_LEASE_DIRS = (
    ("/var/lib/dhcp", (".leases", ".lease")),
    ("/var/lib/dhclient", ("",)),
    ("/var/lib/NetworkManager", (".lease", ".leases")),
    ("/var/lib/dhcpcd", (".lease", ".lease6")),
)

_LOCALHOST = {"localhost", "localhost.localdomain", "localhost4", "localhost6", "ip6-localhost", "ip6-loopback"}
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class IdentityChange:
    """What the clone's identity becomes: hostname, static IPv4 ("10.0.0.5/24", see net.static_address) and gateway,
    (old, new) MACs."""

    hostname: str = ""
    address: str = ""
    gateway: str = ""
    macs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Edit:
    """One change to a guest file; `why` says what it is for, for the plan shown before anything is done.

    A "symlink" edit makes `path` a symlink whose target is `data` (as the guest will read it; `mode` unused)."""

    path: str
    action: Literal["write", "remove", "symlink"]
    data: bytes = b""
    mode: int = 0o644
    why: str = ""

    def __str__(self) -> str:
        if self.action == "symlink":
            what = f"link   {self.path} -> {self.data.decode(errors='replace')}"
        else:
            what = f"{'write ' if self.action == 'write' else 'remove'} {self.path}"
        return f"{what}: {self.why}" if self.why else what


def check_request(hostname: str, address: str, gateway: str) -> Static | None:
    """The static address asked for (or None); UsageError when the hostname (RFC 1123: dot-separated labels of
    letters, digits and '-', each 1-63 long, 253 in all) is malformed, or the address or gateway is not what
    net.static_address accepts (IPv4, and why, is said there).

    These end up in the guest's own files and shell-read configs, so they are checked before anything is read."""
    if hostname and (len(hostname) > 253 or not all(_LABEL.match(label) for label in hostname.split("."))):
        raise UsageError(
            f"{hostname!r} is not a valid hostname",
            "use letters, digits and '-' (not first or last), in dot-separated labels of at most 63 characters",
        )
    return net.static_address(address, gateway)


def _check(change: IdentityChange) -> tuple[Static | None, dict[str, str]]:
    static = check_request(change.hostname, change.address, change.gateway)
    macs: dict[str, str] = {}
    for old, new in change.macs:
        if old and new and old.lower() != new.lower():
            macs[net.check_mac(old)] = net.check_mac(new)
    return static, macs


def _write(path: str, text: str, why: str, mode: int = 0o644) -> Edit:
    return Edit(path, "write", text.encode(), mode, why)


def _hostname_edits(tree: ResolvingTree, system: OperatingSystem, new: str) -> list[Edit]:
    old = system.hostname or ""
    because = f"hostname {old} -> {new}" if old else f"hostname {new}"
    edits: list[Edit] = []
    suse = system.distro in net.SUSE_DISTROS
    network = net.regular_text(tree, "/etc/sysconfig/network")
    old_redhat = network is not None and "HOSTNAME" in parse_keyvals(network) and not tree.lexists("/etc/hostname")
    if tree.lexists("/etc/hostname") or not (suse or old_redhat):
        edits.append(_write("/etc/hostname", new + "\n", because))
    if tree.lexists("/etc/HOSTNAME") or suse:
        edits.append(_write("/etc/HOSTNAME", new + "\n", because))
    if network is not None and "HOSTNAME" in parse_keyvals(network):
        edited = re.sub(r"(?m)^(\s*HOSTNAME=)(['\"]?)[^'\"\s#]*(['\"]?)", rf"\g<1>\g<2>{new}\g<3>", network)
        edits.append(_write("/etc/sysconfig/network", edited, because))
    gentoo = net.regular_text(tree, "/etc/conf.d/hostname")
    if gentoo is not None and re.search(r"(?m)^\s*hostname=", gentoo):
        edited = re.sub(r"(?m)^(\s*hostname=)(['\"]?)[^'\"\s#]*(['\"]?)", rf"\g<1>\g<2>{new}\g<3>", gentoo)
        edits.append(_write("/etc/conf.d/hostname", edited, because))
    hosts = _hosts(net.regular_text(tree, "/etc/hosts", MAX_HOSTS_READ), old, new, system)
    if hosts is not None:
        edits.append(_write("/etc/hosts", hosts, f"{old or 'the old name'} -> {new} (localhost lines kept)"))
    return edits


def _hosts(text: str | None, old: str, new: str, system: OperatingSystem) -> str | None:
    """/etc/hosts with the old name's tokens renamed; Debian's 127.0.1.1 line added if the name was not there."""
    if text is None:
        return None
    old_short, new_short = old.split(".", maxsplit=1)[0], new.split(".", maxsplit=1)[0]
    renamed = False
    out = []
    for line in text.splitlines(keepends=True):
        body, hash_, comment = line.partition("#")
        parts = re.split(r"(\s+)", body)
        if len([p for p in parts if p.strip()]) >= 2 and old and old_short not in _LOCALHOST:
            seen_address = False
            for i, part in enumerate(parts):
                if not part.strip():
                    continue
                if not seen_address:
                    seen_address = True
                    continue
                # The short name stays short, a qualified one gets the new name's domain or keeps its own.
                lower = part.lower()
                if lower == old_short.lower():
                    parts[i], renamed = new_short, True
                elif lower.startswith(old_short.lower() + "."):
                    parts[i], renamed = (new if "." in new else new_short + part[len(old_short) :]), True
        out.append("".join(parts) + hash_ + comment)
    result = "".join(out)
    if not renamed and system.package_format == "deb":
        names = new if new == new_short else f"{new} {new_short}"
        result += ("" if result.endswith("\n") or not result else "\n") + f"127.0.1.1\t{names}\n"
    return result if result != text else None


def _network_edits(
    tree: ResolvingTree, system: OperatingSystem, static: Static | None, macs: dict[str, str], planned: dict[str, str]
) -> list[Edit]:
    configs = net.find_configs(tree)
    texts: dict[str, str] = {c.path: c.text for c in configs}
    for path, text in planned.items():
        if path in texts or path == "/etc/sysconfig/network":
            texts[path] = text
    why: dict[str, list[str]] = {}
    modes: dict[str, int] = {c.path: c.mode for c in configs}
    first_old = next(iter(macs), "")
    first_new = macs.get(first_old, "")
    if static is not None:
        target = net.choose(configs, system, first_old)
        if target is None:
            target = net.new_config(tree, system, static, first_new)
            modes[target.path] = target.mode
            texts[target.path] = target.text
            why[target.path] = [f"static {static.cidr} ({target.format}, new: the guest had no interface config)"]
        else:
            edited = net.set_static(target, static, first_old)
            assert edited is not None
            texts[target.path] = edited
            why[target.path] = [f"static {static.cidr}" + (f" via {static.gateway}" if static.gateway else "")]
        if static.gateway is not None:
            _gateway(tree, target, texts, why, str(static.gateway))
    if macs:
        pairs = ", ".join(f"{o} -> {n}" for o, n in macs.items())
        for path, text in list(texts.items()):
            swapped = net.replace_macs(text, macs)
            if swapped != text:
                texts[path] = swapped
                why.setdefault(path, []).append(f"MAC {pairs}")
    edits = []
    original = {c.path: c.text for c in configs}
    original.update(planned)
    for path, text in texts.items():
        directory, _, name = path.rpartition("/")
        renamed = f"{directory}/{net.replace_macs(name, macs)}"
        reasons = "; ".join(why.get(path, ["updated"]))
        if renamed != path:
            # SUSE 10 names ifcfg files after the NIC's MAC (ifcfg-eth-id-MAC): the file moves with the MAC.
            edits.append(_write(renamed, text, f"{reasons} (renamed from {name})", modes.get(path, 0o644)))
            edits.append(Edit(path, "remove", why=f"renamed to {renamed.rpartition('/')[2]}"))
        elif text != original.get(path):
            edits.append(_write(path, text, reasons, modes.get(path, 0o644)))
    return edits


def _gateway(tree: ResolvingTree, target: NetConfig, texts: dict[str, str], why: dict[str, list[str]], gw: str) -> None:
    """Red Hat and SUSE keep the default gateway apart from ifcfg in some releases: set it where it is kept."""
    if target.format == net.IFCFG and target.path in texts:
        network_path = "/etc/sysconfig/network"
        network = texts.get(network_path, net.regular_text(tree, network_path))
        ifcfg, network = net.rhel_gateway(texts[target.path], network, gw)
        texts[target.path] = ifcfg
        if network is not None and network != texts.get(network_path, net.regular_text(tree, network_path)):
            texts[network_path] = network
            why.setdefault(network_path, []).append(f"default gateway {gw}")
    elif target.format == net.SUSE_IFCFG:
        routes_path = "/etc/sysconfig/network/routes"
        texts[routes_path] = net.suse_routes(net.regular_text(tree, routes_path), gw)
        why.setdefault(routes_path, []).append(f"default gateway {gw}")


def _removable(tree: ResolvingTree, path: str) -> bool:
    return tree.lexists(path) and (tree.readlink(path) is not None or not tree.is_dir(path))


def _reset_edits(tree: ResolvingTree, system: OperatingSystem) -> list[Edit]:
    edits: list[Edit] = []
    if tree.lexists("/etc/machine-id"):
        empty = (
            tree.readlink("/etc/machine-id") is None
            and tree.is_file("/etc/machine-id")
            and (tree.size("/etc/machine-id") == 0)
        )
        if not empty:
            edits.append(
                Edit("/etc/machine-id", "write", MACHINE_ID_UNSET, 0o444, "a new machine ID is made at first boot")
            )
    dbus = "/var/lib/dbus/machine-id"
    if tree.readlink(dbus) is None and tree.is_file(dbus):
        edits.append(Edit(dbus, "remove", why="D-Bus makes a new machine ID at first boot"))
    keys = [n for n in net.names_in(tree, "/etc/ssh") if n.startswith("ssh_host_")]
    for name in keys:
        if _removable(tree, f"/etc/ssh/{name}"):
            edits.append(Edit(f"/etc/ssh/{name}", "remove", why="SSH host keys are regenerated at first boot"))
    if keys:
        edits += _sshd_keygen(tree, system)
    if _removable(tree, net.PERSISTENT_NET_RULES):
        edits.append(Edit(net.PERSISTENT_NET_RULES, "remove", why="it ties eth0.. to the source's MACs"))
    for directory, suffixes in _LEASE_DIRS:
        for name in net.names_in(tree, directory):
            path = f"{directory}/{name}"
            if name.endswith(suffixes) and _removable(tree, path) and not tree.is_dir(path):
                edits.append(Edit(path, "remove", why="DHCP lease of the source"))
    return edits


_SSH_UNIT = "/etc/systemd/system/ssh.service"


def _sshd_keygen(tree: ResolvingTree, system: OperatingSystem) -> list[Edit]:
    """Debian and Ubuntu never regenerate missing host keys, and their ssh.service fails on `sshd -t` without them:
    a local copy of the unit runs `ssh-keygen -A` first (cloud-init, where installed, does it by itself)."""
    if system.package_format != "deb" or tree.lexists("/etc/cloud/cloud.cfg") or tree.lexists(_SSH_UNIT):
        return []
    for vendor in ("/lib/systemd/system/ssh.service", "/usr/lib/systemd/system/ssh.service"):
        text = net.regular_text(tree, vendor)
        if text is not None and tree.is_dir("/etc/systemd/system"):
            break
    else:
        return []
    lines = text.splitlines()
    at = next((i for i, line in enumerate(lines) if line.startswith(("ExecStartPre=", "ExecStart="))), None)
    if at is None:
        return []
    lines.insert(at, "ExecStartPre=-/usr/bin/ssh-keygen -A")
    header = f"# {vendor} with ssh-keygen -A added by dom0 clone: this clone's host keys are made at first boot.\n"
    return [_write(_SSH_UNIT, header + "\n".join(lines) + "\n", "make SSH host keys before sshd starts")]


def plan_identity(tree: ResolvingTree, system: OperatingSystem, change: IdentityChange) -> list[Edit]:
    """The edits that give a clone its own identity, read from `tree` (the clone's root) without changing it.

    Without an address, network configs only get their MACs changed; the machine-id, SSH host keys, udev
    persistent-net rules and DHCP leases are always reset. UsageError when the change itself is malformed.
    """
    static, macs = _check(change)
    edits: list[Edit] = []
    if change.hostname and change.hostname != system.hostname:
        edits += _hostname_edits(tree, system, change.hostname)
    elif change.hostname and tree.lexists("/etc/hostname") and tree.readlink("/etc/hostname") is not None:
        edits.append(_write("/etc/hostname", change.hostname + "\n", "a symlink replaced by the hostname file"))
    planned = {e.path: e.data.decode() for e in edits if e.action == "write"}
    edits += _network_edits(tree, system, static, macs, planned)
    edits += _reset_edits(tree, system)
    return _merge(edits)


def _merge(edits: list[Edit]) -> list[Edit]:
    """One edit per path, where it first appeared: the last content, every reason."""
    merged: dict[str, Edit] = {}
    for edit in edits:
        first = merged.get(edit.path)
        if first is None:
            merged[edit.path] = edit
        else:
            why = first.why if edit.why in first.why else f"{first.why}; {edit.why}"
            merged[edit.path] = Edit(edit.path, edit.action, edit.data, edit.mode, why)
    return list(merged.values())


def apply_edits(editor: GuestEditor, edits: list[Edit]) -> None:
    """Hand every edit to `editor`, then close it: the edits are applied together and each is read back."""
    for edit in edits:
        if edit.action == "write":
            editor.write(edit.path, edit.data, edit.mode)
        elif edit.action == "symlink":
            editor.symlink(edit.path, edit.data.decode(errors="surrogateescape"))
        else:
            editor.remove(edit.path)
    editor.close()
