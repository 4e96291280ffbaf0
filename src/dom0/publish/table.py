"""The publish table: which public address:port goes to which guest:port, as publish.toml holds it.

The file is the administrator's as much as dom0's: `dom0 publish add/remove` edit it in place, keeping comments and
order, and a hand edit is read the same way. Every entry is validated once, here, into frozen values; a bad file
is refused with the line of the entry at fault.

Edits work on the file's lines, not on a re-rendered document: tomlkit keeps comments, but it files the comment
above an entry's [[publish]] header under the entry before it, so deleting through it dropped the next entry's
comment and left the deleted one's behind. Here an entry owns its header, its keys, the comment lines directly
above its header and those directly below its last key; tomlkit renders the lines of a new entry (so its strings
are quoted as TOML wants), and the edited text is validated like any hand edit before it replaces the file.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from dom0.errors import Dom0Error, UsageError
from dom0.filedata import read_regular

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PATH = Path("/etc/dom0/publish.toml")

# A table of thousands of entries is a few hundred KiB; anything larger is the wrong file.
LIMIT = 1 << 20

HEADER_COMMENT = (
    "# dom0 publish: public address:port -> guest:port, edited by `dom0 publish add/remove` or by hand (comments\n"
    "# and order are kept). This file alone changes nothing: `dom0 publish apply` makes it live.\n"
)

PUBLIC_FORM = (
    "PUBLIC_IP:PORT[-PORT][/tcp|/udp], e.g. 203.0.113.10:443/tcp, 203.0.113.10:8000-8010/udp or [2001:db8::1]:443"
)
GUEST_FORM = "GUEST[:PORT[-PORT]], e.g. web, web:8080 or web:9000-9010 (no port: the same port(s) as the public side)"
ADDRESS_FORM = "the guest's IP address, e.g. 192.168.122.10 or fd00::10"

_KEYS = ("public", "guest", "to")


class Transport(StrEnum):
    TCP = "tcp"
    UDP = "udp"


@dataclass(frozen=True, slots=True)
class PortRange:
    """One port (first == last) or an inclusive range, 1..65535."""

    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    def overlaps(self, other: PortRange) -> bool:
        return self.first <= other.last and other.first <= self.last

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True, slots=True)
class PublishEntry:
    """public:ports/transport -> guest:guest_ports; `to` pins the guest's address instead of asking the hypervisor.

    `guest_ports` has as many ports as `ports` (a range maps onto a range of the same length)."""

    public: IPAddress
    ports: PortRange
    transport: Transport
    guest: str
    guest_ports: PortRange
    to: IPAddress | None = None
    line: int = 0  # the line of its [[publish]] header in the file; 0 when it came from elsewhere

    @property
    def key(self) -> str:
        """How the administrator names it: 203.0.113.10:80/tcp, [2001:db8::1]:443/tcp."""
        host = f"[{self.public}]" if self.public.version == 6 else str(self.public)
        return f"{host}:{self.ports}/{self.transport}"

    @property
    def target(self) -> str:
        """The guest side as the file writes it: web:443, web:9000-9010."""
        return f"{self.guest}:{self.guest_ports}"

    def collides(self, other: PublishEntry) -> bool:
        """Whether both claim a port of the same public address and transport (one of them would never be hit)."""
        return self.public == other.public and self.transport == other.transport and self.ports.overlaps(other.ports)


@dataclass(frozen=True, slots=True)
class PublishTable:
    path: Path
    entries: tuple[PublishEntry, ...] = ()


# --- the command line's (and the file's) syntax -----------------------------------------------------------------


def _bad(what: str, text: str, reason: str, hint: str) -> UsageError:
    # repr: the text is quoted, and a control character in it is shown as an escape, never sent to the terminal
    return UsageError(f"{what} {text!r}: {reason}", hint)


_PORTS = re.compile(r"([0-9]+)(?:-([0-9]+))?")


def _ports(text: str, port_text: str, what: str, hint: str) -> PortRange:
    m = _PORTS.fullmatch(port_text)
    if m is None:
        reason = "no port" if not port_text else f"port {port_text!r} is not a number or a FIRST-LAST range"
        raise _bad(what, text, reason, hint)
    for digits in m.groups():
        if digits is not None and not 1 <= int(digits[:7]) <= 65535:  # [:7]: a thousand digits stay out of int()
            raise _bad(what, text, f"port {digits} is outside 1..65535", hint)
    first = int(m.group(1))
    last = first if m.group(2) is None else int(m.group(2))
    if last < first:
        raise _bad(what, text, f"the range {first}-{last} runs backwards", f"write it low to high: {last}-{first}")
    return PortRange(first, last)


def _ip(text: str, host: str, what: str, hint: str) -> IPAddress:
    if "%" in host:  # ipaddress takes fe80::1%eth0, but nftables has no zone: the rule could not say which link
        raise _bad(what, text, "an address with a %zone cannot be published", hint)
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        raise _bad(what, text, f"{host!r} is not an IP address", hint) from None


def parse_public(text: str, what: str = "public address") -> tuple[IPAddress, PortRange, Transport]:
    """PUBLIC_IP:PORT[-PORT][/tcp|/udp] (IPv6 in brackets; tcp when no transport is given)."""
    hint = f"write {PUBLIC_FORM}"
    body, slash, proto = text.rpartition("/")
    if not slash:
        body, proto = text, "tcp"
    try:
        transport = Transport(proto.lower())
    except ValueError:
        raise _bad(what, text, f"unknown transport {proto!r}", "end it with /tcp or /udp (tcp when left out)") from None
    if body.startswith("["):
        host, bracket, rest = body[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise _bad(what, text, "an IPv6 address in brackets is followed by :PORT", hint)
        port_text = rest[1:]
        if ":" not in host:
            raise _bad(what, text, "brackets are for IPv6 addresses", "write an IPv4 address bare: 203.0.113.10:443")
    else:
        host, colon, port_text = body.rpartition(":")
        if not colon:
            raise _bad(what, text, "no port", hint)
        if ":" in host:
            raise _bad(what, text, "an IPv6 address goes in brackets before its port", "e.g. [2001:db8::1]:443")
    address = _ip(text, host, what, hint)
    ports = _ports(text, port_text, what, hint)
    _check_public(address, text, what)
    return address, ports, transport


def _check_public(address: IPAddress, text: str, what: str) -> None:
    hint = "publish on one of this host's own public addresses (`ip -brief address` lists them)"
    if address.is_unspecified:
        raise _bad(what, text, f"{address} means every address, not one the clients connect to", hint)
    if address.is_multicast:
        raise _bad(what, text, f"{address} is a multicast group, not an address of this host", hint)
    if address.is_loopback:
        raise _bad(
            what,
            text,
            "a loopback address cannot be DNATed to a guest: the kernel drops loopback-addressed packets that would "
            "leave the host unless route_localnet is set (which exposes 127.0.0.0/8 to the network)",
            f"{hint}; connections the host itself opens to that address reach the guest too",
        )
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        raise _bad(what, text, "an IPv4-mapped IPv6 address", f"write the IPv4 address itself: {address.ipv4_mapped}")


def parse_guest(text: str, what: str = "guest") -> tuple[str, PortRange | None]:
    """GUEST[:PORT[-PORT]]: the guest's name (or UUID) and its port(s), None for the same as the public side."""
    hint = f"write {GUEST_FORM}"
    name, colon, port_text = text.rpartition(":")
    if not colon:
        name = text
    if not name:
        raise _bad(what, text, "no guest name", hint)
    if any(c.isspace() or not c.isprintable() for c in name) or len(name) > 255:
        raise _bad(what, text, "not a guest name", f"{hint}; `dom0 list --all` shows the guests' names")
    return name, (_ports(text, port_text, what, hint) if colon else None)


