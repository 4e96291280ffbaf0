"""xl.cfg files (xl.cfg(5)) read and written faithfully, and mapped to dom0's GuestConfig.

A parsed document keeps every byte of its text: comments, blank lines, spacing and order. `set` and `remove`
change only the setting they touch, so `parse(text).render() == text` for an untouched document and an edited
one differs only where it was edited. The syntax follows xl's own lexer and grammar (libxlu_cfg_l.l/_y.y):
`key = value` or `key += value` settings ended by a newline or `;`, values that are "double" or 'single'
quoted strings, numbers (decimal, 0x hex, 0 octal) or [lists] that may span lines and end with a comma.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from dom0.errors import Dom0Error, UsageError
from dom0.filedata import DEFINITION_LIMIT, read_regular
from dom0.hypervisor.xl import spec as xlspec
from dom0.model import Boot, BootKind, GuestConfig, GuestType

Value: TypeAlias = "str | int | tuple[Value, ...]"

SYNTAX_HINT = 'xl.cfg lines are KEY = VALUE, VALUE a "string", a number or a [list, of, values]; see xl.cfg(5)'
PYTHON_HINT = "this looks like Python: an old xm config? `dom0 create FILE` starts a guest from one as it converts it"

_TOKEN = re.compile(
    r"""
     (?P<ws>[ \t\r]+)           # \r too: xl itself refuses CRLF files, but nothing is lost by accepting them
    |(?P<nl>\n)
    |(?P<comment>\#[^\n]*)
    |(?P<ident>[a-z][_0-9a-z]*)
    |(?P<number>[0-9][0-9a-fx]*)
    |(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    |(?P<op>\+=|[,\[\]=;])
    """,
    re.VERBOSE,
)
_MAX_DEPTH = 16
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPES.update({c: c for c in "\"'\\"})
_UNESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str
    start: int
    end: int
    line: int


@dataclass(slots=True)
class _Setting:
    """One `key = value` statement: `head` is its text up to the value (key, spacing, operator)."""

    key: str
    op: str
    head: str
    raw: str
    value: Value
    line: int

    def text(self) -> str:
        return self.head + self.raw


def _error(source: str, line: int, message: str, hint: str = SYNTAX_HINT) -> UsageError:
    return UsageError(f"{source or 'xl.cfg'} line {line}: {message}", hint)


def _tokens(text: str, source: str) -> Iterator[_Tok]:
    pos, line, end = 0, 1, len(text)
    while pos < end:
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            if ch in "\"'":
                raise _error(source, line, f"the string starting {text[pos : pos + 20]!r} has no closing {ch}")
            if ch in "+-.():":
                raise _error(source, line, f"unexpected {ch!r}", PYTHON_HINT)
            raise _error(source, line, f"unexpected {ch!r}")
        kind = m.lastgroup or ""
        yield _Tok(kind, m.group(), pos, m.end(), line)
        if kind == "nl":
            line += 1
        pos = m.end()


def _dequote(tok: _Tok, source: str) -> str:
    body = tok.text[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        i += 1
        if c != "\\":
            out.append(c)
            continue
        nc = body[i]
        i += 1
        if nc in _ESCAPES:
            out.append(_ESCAPES[nc])
        elif nc == "x":
            digits = body[i : i + 2]
            if not re.fullmatch(r"[0-9a-fA-F]{2}", digits):
                raise _error(source, tok.line, f"\\x needs two hex digits in {tok.text}")
            out.append(chr(int(digits, 16)))
            i += 2
        elif nc in "01234567":
            m = re.match(r"[0-7]{0,2}", body[i:])
            digits = nc + (m.group() if m else "")
            out.append(chr(int(digits, 8)))
            i += len(digits) - 1
        # Like xl, any other escaped character is dropped along with its backslash.
    return "".join(out)


def _number(text: str) -> int | str:
    """Convert as C's strtol(s, 0, 0) does; xl keeps numbers as text, so a malformed one stays text."""
    try:
        if text.startswith("0x"):
            return int(text[2:], 16)
        if len(text) > 1 and text.startswith("0"):
            return int(text[1:], 8)
        return int(text, 10)
    except ValueError:
        return text


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        # Whitespace and comments only matter for positions; a comment always ends at a newline token.
        self.toks = [t for t in _tokens(text, source) if t.kind not in ("ws", "comment")]
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def last_line(self) -> int:
        return self.toks[-1].line if self.toks else 1

    def fail(self, tok: _Tok | None, message: str) -> UsageError:
        if tok is None:
            return _error(self.source, self.last_line(), f"{message} at the end of the file")
        shown = "a newline" if tok.kind == "nl" else repr(tok.text)
        return _error(self.source, tok.line, f"{message}, found {shown}")

    def skip_newlines(self) -> None:
        while (tok := self.peek()) is not None and tok.kind == "nl":
            self.i += 1

    def value(self, depth: int) -> tuple[Value, int]:
        tok = self.peek()
        if tok is None or not (tok.kind in ("string", "number") or tok.text == "["):
            raise self.fail(tok, "expected a value (a quoted string, a number or a [list])")
        self.i += 1
        if tok.kind == "string":
            return _dequote(tok, self.source), tok.end
        if tok.kind == "number":
            return _number(tok.text), tok.end
        if depth >= _MAX_DEPTH:
            raise _error(self.source, tok.line, "lists nested too deeply")
        items: list[Value] = []
        self.skip_newlines()
        while (nxt := self.peek()) is None or nxt.text != "]":
            if nxt is None:
                raise _error(self.source, tok.line, "the list opened on this line has no closing ]")
            item, _ = self.value(depth + 1)
            items.append(item)
            self.skip_newlines()
            nxt = self.peek()
            if nxt is not None and nxt.text == ",":
                self.i += 1
                self.skip_newlines()
            elif nxt is not None and nxt.text != "]":
                raise self.fail(nxt, "expected ',' or ']' in a list")
        self.i += 1
        return tuple(items), nxt.end

    def parse(self) -> list[str | _Setting]:
        chunks: list[str | _Setting] = []
        done = 0
        while (tok := self.peek()) is not None:
            if tok.kind == "nl" or tok.text == ";":
                self.i += 1
                continue
            if tok.kind != "ident":
                hint = PYTHON_HINT if tok.kind == "op" and tok.text == "=" else SYNTAX_HINT
                raise _error(self.source, tok.line, f"expected a setting name, found {tok.text!r}", hint)
            self.i += 1
            op = self.peek()
            if op is None or op.text not in ("=", "+="):
                raise self.fail(op, f"expected '=' after {tok.text}")
            self.i += 1
            start = self.peek()
            value, end = self.value(0)
            after = self.peek()
            if after is not None and after.kind != "nl" and after.text != ";":
                raise self.fail(after, f"expected the end of the {tok.text} setting")
            assert start is not None
            chunks.append(self.text[done : tok.start])
            head, raw = self.text[tok.start : start.start], self.text[start.start : end]
            chunks.append(_Setting(tok.text, op.text, head, raw, value, tok.line))
            done = end
        chunks.append(self.text[done:])
        return chunks


def _concat(old: Value, new: Value, setting: _Setting, source: str) -> Value:
    if isinstance(old, tuple) and isinstance(new, tuple):
        return old + new
    if isinstance(old, tuple) or isinstance(new, tuple):
        raise _error(source, setting.line, f"{setting.key} += mixes a list and a single value")
    return f"{old}{new}"


class XlConfig:
    """An xl.cfg document: its settings' values, and its full text for faithful rewriting."""

    def __init__(self, chunks: list[str | _Setting], source: str = "") -> None:
        self._chunks = chunks
        self.source = source

    def _settings(self) -> Iterator[_Setting]:
        return (c for c in self._chunks if isinstance(c, _Setting))

    def keys(self) -> list[str]:
        """The setting names in order of first appearance."""
        return list(dict.fromkeys(s.key for s in self._settings()))

    def __contains__(self, key: object) -> bool:
        return any(s.key == key for s in self._settings())

    def get(self, key: str) -> Value | None:
        """The value xl would use: the last `=` plus any `+=` after it; None when the key is absent."""
        value: Value | None = None
        for s in self._settings():
            if s.key == key:
                value = s.value if s.op == "=" or value is None else _concat(value, s.value, s, self.source)
        return value

    def values(self) -> dict[str, Value]:
        """Every setting's value, in order of first appearance."""
        out: dict[str, Value] = {}
        for s in self._settings():
            old = out.get(s.key)
            out[s.key] = s.value if s.op == "=" or old is None else _concat(old, s.value, s, self.source)
        return out

    def lines(self) -> dict[str, int]:
        """The line of each key's last setting, for error messages."""
        return {s.key: s.line for s in self._settings()}

    def set(self, key: str, value: Value) -> None:
        """Give `key` this value: its last setting is rewritten in place, others for it go; new keys go last."""
        if not re.fullmatch(r"[a-z][_0-9a-z]*", key):
            raise UsageError(f"{key!r} cannot be an xl.cfg setting name", "names are lower-case letters, digits, _")
        raw = format_value(value)
        mine = [s for s in self._settings() if s.key == key]
        if not mine:
            tail = self._chunks[-1]
            assert isinstance(tail, str)
            if self.render() and not self.render().endswith("\n"):
                tail += "\n"
            self._chunks[-1:] = [tail, _Setting(key, "=", f"{key} = ", raw, value, 0), "\n"]
            return
        for s in mine[:-1]:
            self._drop(s)
        last = mine[-1]
        if last.op != "=":
            last.head = last.head.replace("+=", "=", 1)
            last.op = "="
        last.raw, last.value = raw, value

    def remove(self, key: str) -> bool:
        """Delete every setting of `key` (whole lines when they stand alone); False when there was none."""
        mine = [s for s in self._settings() if s.key == key]
        for s in mine:
            self._drop(s)
        return bool(mine)

    def _drop(self, setting: _Setting) -> None:
        i = next(n for n, c in enumerate(self._chunks) if c is setting)
        before, after = self._chunks[i - 1], self._chunks[i + 1]
        assert isinstance(before, str)
        assert isinstance(after, str)
        line_start = before.rfind("\n") + 1
        alone_before = before[line_start:].strip(" \t\r") == ""
        rest = re.match(r"[ \t\r]*(;[ \t\r]*)?(#[^\n]*)?(\n|$)", after)
        if alone_before and rest:
            before, after = before[:line_start], after[rest.end() :]
        elif m := re.match(r"[ \t\r]*;[ \t\r]*", after):
            after = after[m.end() :]
        else:
            before = re.sub(r";[ \t\r]*$", "", before)
        self._chunks[i - 1 : i + 2] = [before + after]

    def render(self) -> str:
        """The document's text."""
        return "".join(c if isinstance(c, str) else c.text() for c in self._chunks)


def parse(text: str, source: str = "") -> XlConfig:
    """Parse xl.cfg text; `source` names the file in error messages. Raises UsageError naming the line."""
    try:
        return XlConfig(_Parser(text, source).parse(), source)
    except RecursionError:
        raise _error(source, 1, "lists nested too deeply") from None


def load(path: str | Path) -> XlConfig:
    """Read and parse an xl.cfg file; bytes that are not UTF-8 are kept as they are for rewriting."""
    data = read_regular(Path(path), DEFINITION_LIMIT)
    return parse(data.decode("utf-8", "surrogateescape"), str(path))


def save(doc: XlConfig, path: str | Path) -> None:
    """Write the document to `path` (the same bytes it was read from, where untouched)."""
    try:
        Path(path).write_bytes(doc.render().encode("utf-8", "surrogateescape"))
    except OSError as e:
        raise Dom0Error(f"cannot write {path}: {e.strerror}", "check the directory and its permissions") from None


def _quote(text: str) -> str:
    if "\0" in text:
        raise UsageError("an xl.cfg string cannot hold a NUL character", "remove it from the value")
    return '"' + "".join(_UNESCAPES.get(c, c) for c in text) + '"'


def format_value(value: Value) -> str:
    """A value as xl.cfg text: strings double-quoted, long lists one item a line with a trailing comma."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _quote(value)
    items = [format_value(v) for v in value]
    if sum(len(i) + 2 for i in items) <= 72 and all("\n" not in i for i in items):
        return "[" + ", ".join(items) + "]"
    body = "".join(f"    {i},\n" for i in items)
    return f"[\n{body}]"


# ---- the mapping to and from GuestConfig -------------------------------------------------------------------

_ON_ACTIONS = ("destroy", "restart", "rename-restart", "preserve", "coredump-destroy", "coredump-restart", "soft-reset")
_BOOT_DEVICES = {"a": "fd", "c": "hd", "d": "cdrom", "n": "network"}
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


class _Reader:
    """Typed access to a mapping of values, with errors that name the file and line."""

    def __init__(self, values: Mapping[str, Value], lines: Mapping[str, int], source: str) -> None:
        self.values, self.lines, self.source = values, lines, source

    def error(self, key: str, message: str, hint: str) -> UsageError:
        return _error(self.source, self.lines.get(key, 0), f"{key}: {message}", hint)

    def text(self, key: str, default: str = "") -> str:
        value = self.values.get(key)
        if value is None:
            return default
        if isinstance(value, tuple):
            raise self.error(key, "expected a single value, found a list", f'write {key} = "..."')
        return str(value)

    def words(self, key: str) -> str:
        value = self.values.get(key)
        if isinstance(value, tuple):
            return " ".join(str(v) for v in value)
        return self.text(key)

    def number(self, key: str, default: int) -> int:
        value = self.values.get(key)
        if value is None:
            return default
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            number = _number(value.strip()) if re.fullmatch(r"\s*[0-9][0-9a-fx]*\s*", value) else value
            if isinstance(number, int):
                return number
        raise self.error(key, f"{value!r} is not a number", f"write {key} = 512 (a plain number)")

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.values.get(key)
        if value is None:
            return ()
        items = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, tuple) for v in items):
            raise self.error(key, "expected a list of strings, found a nested list", f"write {key} = ['...', '...']")
        return tuple(str(v) for v in items)

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(key, default)
        if value not in allowed:
            raise self.error(key, f"{value!r} is not one of {', '.join(allowed)}", f'e.g. {key} = "{allowed[0]}"')
        return value


def _guest_type(r: _Reader) -> GuestType:
    if "type" in r.values:
        return GuestType(r.choice("type", "pv", ("pv", "pvh", "hvm")))
    # Configs older than xl's `type` (and xm configs) say builder = "hvm" for fully virtualized guests.
    return GuestType.HVM if r.text("builder") == "hvm" else GuestType.PV


def _cmdline(r: _Reader) -> str:
    if "cmdline" in r.values:
        return r.text("cmdline")
    root, extra = r.text("root"), r.text("extra")
    parts = ([f"root={root}"] if root else []) + ([extra] if extra else [])
    return " ".join(parts)


def _boot(r: _Reader, kind: GuestType) -> Boot:
    kernel = r.text("kernel")
    if kernel and not (kind == GuestType.HVM and kernel.endswith("hvmloader")):
        return Boot(BootKind.KERNEL, kernel=kernel, initrd=r.text("ramdisk"), cmdline=_cmdline(r))
    if r.text("bootloader"):
        return Boot(BootKind.BOOTLOADER, bootloader=r.text("bootloader"), cmdline=r.words("bootloader_args"))
    if kind == GuestType.HVM:
        letters = r.text("boot", "cd")
        return Boot(BootKind.FIRMWARE, devices=tuple(_BOOT_DEVICES[c] for c in letters if c in _BOOT_DEVICES))
    return Boot(BootKind.FIRMWARE)


def config_from_values(values: Mapping[str, Value], lines: Mapping[str, int], source: str = "") -> GuestConfig:
    """Map xl.cfg settings (as from `XlConfig.values()`) to a GuestConfig; `lines` places errors."""
    r = _Reader(values, lines, source)
    name = r.text("name")
    if not name:
        raise _error(source, 0, "the guest has no name", 'add a line: name = "myguest"')
    uuid = r.text("uuid")
    if uuid and not _UUID.fullmatch(uuid):
        raise r.error("uuid", f"{uuid!r} is not a UUID", "a UUID looks like 6f1e9c3a-5b0d-4c2e-9a7f-0d1b2c3d4e5f")
    kind = _guest_type(r)
    memory = r.number("memory", 0)
    vcpus = r.number("vcpus", 1)
    disks, nics = [], []
    for n, spec in enumerate(r.strings("disk")):
        try:
            disks.append(xlspec.parse_disk(spec).to_disk())
        except UsageError as e:
            raise r.error("disk", f"entry {n + 1}: {e.message}", e.hint) from None
    for n, spec in enumerate(r.strings("vif")):
        try:
            nics.append(xlspec.parse_vif(spec).to_nic())
        except UsageError as e:
            raise r.error("vif", f"entry {n + 1}: {e.message}", e.hint) from None
    return GuestConfig(
        name=name,
        uuid=uuid,
        type=kind,
        memory_mib=memory,
        max_memory_mib=r.number("maxmem", memory),
        vcpus=vcpus,
        max_vcpus=r.number("maxvcpus", vcpus),
        boot=_boot(r, kind),
        disks=tuple(disks),
        nics=tuple(nics),
        on_poweroff=r.choice("on_poweroff", "destroy", _ON_ACTIONS),
        on_reboot=r.choice("on_reboot", "restart", _ON_ACTIONS),
        on_crash=r.choice("on_crash", "destroy", _ON_ACTIONS),
    )


def guest_config(doc: XlConfig) -> GuestConfig:
    """The GuestConfig an xl.cfg document describes."""
    return config_from_values(doc.values(), doc.lines(), doc.source)


def _set_or_remove(doc: XlConfig, key: str, value: Value, default: Value) -> None:
    if value == default:
        doc.remove(key)
    else:
        doc.set(key, value)


def _apply_boot(doc: XlConfig, old: Boot, new: Boot) -> None:
    if new.kind == BootKind.KERNEL:
        for key in ("bootloader", "bootloader_args", "boot"):
            doc.remove(key)
        if new.kernel != old.kernel:
            doc.set("kernel", new.kernel)
        if new.initrd != old.initrd:
            _set_or_remove(doc, "ramdisk", new.initrd, "")
        if new.cmdline != old.cmdline:
            for key in ("root", "extra"):
                doc.remove(key)
            _set_or_remove(doc, "cmdline", new.cmdline, "")
    elif new.kind == BootKind.BOOTLOADER:
        for key in ("kernel", "ramdisk", "cmdline", "root", "extra", "boot"):
            doc.remove(key)
        if new.bootloader != old.bootloader:
            doc.set("bootloader", new.bootloader)
        if new.cmdline != old.cmdline:
            _set_or_remove(doc, "bootloader_args", new.cmdline, "")
    else:
        for key in ("kernel", "ramdisk", "cmdline", "root", "extra", "bootloader", "bootloader_args"):
            doc.remove(key)
        letters = {v: k for k, v in _BOOT_DEVICES.items()}
        order = "".join(letters.get(d, "") for d in new.devices)
        if new.devices != old.devices:
            # xl boots HVM guests from "cd" when `boot` is absent; other types have no boot order.
            if order in ("", "cd"):
                doc.remove("boot")
            else:
                doc.set("boot", order)


def apply_config(doc: XlConfig, config: GuestConfig) -> None:
    """Make `doc` describe `config`, touching only settings whose meaning changes; comments and unknown keys stay.

    Disks and vifs are rewritten in the key=value form only where they change, keeping each entry's other
    parameters (backendtype, script, rate, ...) when it is replaced at the same position.
    """
    old = guest_config(doc) if "name" in doc else GuestConfig(name="", boot=Boot(BootKind.FIRMWARE, devices=()))
    if config.name != old.name:
        doc.set("name", config.name)
    if config.uuid != old.uuid:
        _set_or_remove(doc, "uuid", config.uuid, "")
    if config.type != old.type:
        doc.remove("builder")
        doc.set("type", config.type.value)
    if config.memory_mib != old.memory_mib:
        _set_or_remove(doc, "memory", config.memory_mib, 0)
    implied_max = old.max_memory_mib if "maxmem" in doc else config.memory_mib
    if config.max_memory_mib != implied_max:
        _set_or_remove(doc, "maxmem", config.max_memory_mib, config.memory_mib)
    if config.vcpus != old.vcpus:
        doc.set("vcpus", config.vcpus)
    implied_max = old.max_vcpus if "maxvcpus" in doc else config.vcpus
    if config.max_vcpus != implied_max:
        _set_or_remove(doc, "maxvcpus", config.max_vcpus, config.vcpus)
    if config.boot != old.boot:
        _apply_boot(doc, old.boot, config.boot)
    if config.disks != old.disks:
        specs = [str(s) for s in _as_list(doc.get("disk"))]
        new = [xlspec.disk_spec(d, specs[n] if n < len(specs) else "") for n, d in enumerate(config.disks)]
        _set_or_remove(doc, "disk", tuple(new), ())
    if config.nics != old.nics:
        specs = [str(s) for s in _as_list(doc.get("vif"))]
        new = [xlspec.vif_spec(v, specs[n] if n < len(specs) else "") for n, v in enumerate(config.nics)]
        _set_or_remove(doc, "vif", tuple(new), ())
    for key in ("on_poweroff", "on_reboot", "on_crash"):
        if getattr(config, key) != getattr(old, key):
            doc.set(key, getattr(config, key))


def _as_list(value: Value | None) -> tuple[Value, ...]:
    if value is None:
        return ()
    return value if isinstance(value, tuple) else (value,)


def new_document(config: GuestConfig, header: str = "") -> XlConfig:
    """A fresh xl.cfg for `config`, optionally starting with `header` comment lines."""
    text = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    doc = parse(text)
    doc.set("name", config.name)
    apply_config(doc, config)
    return doc
