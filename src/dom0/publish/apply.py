"""`dom0 publish apply`: what would change in dom0's table, then the change, in one nft transaction.

The plan is made first and changes nothing (`--dry-run` prints it); apply then loads the whole table with one
`nft -f`, so a refused ruleset leaves the previous one in place. The one thing done outside dom0's own table is
libvirt's NAT network: its FORWARD rules (chain LIBVIRT_FWI) reject new connections to its guests, and an accept
in dom0's table cannot override a reject in another table's chain at the same hook. So one rule in the built-in
FORWARD chain, ahead of libvirt's jumps, accepts the connections dom0's DNAT marked. libvirt's restarts rewrite
only its own LIBVIRT_* chains, so the rule survives them; it is never flushed or removed by dom0.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from dom0 import run
from dom0.errors import Dom0Error
from dom0.publish.addresses import Target
from dom0.publish.ruleset import (
    MARK,
    IPNetwork,
    Live,
    nft,
    nft_error,
    read_json,
    render,
    subnet_of,
)
from dom0.publish.table import IPAddress

# The rule in FORWARD, as iptables(-nft) writes and prints it: libvirt's own tables are iptables', so the rule is
# written with iptables too and `iptables -S` keeps showing all of that table in one tool's words.
FORWARD_RULE = (
    "-m",
    "connmark",
    "--mark",
    f"{MARK:#010x}/{MARK:#010x}",
    "-m",
    "comment",
    "--comment",
    "dom0 publish",
    "-j",
    "ACCEPT",
)
_SHOWN = f'-A FORWARD -m connmark --mark {MARK:#010x}/{MARK:#010x} -m comment --comment "dom0 publish" -j ACCEPT'
_TOOLS = {"ip": "iptables", "ip6": "ip6tables"}


class Change(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    LEFT_OUT = "left out"


@dataclass(frozen=True, slots=True)
class EntryChange:
    key: str
    guest: str  # "" for a removed entry (the live table does not name guests)
    change: Change
    before: str  # the applied ADDR:PORT, "" when none
    after: str  # what apply leaves, "" when none


@dataclass(frozen=True, slots=True)
class LibvirtCompat:
    """libvirt's NAT forward chain in one family's filter table, and whether dom0's accept rule sits ahead of it."""

    family: str  # "ip" or "ip6"
    state: str  # "in place", "missing", "behind libvirt's jumps", "cannot read: ..."

    @property
    def needs_insert(self) -> bool:
        return self.state in ("missing", "behind libvirt's jumps")

    @property
    def command(self) -> tuple[str, ...]:
        return (_TOOLS[self.family], "-I", "FORWARD", "1", *FORWARD_RULE)

    @property
    def delete_command(self) -> tuple[str, ...]:
        return (_TOOLS[self.family], "-D", "FORWARD", *FORWARD_RULE)


@dataclass(frozen=True, slots=True)
class ApplyPlan:
    ruleset: str
    changes: tuple[EntryChange, ...]
    warnings: tuple[str, ...]
    libvirt: tuple[LibvirtCompat, ...]

    @property
    def changed(self) -> bool:
        """Whether the table must be reloaded (entries left out that were never applied change nothing)."""
        return any(
            c.change is not Change.UNCHANGED and (c.change is not Change.LEFT_OUT or c.before) for c in self.changes
        )


def _parse_destination(text: str) -> IPAddress | None:
    host = text.rsplit(":", 1)[0].strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def plan_apply(
    targets: Iterable[Target],
    live: Live,
    *,
    subnets: Callable[[IPAddress], IPNetwork | None] = subnet_of,
    libvirt: Callable[[Iterable[str]], tuple[LibvirtCompat, ...]] | None = None,
) -> ApplyPlan:
    """What apply would do; reads the live state, changes nothing."""
    targets = tuple(targets)
    effective: list[Target] = []
    warnings: list[str] = []
    changes: list[EntryChange] = []
    subnet_map: dict[IPAddress, IPNetwork | None] = {}
    for target in targets:
        t = target
        key = t.entry.key
        before = live.applied.get(key, "")
        if t.note:
            kept = _parse_destination(before) if before and t.address is None else None
            if kept is not None:
                t = Target(t.entry, kept, "applied", t.note)
                warnings.append(f"{key}: {t.note}; keeping {t.destination}, applied before")
            elif t.address is None:
                warnings.append(f"{key}: {t.note}; left out until it has an address")
            else:
                warnings.append(f"{key}: {t.note}")
        if t.address is None:
            changes.append(EntryChange(key, t.entry.guest, Change.LEFT_OUT, before, ""))
            continue
        effective.append(t)
        if t.address not in subnet_map:
            subnet_map[t.address] = subnets(t.address)
        subnet = subnet_map[t.address]
        after = t.destination
        if not before:
            change = Change.ADDED
        elif before != after or live.hairpin.get(key, "") != (str(subnet) if subnet else ""):
            change = Change.CHANGED
        else:
            change = Change.UNCHANGED
        changes.append(EntryChange(key, t.entry.guest, change, before, after))
    known = {t.entry.key for t in targets}
    for key, before in live.applied.items():
        if key not in known:
            changes.append(EntryChange(key, "", Change.REMOVED, before, ""))
    families = {"ip" if t.address.version == 4 else "ip6" for t in effective if t.address is not None}
    compat = (libvirt or detect_libvirt)(sorted(families))
    warnings += [f"libvirt's NAT rules in table {c.family} filter: {c.state}" for c in compat if "cannot" in c.state]
    return ApplyPlan(render(effective, subnet_map), tuple(changes), tuple(warnings), compat)