def parse_address(text: str, what: str = "--to") -> IPAddress:
    """A guest's own address (--to): an IPv4 or IPv6 address, one a packet can be sent to."""
    hint = f"give {ADDRESS_FORM}"
    address = _ip(text, text, what, hint)
    if address.is_unspecified or address.is_multicast or address.is_loopback:
        kind = "unspecified" if address.is_unspecified else "multicast" if address.is_multicast else "loopback"
        raise _bad(what, text, f"a {kind} address is not a guest's address", hint)
    return address


def make_entry(public: str, guest: str, to: str | None = None, *, line: int = 0, to_name: str = "--to") -> PublishEntry:
    """One entry from the command line's (or the file's) three strings; UsageError for anything wrong."""
    address, ports, transport = parse_public(public)
    name, guest_ports = parse_guest(guest)
    if guest_ports is None:
        guest_ports = ports
    elif guest_ports.count != ports.count:
        raise UsageError(
            f"public {public!r} has {ports.count} port(s) but guest {guest!r} has {guest_ports.count}: "
            "a range maps onto a range of the same length",
            f"give the guest as many ports (e.g. {name}:{guest_ports.first}-{guest_ports.first + ports.count - 1}) "
            "or none (the same ports)",
        )
    target = parse_address(to, to_name) if to is not None else None
    if target is not None and target.version != address.version:
        raise UsageError(
            f"{to_name} {to!r} is IPv{target.version} but the public address {address} is IPv{address.version}: "
            "DNAT cannot cross address families",
            f"give the guest's IPv{address.version} address, or publish on an IPv{target.version} address",
        )
    return PublishEntry(address, ports, transport, name, guest_ports, target, line)


