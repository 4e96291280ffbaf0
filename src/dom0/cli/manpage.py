"""Manual pages in roff, written from the argparse definitions the command itself parses with, so they never drift.

dom0(1) lists every command with its one-line help, the global options, the environment, exit status and files;
each command gets its own page (dom0-list(1), dom0-image(1) with every verb, ...) with every option argparse has
for it. A command added to the parser gets its page and its line in dom0(1) with no change here. The section-5
pages for the configuration files are written by hand (man/ in the source tree) and only named here.

Nothing here imports the parser: scripts/manpages.py (`make man`) passes dom0.cli.main.build_parser() in.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import dataclass

# Variables dom0 reads, and what for (the hypervisor choice is the global epilog's; the rest are per-module knobs).
ENVIRONMENT = (
    ("DOM0_CONNECT", "the hypervisor URI when -c is not given (before LIBVIRT_DEFAULT_URI)"),
    ("LIBVIRT_DEFAULT_URI", "the hypervisor URI when neither -c nor DOM0_CONNECT is given, as for virsh"),
    (
        "DOM0_LOCK_DIR",
        "where dom0 runs meet to lock the guests they change (default /run/dom0/locks for root, "
        "$XDG_RUNTIME_DIR/dom0/locks otherwise); another directory for a test or a second installation",
    ),
    ("DOM0_CONNECT_TIMEOUT", "seconds to wait for libvirtd to answer before giving up (default 30)"),
    ("DOM0_XL_TIMEOUT", "seconds an xl command may take on a Xen host without libvirt (default 30)"),
)
FILES = (
    ("/etc/dom0/host.toml", "what dom0 host stop and dom0 host start do with each guest; see dom0-host.toml(5)"),
    ("/etc/dom0/publish.toml", "public addresses and ports published to guests; see dom0-publish.toml(5)"),
    ("/etc/memlockd.cfg", "the files dom0 memlock keeps in RAM, in memlockd's format; see dom0-memlock.conf(5)"),
    ("/var/lib/dom0/save", "saved guests' memory images (host.toml's save.directory)"),
    ("/run/dom0/memlock.json", "what the dom0 memlock daemon holds, read by dom0 memlock status"),
    ("/run/dom0/locks", "the per-guest locks of dom0 runs (root's; see DOM0_LOCK_DIR)"),
)
CONFIG_PAGES = ("dom0-host.toml", "dom0-publish.toml", "dom0-memlock.conf")
EXIT_STATUS = (
    ("0", "success (for dom0 doctor: nothing found that needs attention)"),
    ("1", "an error, said in one line with a hint; or a check that found a problem"),
    ("2", "a usage error: an unknown option, a missing argument, a value out of range"),
)
SEE_ALSO = ("xentop(1)", "xl(1)", "virsh(1)", "memlockd(8)")


@dataclass(frozen=True, slots=True)
class Page:
    """One manual page: its file name (dom0-list.1) and its roff text."""

    name: str
    text: str


def escape(text: str) -> str:
    """Plain text as roff: backslashes and non-ASCII characters escaped, no line taken for a request."""
    text = text.replace("\\", "\\e")
    text = "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)
    # A line starting with . or ' is a roff request; \& in front makes it text.
    return "\n".join(f"\\&{line}" if line[:1] in (".", "'") else line for line in text.split("\n"))


def _option(text: str) -> str:
    """An option or command name in bold, its dashes as minus signs (so it can be copied and typed), never
    hyphenated at the end of a line."""
    return "\\%\\fB" + escape(text).replace("-", "\\-") + "\\fR"


def _syntax(text: str) -> str:
    """Command-line syntax as it is typed: minus signs, and a line may break after a comma of a long {a,b,c}."""
    return escape(text).replace("-", "\\-").replace(",", ",\\:").replace("|", "|\\:")


def _para(text: str) -> str:
    """Running text, filled: newlines and runs of spaces become one space."""
    return escape(" ".join(text.split()))


def _blocks(text: str) -> Iterator[str]:
    """A raw (RawDescriptionHelpFormatter) text: indented lines (examples) kept as they are, the rest filled."""
    lines = text.splitlines()
    while lines:
        indented = lines[0][:1].isspace()
        n = next((i for i, line in enumerate(lines) if line[:1].isspace() != indented), len(lines))
        block, lines = lines[:n], lines[n:]
        if indented:
            yield ".PP\n.nf\n" + "\n".join(escape(line) for line in block) + "\n.fi"
        elif any(line.strip() for line in block):
            yield ".PP\n" + _para(" ".join(block))


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand, in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            seen: set[int] = set()
            out = []
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # an alias names a parser already listed
                    seen.add(id(sub))
                    out.append((name, helps.get(name, ""), sub))
            return out
    return []


def _synopsis(parser: argparse.ArgumentParser) -> str:
    usage = " ".join(parser.format_usage().split())
    usage = usage.removeprefix("usage: ")
    prog = parser.prog
    if usage.startswith(prog):
        return f".ad l\n{_option(prog)}{_syntax(usage[len(prog) :])}\n.ad b"
    return _syntax(usage)


def _invocation(formatter: argparse.HelpFormatter, action: argparse.Action) -> str:
    if not action.option_strings:
        return "\\fI" + _syntax(formatter._format_args(action, action.dest.upper())) + "\\fR"
    names = ", ".join(_option(o) for o in action.option_strings)
    if action.nargs == 0:
        return names
    args = formatter._format_args(action, formatter._get_default_metavar_for_optional(action))
    return f"{names} \\fI{_syntax(args)}\\fR"


def _options(parser: argparse.ArgumentParser) -> Iterator[str]:
    """Every argument the parser takes, as .TP paragraphs: its invocation, then its help."""
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        help = formatter._expand_help(action) if action.help else ""
        yield f".TP\n{_invocation(formatter, action)}\n{_para(help)}"


def _describe(parser: argparse.ArgumentParser, text: str | None) -> str:
    """A description or epilog as argparse would show it: raw text keeps its examples, the rest is filled."""
    if not text:
        return ""
    if isinstance(parser._get_formatter(), argparse.RawDescriptionHelpFormatter):
        return "\n".join(_blocks(text))
    return ".PP\n" + _para(text)


def _heading(name: str, section: int, date: str, version: str) -> str:
    return f'.TH "{name.upper()}" {section} "{date}" "dom0 {version}" "dom0 manual"'


def _parser_body(parser: argparse.ArgumentParser, level: str) -> Iterator[str]:
    """A command's synopsis, description, options and, for a command with verbs, each verb in turn."""
    yield f"{level} SYNOPSIS" if level == ".SH" else ".PP"
    yield _synopsis(parser)
    if parser.description:
        yield _describe(parser, parser.description)
    options = list(_options(parser))
    if options:
        yield f"{level} OPTIONS" if level == ".SH" else ".PP\nOptions:"
        yield from options
    if parser.epilog:
        yield _describe(parser, parser.epilog)
    verbs = _subcommands(parser)
    if verbs and level == ".SH":
        yield ".SH COMMANDS"
    for _name, _help, sub in verbs:
        yield f'.SS "{escape(sub.prog)}"'
        yield from _parser_body(sub, ".SS")