# -- libvirt's NAT network -------------------------------------------------------------------------------------


def detect_libvirt(families: Iterable[str]) -> tuple[LibvirtCompat, ...]:
    """For each family with published targets: whether libvirt's LIBVIRT_FWI chain exists in its filter table,
    and where dom0's accept rule stands in FORWARD. Only reads."""
    families = list(families)
    if not families:
        return ()
    tables = read_json(["list", "tables"]) or []
    present = {(t["table"].get("family"), t["table"].get("name")) for t in tables if isinstance(t.get("table"), dict)}
    found: list[LibvirtCompat] = []
    for family in families:
        if (family, "filter") not in present or read_json(["list", "chain", family, "filter", "LIBVIRT_FWI"]) is None:
            continue
        found.append(LibvirtCompat(family, _forward_state(family)))
    return tuple(found)


def _forward_state(family: str) -> str:
    tool = _TOOLS[family]
    if not run.available(tool):
        return f"cannot read: {tool} is not installed (apt install iptables)"
    proc = run.run([tool, "-S", "FORWARD"], check=False, timeout=30)
    if proc.returncode != 0:
        return f"cannot read: {tool} -S FORWARD: {proc.stderr.decode(errors='replace').strip()}"
    lines = [line.strip() for line in proc.stdout.decode(errors="replace").splitlines() if line.startswith("-A ")]
    ours = [i for i, line in enumerate(lines) if line == _SHOWN]
    theirs = [i for i, line in enumerate(lines) if " -j LIBVIRT_" in f"{line} "]
    if not ours:
        return "missing"
    if theirs and min(theirs) < min(ours):
        return "behind libvirt's jumps"
    return "in place"


LIBVIRT_WHY = (
    "libvirt's NAT network rejects new inbound connections to its guests (chain LIBVIRT_FWI), which no rule in "
    "dom0's own table can override"
)


def describe_libvirt(c: LibvirtCompat, *, done: bool) -> str:
    """One line for the admin: what dom0 did (or would do) in libvirt's FORWARD chain, and why."""
    tool = _TOOLS[c.family]
    if c.state == "in place":
        return f"{LIBVIRT_WHY}: dom0's accept rule is in place ahead of libvirt's in {tool}'s FORWARD chain"
    if c.needs_insert:
        verb = "inserted" if done else "would insert"
        where = " (dom0's older copy, fallen behind libvirt's jumps, removed)" if "behind" in c.state else ""
        return (
            f"{LIBVIRT_WHY}: {verb} one rule at the top of {tool}'s FORWARD chain accepting connections dom0 "
            f"published (ct mark {MARK:#010x}){where}; libvirt's restarts rewrite only its LIBVIRT_* chains, so it "
            f"stays, and `dom0 publish apply` puts it back if it goes: {shlex.join(c.command)}"
        )
    return f"{LIBVIRT_WHY}: {c.state}"


# -- applying ----------------------------------------------------------------------------------------------------


def apply(plan: ApplyPlan) -> tuple[str, ...]:
    """Load the planned table (one transaction) when anything changed, then put dom0's rule ahead of libvirt's
    where needed. Returns what was done, in words."""
    done: list[str] = []
    if plan.changed:
        rc, _out, err = nft(["-f", "-"], input=plan.ruleset.encode())
        if rc != 0:
            raise Dom0Error(
                f"nft refused dom0's ruleset: {nft_error(err)}; nothing was changed (nft -f is one transaction, "
                f"the previous rules stay in place)",
                "`dom0 publish apply --dry-run` prints the ruleset nft was given",
            )
        done.append("table inet dom0 replaced (one transaction)")
    for c in plan.libvirt:
        if not c.needs_insert:
            continue
        if "behind" in c.state:
            # dom0's own copy behind libvirt's jumps does nothing; it goes (each -D removes one exact copy of
            # dom0's rule, nothing of libvirt's), so copies do not pile up each time libvirt moves ahead
            for _ in range(16):
                if run.run(c.delete_command, check=False, timeout=30).returncode != 0:
                    break
        proc = run.run(c.command, check=False, timeout=30)
        if proc.returncode != 0:
            err_text = proc.stderr.decode(errors="replace").strip().splitlines()
            raise Dom0Error(
                f"dom0's table is applied, but {c.command[0]} could not insert its FORWARD rule: "
                f"{err_text[0] if err_text else f'exit code {proc.returncode}'}; libvirt's NAT guests stay unreachable",
                f"run it by hand: {shlex.join(c.command)}",
            )
        done.append(describe_libvirt(c, done=True))
    return tuple(done)


def summary(changes: Iterable[EntryChange]) -> Mapping[Change, int]:
    counts: dict[Change, int] = {}
    for c in changes:
        counts[c.change] = counts.get(c.change, 0) + 1
    return counts
