"""Old xm configs: Python files of `key = literal` lines, read without running them, mapped like xl.cfg.

`dom0 create OLD.cfg` starts a guest from one on xl:// and on libvirt's Xen driver (`xl_text`): xl reads most xm
configs itself, so a file the xl.cfg parser reads is passed on as it is; one it refuses (Python's True, `+`,
semicolons, tuples) is converted to xl.cfg first.

xend executed these files; dom0 never does. Only assignments of literal values (strings, numbers, True/False/None,
lists and tuples, and `+` of such) are accepted. Anything else (calls, imports, names, conditions) is refused with
the line it is on, because its value could only be known by running it.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from dom0.errors import UsageError
from dom0.filedata import DEFINITION_LIMIT, read_regular
from dom0.hypervisor.xl import config as xlcfg
from dom0.model import GuestConfig

XmValue: TypeAlias = "str | int | float | bool | tuple[XmValue, ...] | None"

HINT = "dom0 reads xm configs without running them: write each setting as KEY = 'literal value'"
_XL_KEY = re.compile(r"[a-z][_0-9a-z]*")
# xm settings xl names differently, or that mean nothing to xl (it brings its own device model).
_RENAMED = {"bootargs": "bootloader_args"}
_DROPPED = ("device_model",)


@dataclass(frozen=True, slots=True)
class _Statement:
    key: str
    value: XmValue
    line: int
    end_line: int


@dataclass(slots=True)
class XmConfig:
    """An xm config's settings in order, with the line each was set on (the last setting of a key wins)."""

    source: str
    text: str
    statements: list[_Statement] = field(default_factory=list)

    def values(self) -> dict[str, XmValue]:
        """Every setting's final value, in order of first appearance."""
        out: dict[str, XmValue] = {}
        for s in self.statements:
            out[s.key] = s.value
        return out

    def lines(self) -> dict[str, int]:
        """The line each setting was last set on."""
        return {s.key: s.line for s in self.statements}


def _refuse(source: str, node: ast.AST, what: str) -> UsageError:
    line = getattr(node, "lineno", 0)
    return UsageError(f"{source or 'xm config'} line {line}: {what}; dom0 does not run Python", HINT)