def command_page(name: str, help: str, parser: argparse.ArgumentParser, date: str, version: str) -> Page:
    """dom0-NAME(1): one command with every option and every verb argparse has for it."""
    page = f"dom0-{name}"
    lines = [_heading(page, 1, date, version), ".SH NAME", f"{escape(page)} \\- {_para(help)}"]
    lines += _parser_body(parser, ".SH")
    lines += [".SH SEE ALSO", _option("dom0") + "(1)"]
    return Page(f"{page}.1", "\n".join(lines) + "\n")


def main_page(parser: argparse.ArgumentParser, date: str, version: str) -> Page:
    """dom0(1): the global options, every command with its one-line help, environment, exit status, files."""
    commands = _subcommands(parser)
    first = (parser.description or "").strip().splitlines()[0] if parser.description else ""
    lines = [_heading("dom0", 1, date, version), ".SH NAME", f"dom0 \\- {_para(first)}", ".SH SYNOPSIS"]
    lines.append(_option("dom0") + " [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGUMENTS\\fR]")
    lines += [".SH DESCRIPTION", _describe(parser, parser.description)]
    lines += [".SH OPTIONS", *_options(parser)]
    lines.append(".SH COMMANDS")
    for name, help, sub in commands:
        lines += [".TP", _option(f"dom0 {name}"), _para(help), ".br", f"See {_option(f'dom0-{name}')}(1)."]
        verbs = _subcommands(sub)
        if verbs:
            lines.append(".RS")
            for verb, verb_help, _ in verbs:
                lines += [".TP", _option(verb), _para(verb_help)]
            lines.append(".RE")
    if parser.epilog:
        lines += [".SH EXAMPLES", _describe(parser, parser.epilog)]
    lines.append(".SH ENVIRONMENT")
    for var, what in ENVIRONMENT:
        lines += [".TP", f"\\fB{var}\\fR", _para(what)]
    lines.append(".SH EXIT STATUS")
    for code, what in EXIT_STATUS:
        lines += [".TP", f"\\fB{code}\\fR", _para(what)]
    lines.append(".SH FILES")
    for path, what in FILES:
        lines += [".TP", f"\\fI{escape(path)}\\fR", _para(what)]
    lines.append(".SH SEE ALSO")
    refs = [_option(f"dom0-{name}") + "(1)" for name, _, _ in commands]
    refs += [_option(page) + "(5)" for page in CONFIG_PAGES]
    refs += [_option(ref.split("(")[0]) + "(" + ref.split("(")[1] for ref in SEE_ALSO]
    lines.append(",\n".join(refs))
    return Page("dom0.1", "\n".join(lines) + "\n")


def pages(parser: argparse.ArgumentParser, *, date: str, version: str) -> list[Page]:
    """dom0(1) and one page per command of `parser` (the whole command line, as build_parser() makes it)."""
    out = [main_page(parser, date, version)]
    out += [command_page(name, help, sub, date, version) for name, help, sub in _subcommands(parser)]
    return out


_REFERENCE = re.compile(r"\\fB([a-z0-9.\\-]+)\\fR\((\d)\)")


def references(page: Page) -> set[str]:
    """The pages `page` refers to, as 'name(section)' (for checking that each one exists)."""
    return {f"{m.group(1).replace(chr(92) + '-', '-')}({m.group(2)})" for m in _REFERENCE.finditer(page.text)}
