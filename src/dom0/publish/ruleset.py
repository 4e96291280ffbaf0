"""dom0's nftables table: the publish table's targets as rules, and the applied rules read back.

Everything dom0 publishes lives in one table, `inet dom0`, replaced as a whole by one `nft -f` transaction (it
starts with `flush table inet dom0`): a connection sees either the old rules or the new ones, never half. No
other table is read here or written. Each rule carries a comment naming its entry and where it sends it, so
`dom0 publish list` and the next `apply` read what is live without parsing nft's expressions.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dom0 import run
from dom0.errors import Dom0Error
from dom0.publish.addresses import Target
from dom0.publish.table import IPAddress, PublishEntry

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

TABLE = "inet dom0"
COMMENT = "dom0 publish"
# The conntrack mark bit the prerouting DNAT sets, so a filter rule elsewhere (libvirt's FORWARD) can let exactly
# dom0's published connections through. Bit 29: above the low 16 bits where policy routing, wg-quick (51820 =
# 0xca6c) and Kubernetes (0x4000, 0x8000) put theirs, outside Tailscale's 0xff0000 byte; set with OR and tested
# with a mask, so whatever else a connection's mark carries is kept.
MARK = 0x20000000
# A range published onto other port numbers (1000-1099 -> 2000-2099) needs one map element per port: nft 1.0.6
# cannot shift a port range in one DNAT. Beyond this many ports the ruleset would grow past anything reasonable.
MAX_SHIFTED_PORTS = 4096
NFT_HINT = "apt install nftables"

_APPLIED = re.compile(r"^dom0 publish (?P<key>\S+) -> (?P<dest>\S+)$")
_HAIRPIN = re.compile(r"^dom0 publish (?P<key>\S+) hairpin (?P<subnet>\S+)$")


@dataclass(frozen=True, slots=True)
class Live:
    """What dom0's table holds now: entry key -> ADDR:PORT it sends to, and -> the subnet masqueraded (hairpin)."""

    applied: Mapping[str, str] = field(default_factory=dict)
    hairpin: Mapping[str, str] = field(default_factory=dict)


def _family(address: IPAddress) -> str:
    return "ip" if address.version == 4 else "ip6"


def _host(address: IPAddress) -> str:
    return f"[{address}]" if address.version == 6 else str(address)


def _dnat(entry: PublishEntry, address: IPAddress) -> str:
    fam = _family(address)
    if entry.guest_ports == entry.ports and entry.ports.count > 1:
        return f"dnat {fam} to {address}"  # no port: each connection keeps its own port number
    if entry.guest_ports.count == 1:
        return f"dnat {fam} to {_host(address)}:{entry.guest_ports.first}"
    if entry.ports.count > MAX_SHIFTED_PORTS:
        raise Dom0Error(
            f"{entry.key}: a range of {entry.ports.count} ports onto other port numbers ({entry.guest_ports}) needs "
            f"one rule element per port; dom0 does this for up to {MAX_SHIFTED_PORTS}",
            f"publish it onto the same port numbers ({entry.ports}) or split the range",
        )
    shift = entry.guest_ports.first - entry.ports.first
    elements = ", ".join(f"{p} : {address} . {p + shift}" for p in range(entry.ports.first, entry.ports.last + 1))
    return f"dnat {fam} to {entry.transport} dport map {{ {elements} }}"


def _match(entry: PublishEntry) -> str:
    return f"{_family(entry.public)} daddr {entry.public} {entry.transport} dport {entry.ports}"


def render(targets: Iterable[Target], hairpin_subnets: Mapping[IPAddress, IPNetwork | None]) -> str:
    """The exact text `nft -f` is given: the flush and the whole table, one transaction.

    Targets without an address get no rules (apply decided to leave them out). `hairpin_subnets` maps a target
    address to the subnet it sits in on this host, whose other guests reach it through the public address."""
    pre: list[str] = []
    out: list[str] = []
    post: list[str] = []
    for t in targets:
        if t.address is None:
            continue
        e = t.entry
        applied = f'comment "{COMMENT} {e.key} -> {t.destination}"'
        dnat = _dnat(e, t.address)
        pre.append(f"{_match(e)} ct mark set ct mark | {MARK:#010x} {dnat} {applied}")
        out.append(f"{_match(e)} {dnat} {applied}")
        subnet = hairpin_subnets.get(t.address)
        if subnet is not None:
            fam = _family(t.address)
            post.append(
                f"ct status dnat ct mark & {MARK:#010x} == {MARK:#010x} {fam} saddr {subnet} {fam} daddr {t.address} "
                f'{e.transport} dport {e.guest_ports} masquerade comment "{COMMENT} {e.key} hairpin {subnet}"'
            )

    def chain(name: str, hook: str, priority: str, why: str, rules: Sequence[str]) -> list[str]:
        head = [f"\t# {why}", f"\tchain {name} {{", f"\t\ttype nat hook {hook} priority {priority}; policy accept;"]
        return head + [f"\t\t{r}" for r in rules] + ["\t}"]

    lines = [
        "# dom0 publish: the whole of table inet dom0, replaced in one transaction; no other table is touched",
        "table inet dom0 {}",
        "flush table inet dom0",
        "table inet dom0 {",
        *chain("prerouting", "prerouting", "dstnat", "connections from outside and from guests", pre),
        *chain("output", "output", "-100", "connections this host opens to its own public addresses", out),
        *chain(
            "postrouting",
            "postrouting",
            "srcnat",
            "hairpin only: a guest reaching a neighbour through the public address; outside clients keep theirs",
            post,
        ),
        "}",
    ]
    return "\n".join(lines) + "\n"