def _literal(node: ast.expr, source: str) -> XmValue:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str | int | float | bool) or node.value is None:
            return node.value
        raise _refuse(source, node, f"a {type(node.value).__name__} value is not an xm setting")
    if isinstance(node, ast.List | ast.Tuple):
        return tuple(_literal(e, source) for e in node.elts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _literal(node.operand, source)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal(node.left, source), _literal(node.right, source)
        if isinstance(left, str) and isinstance(right, str):
            return left + right
        if isinstance(left, tuple) and isinstance(right, tuple):
            return left + right
        if isinstance(left, int) and isinstance(right, int) and not isinstance(left | right, bool):
            return left + right
        raise _refuse(source, node, "'+' joins values of different kinds")
    if any(isinstance(n, ast.Call) for n in ast.walk(node)):
        raise _refuse(source, node, "the value calls a function")
    if name := next((n for n in ast.walk(node) if isinstance(n, ast.Name)), None):
        raise _refuse(source, node, f"the value uses the name {name.id!r}")
    raise _refuse(source, node, f"the value is an expression ({type(node).__name__}), not a literal")


def parse(text: str, source: str = "") -> XmConfig:
    """Read an xm config's literal settings. Raises UsageError naming the line of anything else."""
    try:
        module = ast.parse(text, filename=source or "<xm config>")
    except SyntaxError as e:
        raise UsageError(f"{source or 'xm config'} line {e.lineno or 0}: not valid Python: {e.msg}", HINT) from None
    except (ValueError, RecursionError, MemoryError) as e:
        raise UsageError(f"{source or 'xm config'}: cannot be read as Python ({e})", HINT) from None
    config = XmConfig(source, text)
    for stmt in module.body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            continue  # a docstring
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            raise _refuse(source, stmt, "the config imports a module")
        if not isinstance(stmt, ast.Assign):
            raise _refuse(source, stmt, f"a {type(stmt).__name__} statement is not a setting")
        if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
            raise _refuse(source, stmt, "only NAME = value assignments are settings")
        try:
            value = _literal(stmt.value, source)
        except RecursionError:
            raise _refuse(source, stmt, "the value is nested too deeply") from None
        end = stmt.end_lineno or stmt.lineno
        config.statements.append(_Statement(stmt.targets[0].id, value, stmt.lineno, end))
    return config


def load(path: str | Path) -> XmConfig:
    """Read and parse an xm config file."""
    text = read_regular(Path(path), DEFINITION_LIMIT).decode("utf-8", "surrogateescape")
    return parse(text, str(path))


def _xl_value(value: XmValue) -> xlcfg.Value | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else repr(value)
    if isinstance(value, tuple):
        return tuple(v for v in (_xl_value(x) for x in value) if v is not None)
    return value


def _xl_setting(key: str, value: XmValue, values: dict[str, XmValue]) -> tuple[str, xlcfg.Value] | None:
    """The xl.cfg setting an xm setting becomes, or None when xl has no use for it."""
    hvm = values.get("builder") == "hvm"
    if key in _DROPPED or (key == "kernel" and hvm and str(value).endswith("hvmloader")):
        return None
    if key == "builder":
        return ("type", "hvm" if value == "hvm" else "pv")
    converted = _xl_value(value)
    if converted is None:
        return None
    return _RENAMED.get(key, key), converted


def guest_config(config: XmConfig) -> GuestConfig:
    """The GuestConfig an xm config describes."""
    values = config.values()
    lines = config.lines()
    xl_values: dict[str, xlcfg.Value] = {}
    xl_lines: dict[str, int] = {}
    for key, value in values.items():
        setting = _xl_setting(key, value, values)
        if setting is not None:
            xl_values[setting[0]] = setting[1]
            xl_lines[setting[0]] = lines[key]
    return xlcfg.config_from_values(xl_values, xl_lines, config.source)


def _comments(text: str) -> dict[int, str]:
    found: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                found[tok.start[0]] = tok.string
    except (tokenize.TokenError, SyntaxError):
        pass
    return found


def xm_to_xl(text: str, source: str = "") -> str:
    """Convert an xm config to xl.cfg text, keeping its comments and the order of its settings."""
    config = parse(text, source)
    values = config.values()
    lines = text.splitlines(keepends=True)
    comments = _comments(text)
    used: set[int] = set()
    out: list[str] = []
    cursor = 1
    for s in config.statements:
        out += [_xl_line(line) for line in lines[cursor - 1 : s.line - 1]]
        for n in range(s.line, s.end_line):
            if n in comments and n not in used:
                out.append(comments[n] + "\n")
                used.add(n)
        setting = _xl_setting(s.key, s.value, values)
        if setting is None:
            rendered = f"# dom0: {s.key} left out: {_why_dropped(s.key, s.value)}"
        elif not _XL_KEY.fullmatch(setting[0]):
            rendered = f"# dom0: {s.key} is not a valid xl.cfg name"
        else:
            rendered = f"{setting[0]} = {xlcfg.format_value(setting[1])}"
        if s.end_line in comments and s.end_line not in used:
            rendered += "  " + comments[s.end_line]
            used.add(s.end_line)
        out.append(rendered + "\n")
        cursor = max(cursor, s.end_line + 1)
    out += [_xl_line(line) for line in lines[cursor - 1 :]]
    result = "".join(out)
    xlcfg.parse(result, source)  # what we write must be what xl reads
    return result


def _why_dropped(key: str, value: XmValue) -> str:
    if value is None:
        return "None means unset"
    if key == "kernel":
        return "xl loads hvmloader itself for HVM guests"
    return "xl runs its own device model"


def _xl_line(line: str) -> str:
    """A line between settings: blank or a comment, kept; a stray continuation is commented out."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return line if line.endswith("\n") else line + "\n"
    return "# " + line.rstrip("\n") + "\n"


def _is_python(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def xl_text(text: str, source: str = "") -> str:
    """The xl.cfg an xl toolstack is given for `text`: the text itself when xl.cfg's parser reads it, else the
    xm config it is, converted. UsageError naming the line when it is neither (the xm reading's error when the
    text is Python, so a config that computes its values hears that dom0 does not run Python)."""
    try:
        xlcfg.parse(text, source)
        return text
    except UsageError as not_xl:
        try:
            return xm_to_xl(text, source)
        except UsageError as not_xm:
            raise (not_xm if _is_python(text) else not_xl) from None
