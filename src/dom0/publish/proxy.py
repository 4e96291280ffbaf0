"""`dom0 publish proxy`: the publish table as a reverse proxy's configuration, for an admin who prefers a proxy
in dom0 (haproxy in TCP mode, or Squid as an HTTP accelerator) to DNAT.

A proxy makes its own connection to the guest, so the guest sees the proxy's address, not the client's; a proxy
carries TCP (and Squid only HTTP), so UDP entries are listed as comments only. Guest names come from a file an
admin may not have written: they only ever appear reduced to [A-Za-z0-9_.-], so none can end a line or a
directive.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from dom0.errors import UsageError
from dom0.publish.addresses import Target, destination
from dom0.publish.table import Transport

FORMATS = ("haproxy", "squid")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _name(target: Target) -> str:
    """A config-safe identifier unique per entry: the guest's name reduced, then the public address and port."""
    e = target.entry
    guest = _UNSAFE.sub("_", e.guest).strip("_.-")[:48] or "guest"
    public = _UNSAFE.sub("_", str(e.public))
    return f"{guest}_{public}_{e.ports.first}_{e.transport}"


def _skipped(targets: Iterable[Target], why_tcp_only: str) -> tuple[list[Target], list[str]]:
    usable: list[Target] = []
    notes: list[str] = []
    for t in targets:
        if t.entry.transport is Transport.UDP:
            notes.append(f"# {t.entry.key}: UDP; {why_tcp_only} (keep DNAT for it: dom0 publish apply)")
        elif t.address is None:
            notes.append(f"# {t.entry.key}: {_UNSAFE.sub('_', t.entry.guest)} has no address now; give it with --to")
        elif t.entry.ports.count > 1 or t.entry.guest_ports.count > 1:
            notes.append(f"# {t.entry.key}: a port range; list its ports one by one for a proxy")
        else:
            usable.append(t)
    return usable, notes


def haproxy(targets: Iterable[Target]) -> str:
    usable, notes = _skipped(targets, "haproxy's mode tcp carries only TCP")
    lines = ["# dom0 publish proxy --format haproxy: one frontend and backend per published TCP port", *notes]
    for t in usable:
        name, e = _name(t), t.entry
        lines += [
            "",
            f"frontend {name}",
            "    mode tcp",
            f"    bind {destination(e.public, str(e.ports.first))}",
            f"    default_backend {name}",
            "",
            f"backend {name}",
            "    mode tcp",
            f"    server {_UNSAFE.sub('_', e.guest)[:48] or 'guest'} {t.destination} check",
        ]
    return "\n".join(lines) + "\n"


def squid(targets: Iterable[Target]) -> str:
    usable, notes = _skipped(targets, "Squid carries only HTTP")
    lines = [
        "# dom0 publish proxy --format squid: Squid as a reverse proxy (accelerator) for each published port;",
        "# it speaks HTTP: an HTTPS port needs https_port with the site's certificate instead of http_port",
        *notes,
    ]
    for t in usable:
        name, e = _name(t), t.entry
        lines += [
            "",
            f"http_port {destination(e.public, str(e.ports.first))} accel defaultsite={e.public} name={name}_port",
            f"acl {name}_port myportname {name}_port",
            f"cache_peer {t.address} parent {e.guest_ports.first} 0 no-query originserver name={name}",
            f"cache_peer_access {name} allow {name}_port",
            f"cache_peer_access {name} deny all",
            f"http_access allow {name}_port",
        ]
    return "\n".join(lines) + "\n"


def render(targets: Iterable[Target], fmt: str) -> str:
    if fmt == "haproxy":
        return haproxy(targets)
    if fmt == "squid":
        return squid(targets)
    raise UsageError(f"unknown proxy format {fmt!r}", f"one of: {', '.join(FORMATS)}")