# -- talking to nft and ip ------------------------------------------------------------------------------------


def nft(args: Sequence[str], *, input: bytes | None = None) -> tuple[int, bytes, bytes]:
    """Run nft: its exit code, output and error output (callers read its error); Dom0Error when not installed."""
    if not run.available("nft"):
        raise Dom0Error("nft is not installed: dom0 publishes through nftables; nothing was changed", NFT_HINT)
    proc = run.run(["nft", *args], check=False, input=input, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def nft_error(stderr: bytes) -> str:
    """nft's first error, without the file position of a file it was given on stdin."""
    for line in stderr.decode(errors="replace").splitlines():
        match = re.match(r"^\S+?:(\d+):[\d-]+: (Error: .*)$", line)
        if match:
            return f"{match.group(2)} (ruleset line {match.group(1)})"
        if line.strip():
            return line.strip()
    return "no error message"


def read_json(args: Sequence[str]) -> list[dict[str, Any]] | None:
    """`nft -j ARGS` as its list of objects; None when what it lists does not exist."""
    rc, stdout, stderr = nft(["-j", *args])
    if rc != 0:
        if b"No such file or directory" in stderr:
            return None
        raise Dom0Error(f"cannot read the live nftables rules: {nft_error(stderr)}", "run dom0 as root")
    try:
        doc = json.loads(stdout or b"{}")
    except ValueError as exc:
        raise Dom0Error(f"nft -j {' '.join(args)} printed no JSON: {exc}", NFT_HINT) from exc
    items = doc.get("nftables") if isinstance(doc, dict) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def read_live() -> Live:
    """dom0's table as applied (empty when there is none yet)."""
    items = read_json(["list", "table", *TABLE.split()])
    applied: dict[str, str] = {}
    hairpin: dict[str, str] = {}
    for item in items or []:
        rule = item.get("rule")
        if not isinstance(rule, dict) or not isinstance(rule.get("comment"), str):
            continue
        if rule.get("chain") == "prerouting" and (m := _APPLIED.match(rule["comment"])):
            applied[m["key"]] = m["dest"]
        elif rule.get("chain") == "postrouting" and (m := _HAIRPIN.match(rule["comment"])):
            hairpin[m["key"]] = m["subnet"]
    return Live(applied, hairpin)


def _ip_json(args: Sequence[str]) -> list[dict[str, Any]]:
    if not run.available("ip"):
        return []  # no iproute2: no hairpin rule, the rest still works
    proc = run.run(["ip", "-j", *args], check=False, timeout=10)
    if proc.returncode != 0:
        return []
    try:
        doc = json.loads(proc.stdout or b"[]")
    except ValueError:
        return []
    return [d for d in doc if isinstance(d, dict)] if isinstance(doc, list) else []


def subnet_of(address: IPAddress) -> IPNetwork | None:
    """The subnet of this host's interface `address` is reached on directly (virbr0's 192.168.122.0/24), as the
    kernel routes it; None when it is reached through a gateway or is this host's own."""
    route = _ip_json(["route", "get", str(address)])
    if not route or route[0].get("gateway") or not isinstance(route[0].get("dev"), str):
        return None
    dev = route[0]["dev"]
    if dev == "lo":
        return None
    family = "inet" if address.version == 4 else "inet6"
    for link in _ip_json(["addr", "show", "dev", dev]):
        for info in link.get("addr_info") or []:
            if not isinstance(info, dict) or info.get("family") != family:
                continue
            try:
                net = ipaddress.ip_network(f"{info.get('local')}/{info.get('prefixlen')}", strict=False)
            except ValueError:
                continue
            if address in net and net.prefixlen < net.max_prefixlen:
                return net
    return None