def entry_json(entry: PublishEntry) -> dict[str, Any]:
    """An entry as `--json` prints it: ports as the file writes them ("443", "8000-8010"), null for no --to."""
    return {
        "public": str(entry.public),
        "ports": str(entry.ports),
        "transport": str(entry.transport),
        "guest": entry.guest,
        "guest_ports": str(entry.guest_ports),
        "to": None if entry.to is None else str(entry.to),
        "key": entry.key,
        "line": entry.line,
    }


# --- reading the file -------------------------------------------------------------------------------------------

_HEADER = re.compile(r"""[ \t]*\[\[[ \t]*(?:publish|"publish"|'publish')[ \t]*\]\][ \t]*(?:#.*)?""")
_KEY = re.compile(r"""[ \t]*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)[ \t]*[=.]""")
_ASSIGN = re.compile(r"""[ \t]*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)[ \t]*=""")
_SECTION = re.compile(r"[ \t]*\[")
_POSITION = re.compile(r"(.*) \(at line (\d+), column (\d+)\)", re.DOTALL)


def load_table(path: Path) -> PublishTable:
    """The table in `path`: empty when the file does not exist; UsageError naming the line of anything wrong."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return PublishTable(path)
    except NotADirectoryError:
        return PublishTable(path)
    except OSError as exc:
        raise Dom0Error(f"cannot read {path}: {exc.strerror}", "check the path and permissions") from exc
    return table_from_text(path, _read(path))


def _read(path: Path) -> str:
    data = read_regular(path, LIMIT, "give the publish table with -f FILE")
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UsageError(f"{path} line {line}: not UTF-8 text", "publish.toml is TOML, which is UTF-8") from None


def table_from_text(path: Path, text: str) -> PublishTable:
    """The table `text` (the contents of `path`) holds, validated as load_table does."""
    lines = text.splitlines()
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(path, lines, str(exc)) from None
    for key in doc:
        if key != "publish":
            line = _key_line(lines, key)
            raise UsageError(
                f"{path}{f' line {line}' if line else ''}: unknown key {key!r}",
                "publish.toml holds only [[publish]] entries (public, guest and optionally to)",
            )
    raw = doc.get("publish", [])
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise UsageError(
            f"{path} line {_key_line(lines, 'publish')}: publish should be a list of [[publish]] entries",
            'write each entry as [[publish]] with public = "..." and guest = "..." on the lines below it',
        )
    headers = _header_lines(lines)
    numbers = headers if len(headers) == len(raw) else [0] * len(raw)  # 0: not written as [[publish]] headers
    entries: list[PublishEntry] = []
    for i, (item, line) in enumerate(zip(raw, numbers, strict=True)):
        where = f"{path} line {line}" if line else f"{path} entry {i + 1}"
        entry = _entry(item, line, where)
        for earlier in entries:
            if entry.collides(earlier):
                raise UsageError(
                    f"{where}: {_collision(entry, earlier)}",
                    "each public address, port and transport goes to one guest: remove or change one of them",
                )
        entries.append(entry)
    return PublishTable(path, tuple(entries))


def _entry(item: dict[str, Any], line: int, where: str) -> PublishEntry:
    example = 'e.g. public = "203.0.113.10:443/tcp" and guest = "web:443"'
    unknown = sorted(set(item) - set(_KEYS))
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}", f"an entry takes public, guest and to; {example}")
    for key in ("public", "guest"):
        if key not in item:
            raise UsageError(f"{where}: the entry has no {key}", example)
    for key, value in item.items():
        if not isinstance(value, str):
            raise UsageError(f"{where}: {key} should be a string in quotes, not {_toml_type(value)}", example)
    try:
        return make_entry(item["public"], item["guest"], item.get("to"), line=line, to_name="to")
    except UsageError as exc:
        raise UsageError(f"{where}: {exc.message}", exc.hint) from None


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def _collision(entry: PublishEntry, earlier: PublishEntry) -> str:
    where = f"line {earlier.line}" if earlier.line else "another entry"
    if entry.key == earlier.key:
        return f"{entry.key} is already published by {where} ({earlier.target})"
    return f"{entry.key} overlaps {earlier.key}, already published by {where} ({earlier.target})"


def _header_lines(lines: Sequence[str]) -> list[int]:
    """The 1-based numbers of the lines that are [[publish]] headers (a line inside a multi-line string may look
    like one: callers compare the count with the entries TOML found)."""
    return [n for n, text in enumerate(lines, 1) if _HEADER.fullmatch(text)]


def _key_line(lines: Sequence[str], key: str) -> int:
    """The first line defining top-level `key` (as `key =`, `key.x =`, or a [key] or [[key]] header); 0 when not
    found."""
    names = {key, f'"{key}"', f"'{key}'"}
    in_section = False
    for n, text in enumerate(lines, 1):
        stripped = text.strip()
        if stripped.startswith("["):
            if stripped.lstrip("[").split("]")[0].split(".")[0].strip() in names:
                return n
            in_section = True
        elif not in_section:
            m = _KEY.match(text)
            if m and m.group(1) in names:
                return n
    return 0


def _syntax_error(path: Path, lines: Sequence[str], message: str) -> UsageError:
    hint = "publish.toml is TOML: fix that line, or move the file away and use `dom0 publish add`"
    # tomllib says "cannot overwrite a value", and often places it at the end of the document: find the key
    duplicate = _duplicate_key(lines) if "overwrite" in message else None
    if duplicate:
        line, key, first = duplicate
        return UsageError(f"{path} line {line}: {key!r} is given twice in one entry (first on line {first})", hint)
    m = _POSITION.fullmatch(message)
    if m:
        return UsageError(f"{path} line {m.group(2)}: {_reason(m.group(1))} (column {m.group(3)})", hint)
    reason = _reason(message.removesuffix(" (at end of document)"))
    return UsageError(f"{path} line {max(len(lines), 1)}: {reason} (at the end of the file)", hint)


def _reason(text: str) -> str:
    return text[:1].lower() + text[1:]


def _duplicate_key(lines: Sequence[str]) -> tuple[int, str, int] | None:
    """The first key defined twice in one table (tomllib reports it at the end of the document)."""
    seen: dict[str, int] = {}
    for n, text in enumerate(lines, 1):
        if _SECTION.match(text):
            seen = {}
            continue
        m = _ASSIGN.match(text)
        if m:
            key = m.group(1).strip("\"'")
            if key in seen:
                return n, key, seen[key]
            seen[key] = n
    return None


# --- editing the file -------------------------------------------------------------------------------------------


def add_entry(path: Path, entry: PublishEntry) -> PublishTable:
    """Append `entry` to the file (made when missing); the table as it now stands, the new entry last with its
    line. Dom0Error, and the file left as it was, when its public port is already taken."""
    with _editing(path) as (text, table):
        for other in table.entries:
            if entry.collides(other):
                raise Dom0Error(
                    f"{_collision(entry, other)} in {path}",
                    f"`dom0 publish remove {other.key}` first, or publish on another port or address",
                )
        if not text.strip():
            new_text = HEADER_COMMENT + "\n"  # a blank line: the header comment is the file's, not the entry's
        else:
            new_text = text if text.endswith("\n") else text + "\n"
            if not new_text.endswith("\n\n"):
                new_text += "\n"  # one blank line before the new entry
        new_text += _render(entry)
        result = _validated(path, new_text, (*table.entries, entry))
        _write(path, new_text)
        return result


def remove_entries(path: Path, selectors: Sequence[str]) -> tuple[PublishEntry, ...]:
    """Remove every entry that a selector names (a key, 203.0.113.10:80/tcp or 203.0.113.10:80 for tcp, or a guest:
    all of its entries); the removed entries, with their old lines. Dom0Error, nothing written, when a selector
    matches nothing."""
    if not os.path.lexists(path):
        raise Dom0Error(f"{path} does not exist: nothing is published there", "`dom0 publish add` makes it")
    with _editing(path) as (text, table):
        doomed: list[PublishEntry] = []
        for selector in selectors:
            matched = _select(selector, table.entries)
            if not matched:
                raise Dom0Error(f"nothing in {path} matches {selector!r}", _holding(table))
            doomed += [e for e in matched if e not in doomed]
        if any(e.line == 0 for e in doomed):
            raise Dom0Error(
                f"{path} writes its entries in a form dom0 does not edit in place",
                "remove the entry by hand, or write each entry as a [[publish]] table",
            )
        new_text = _cut(text, [e.line for e in doomed])
        kept = tuple(e for e in table.entries if e not in doomed)
        _validated(path, new_text, kept)
        _write(path, new_text)
        return tuple(sorted(doomed, key=lambda e: e.line))


def _select(selector: str, entries: Sequence[PublishEntry]) -> list[PublishEntry]:
    by_guest = [e for e in entries if e.guest == selector]
    if by_guest or not any(c in selector for c in ":/"):
        return by_guest
    address, ports, transport = parse_public(selector, "entry")
    return [e for e in entries if (e.public, e.ports, e.transport) == (address, ports, transport)]


def _holding(table: PublishTable) -> str:
    if not table.entries:
        return "it holds no entries; `dom0 publish add` adds one"
    shown = ", ".join(f"{e.key} ({e.target})" for e in table.entries[:8])
    more = f" and {len(table.entries) - 8} more" if len(table.entries) > 8 else ""
    return f"name an entry as PUBLIC_IP:PORT[/PROTO] or a guest; it holds {shown}{more}"


def _render(entry: PublishEntry) -> str:
    import tomlkit  # only the edits need it

    item = tomlkit.table()
    item["public"] = entry.key
    item["guest"] = entry.target
    if entry.to is not None:
        item["to"] = str(entry.to)
    doc = tomlkit.document()
    doc.append("publish", tomlkit.aot())
    doc["publish"].append(item)
    return tomlkit.dumps(doc)


def _blank(text: str) -> bool:
    return not text.strip()


def _comment(text: str) -> bool:
    return text.lstrip().startswith("#")


def _cut(text: str, headers: Sequence[int]) -> str:
    """`text` without the entries whose [[publish]] headers are on lines `headers` (1-based): each goes with the
    comment lines directly above its header and directly below its last key, and one blank line that separated it
    from what follows, so the rest keeps its comments and spacing."""
    lines = text.splitlines(keepends=True)
    all_headers = _header_lines([line.rstrip("\r\n") for line in lines])
    drop: set[int] = set()
    for h in headers:
        i = h - 1
        following = [x - 1 for x in all_headers if x > h]
        end = following[0] if following else len(lines)  # this entry's keys lie before `end`
        start = i
        while start > 0 and _comment(lines[start - 1]):
            start -= 1
        # the comments directly above the next header are that entry's, even when nothing separates them from ours
        attached = end
        while attached > i + 1 and _comment(lines[attached - 1]) and following:
            attached -= 1
        last = i
        for j in range(i + 1, attached):
            if not _blank(lines[j]) and not _comment(lines[j]):
                last = j
        while last + 1 < attached and _comment(lines[last + 1]):
            last += 1
        drop.update(range(start, last + 1))
        after = last + 1
        if after < len(lines) and _blank(lines[after]) and (start == 0 or _blank(lines[start - 1])):
            drop.add(after)  # one blank line each side would be two in a row once the entry is gone
    kept = [line for n, line in enumerate(lines) if n not in drop]
    if lines and len(lines) - 1 in drop:
        while kept and _blank(kept[-1]):
            kept.pop()  # the last entry went: no blank lines left dangling at the end
    return "".join(kept)


def _validated(path: Path, text: str, expected: Sequence[PublishEntry]) -> PublishTable:
    """The table the edited `text` holds, checked to be exactly `expected` (lines aside) before it is written."""
    if len(text.encode()) > LIMIT:
        raise Dom0Error(f"{path} would grow past {LIMIT >> 20} MiB", "this many entries is not a publish table")
    result = table_from_text(path, text)

    def plain(entries: Sequence[PublishEntry]) -> list[tuple[object, ...]]:
        return [(e.key, e.guest, e.guest_ports, e.to) for e in entries]

    if plain(result.entries) != plain(expected):
        raise Dom0Error(
            f"could not edit {path} in place without changing other entries; it was left as it was",
            "make the change by hand: each entry is a [[publish]] table with public, guest and optionally to",
        )
    return result


@contextmanager
def _editing(path: Path) -> Iterator[tuple[str, PublishTable]]:
    """The file's text ('' when missing) and table, under an exclusive lock on its directory, so two `dom0 publish
    add` at once do not both write what they read (the second waits, then reads the first's result)."""
    parent = path.parent
    _refuse_symlink(path)
    if not parent.is_dir():
        _make_parent(parent)
    try:
        dirfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise Dom0Error(f"cannot open {parent}: {exc.strerror}", "check the path and permissions") from exc
    try:
        fcntl.flock(dirfd, fcntl.LOCK_EX)
        _refuse_symlink(path)
        try:
            os.lstat(path)
            text = _read(path)
        except FileNotFoundError:
            text = ""
        yield text, table_from_text(path, text)
    finally:
        os.close(dirfd)


def _refuse_symlink(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise Dom0Error(f"cannot read {path}: {exc.strerror}", "check the path and permissions") from exc
    if stat.S_ISLNK(st.st_mode):
        raise UsageError(
            f"{path} is a symlink; dom0 publish replaces the file, which would replace the link, not what it names",
            f"give the real file: -f {os.path.realpath(path)}",
        )


def _make_parent(parent: Path) -> None:
    missing = [p for p in (parent, *parent.parents) if not p.exists()]
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for p in missing:
            os.chmod(p, 0o755)  # what /etc/dom0 would be: the umask may have made it narrower or wider
    except OSError as exc:
        raise Dom0Error(f"cannot make {parent}: {exc.strerror}", "check the path and permissions") from exc


def _write(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename: a reader (or a crash) sees the old file or the new, never half.
    The old file's mode and owner are kept; a new file is 0644."""
    mode, owner = 0o644, None
    try:
        st = os.stat(path)
        mode, owner = stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)
    except FileNotFoundError:
        pass
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _unwritten(path, exc) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            if owner is not None and owner != (os.geteuid(), os.getegid()):
                with suppress(PermissionError):  # not root: the file becomes ours, as an editor would leave it
                    os.fchown(f.fileno(), *owner)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise _unwritten(path, exc) from exc
    with suppress(OSError):  # the new file is in place; this only makes the rename itself survive a crash
        dirfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


def _unwritten(path: Path, exc: OSError) -> Dom0Error:
    hint = "free some space" if exc.errno == errno.ENOSPC else "run as root, or check the path and permissions"
    return Dom0Error(f"cannot write {path}: {exc.strerror}; it was left as it was", hint)
