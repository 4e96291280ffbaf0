"""`dom0 completion bash|zsh`: Tab completion scripts generated from the argument parser itself, so they list the
same commands, options and choices as `dom0 --help`; and `dom0 __complete-guests [URI]`, the guest names they ask
for, answered from a few-seconds cache or the cheapest listing there is.

Every command and option is baked into the script: Tab after `dom0 sa` runs no program at all. Only guest names
come from the host, and only when a command takes a guest there.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from dom0.errors import Dom0Error
from dom0.filedata import open_own_directory

# Only what main() has loaded already, and zlib, at the top: a cached answer is the interpreter's start, main's
# imports and one small file (~80 ms); the hypervisor layer and dom0.run (~50 ms more) load only on a miss.

# The hidden command the scripts run for guest names; main() sends it here before building any parser.
GUESTS_WORD = "__complete-guests"
# Guests come and go rarely while someone types; a few seconds makes repeated Tabs instant and is never long stale.
CACHE_SECONDS = 5.0
# A host's guest names fit in far less; anything larger in the cache file is not dom0's and is ignored.
CACHE_LIMIT = 1 << 20
# A hypervisor that does not answer must not freeze the shell: the names are simply not offered.
LIST_TIMEOUT = 2.0

# Positional arguments and option values by the metavar that names them: what Tab offers there.
_GUEST_METAVARS = ("GUEST", "SOURCE", "GUEST[:PORT]", "PUBLIC_IP:PORT|GUEST")
_FILE_METAVARS = ("FILE", "IMAGE", "FS", "OUT", "DISK", "CONFIG")
# Words a handler reads in a positional slot that no subparser declares: `dom0 mem set GUEST SIZE`.
_EXTRA_WORDS = {"mem": ("set",)}


class Level(NamedTuple):
    """One parser on the way to a command: `` (dom0 itself), `save`, `image`, `image inspect`."""

    path: str
    options: tuple[str, ...]
    takes_value: tuple[str, ...]
    values: tuple[tuple[str, str], ...]  # (option, what its value completes to)
    subcommands: tuple[tuple[str, str], ...]  # (name, help)
    positionals: str  # comma-separated slots, each `|`-separated items (@guest, @file, @dir, words); `...` repeats


def _kind(metavar: str | None) -> str:
    name = metavar or ""
    if name in _GUEST_METAVARS:
        return "@guest"
    if name == "TARGET":  # an image, block device, directory tree or guest
        return "@file|@guest"
    if name in _FILE_METAVARS:
        return "@file"
    if name.startswith("DIR"):
        return "@dir"
    return ""


def _value(action: argparse.Action) -> str:
    if action.choices is not None:
        return "|".join(str(c) for c in action.choices)
    return _kind(action.metavar if isinstance(action.metavar, str) else None)


def levels(parser: argparse.ArgumentParser, path: str = "") -> Iterator[Level]:
    """Every parser reachable from `parser`, dom0's own first, in the order `--help` lists them."""
    options: list[str] = []
    takes: list[str] = []
    values: list[tuple[str, str]] = []
    subs: list[tuple[str, str]] = []
    children: list[tuple[str, argparse.ArgumentParser]] = []
    slots: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, child in action.choices.items():
                subs.append((name, helps.get(name, "")))
                children.append((name, child))
        elif action.option_strings:
            options.extend(action.option_strings)
            if action.nargs != 0:
                takes.extend(action.option_strings)
                kind = _value(action)
                if kind:
                    values.extend((o, kind) for o in action.option_strings)
        else:
            kind = _value(action)
            if not slots and path in _EXTRA_WORDS:
                kind = "|".join((*_EXTRA_WORDS[path], kind))
            slots.append(kind)
            if action.nargs in ("*", "+", argparse.REMAINDER):
                slots[-1] += "..."
    yield Level(path, tuple(options), tuple(takes), tuple(values), tuple(subs), ",".join(slots))
    for name, child in children:
        yield from levels(child, f"{path} {name}".strip())


def _q(text: str) -> str:
    """`text` as one single-quoted shell word (bash and zsh read it alike)."""
    return "'" + text.replace("'", "'\\''") + "'"


def _spec(all_levels: list[Level]) -> str:
    """The shell functions both scripts share: what each level offers, and what each option's value is."""
    lines = [
        "# What each command level offers (generated from dom0's argument parser).",
        "_dom0_spec() {",
        '    case "$1" in',
    ]
    for lv in all_levels:
        lines.append(f"    {_q(lv.path)})")
        lines.append(f"        _dom0_opts={_q(' '.join(lv.options))}")
        lines.append(f"        _dom0_takes={_q(' '.join(lv.takes_value))}")
        lines.append(f"        _dom0_subs={_q(' '.join(name for name, _ in lv.subcommands))}")
        lines.append(f"        _dom0_pos={_q(lv.positionals)} ;;")
    lines += [
        "    esac",
        "}",
        "",
        "# What the value of an option completes to.",
        "_dom0_value() {",
        '    case "$1 $2" in',
    ]
    for lv in all_levels:
        for option, kind in lv.values:
            lines.append(f"    {_q(f'{lv.path} {option}')}) _dom0_val={_q(kind)} ;;")
    lines += ["    *) _dom0_val='' ;;", "    esac", "}", ""]
    return "\n".join(lines)


def _zsh_help(all_levels: list[Level]) -> str:
    lines = ["# Each level's subcommands with their help, for zsh's menu.", "_dom0_described() {", '    case "$1" in']
    for lv in all_levels:
        if lv.subcommands:
            entries = " ".join(_q(f"{name}:{help}") for name, help in lv.subcommands)
            lines.append(f"    {_q(lv.path)}) _dom0_help=({entries}) ;;")
    lines += ["    *) _dom0_help=() ;;", "    esac", "}", ""]
    return "\n".join(lines)


_HEADER = """\
# {shell} completion for dom0, generated by `dom0 completion {shell}` from dom0's argument parser (`make completion`);
# edit src/dom0/cli/completion.py, not this file.
"""

# Walks the words before the cursor as argparse would (options that take a value skip it, a subcommand moves down a
# level, -c/--connect before the command names the hypervisor), then offers what the cursor's slot takes.
_BASH = r"""
# Bash splits words at : and = (COMP_WORDBREAKS): join them back, so a URI or --opt=value is one word.
_dom0_join() {
    local i w
    _dom0_words=()
    for ((i = 0; i <= COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if ((i > 1)) && [[ $w == [:=] || ${COMP_WORDS[i - 1]} == [:=] ]]; then
            _dom0_words[${#_dom0_words[@]} - 1]+=$w
        else
            _dom0_words+=("$w")
        fi
    done
}

_dom0_guests() {
    local cmd=${_dom0_words[0]} name
    [[ $cmd == \~* || -z $cmd ]] && cmd=dom0
    while IFS= read -r name; do
        [[ -n $name && $name == "$1"* ]] && COMPREPLY+=("$name")
    done < <(timeout 2 "$cmd" __complete-guests "$_dom0_uri" 2>/dev/null)
}

# $1: a slot (`|`-separated items), $2: the word so far.
_dom0_offer() {
    local item items words=''
    IFS='|' read -r -a items <<<"${1%...}"
    for item in "${items[@]}"; do
        case $item in
        @guest) _dom0_guests "$2" ;;
        @file) compopt -o filenames 2>/dev/null; mapfile -t -O ${#COMPREPLY[@]} COMPREPLY < <(compgen -f -- "$2") ;;
        @dir) compopt -o filenames 2>/dev/null; mapfile -t -O ${#COMPREPLY[@]} COMPREPLY < <(compgen -d -- "$2") ;;
        ?*) words+=" $item" ;;
        esac
    done
    [[ -n $words ]] && COMPREPLY+=($(compgen -W "$words" -- "$2"))
}

_dom0() {
    local IFS=$' \t\n' _dom0_words _dom0_uri='' _dom0_opts _dom0_takes _dom0_subs _dom0_pos _dom0_val
    local level='' expect='' dashdash='' npos=0 i w cur slots
    COMPREPLY=()
    _dom0_join
    cur=${_dom0_words[${#_dom0_words[@]} - 1]}
    _dom0_spec ''
    for ((i = 1; i < ${#_dom0_words[@]} - 1; i++)); do
        w=${_dom0_words[i]}
        if [[ -n $expect ]]; then
            [[ -z $level && ($expect == -c || $expect == --connect) ]] && _dom0_uri=$w
            expect=''
        elif [[ -z $dashdash && $w == -?* ]]; then
            if [[ $w == -- ]]; then
                dashdash=1
            elif [[ $w == --*=* ]]; then
                [[ -z $level && ${w%%=*} == --connect ]] && _dom0_uri=${w#*=}
            elif [[ " $_dom0_takes " == *" $w "* ]]; then
                expect=$w
            elif [[ -z $level && $w == -c?* ]]; then
                _dom0_uri=${w#-c}
            fi
        elif [[ -n $_dom0_subs && $npos == 0 ]]; then
            level=${level:+$level }$w
            _dom0_spec "$level"
        else
            npos=$((npos + 1))
        fi
    done
    if [[ -n $expect ]]; then
        _dom0_value "$level" "$expect"
        [[ -n $_dom0_val ]] && _dom0_offer "$_dom0_val" "$cur"
    elif [[ -z $dashdash && $cur == --*=* ]]; then
        _dom0_value "$level" "${cur%%=*}"
        [[ -n $_dom0_val ]] && _dom0_offer "$_dom0_val" "${cur#*=}"
        [[ $COMP_WORDBREAKS == *=* ]] || COMPREPLY=("${COMPREPLY[@]/#/${cur%%=*}=}")
    elif [[ -z $dashdash && $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$_dom0_opts" -- "$cur"))
    elif [[ -n $_dom0_subs ]]; then
        ((npos == 0)) && COMPREPLY=($(compgen -W "$_dom0_subs" -- "$cur"))
    elif [[ -n $_dom0_pos ]]; then
        IFS=, read -r -a slots <<<"$_dom0_pos"
        if ((npos < ${#slots[@]})); then
            _dom0_offer "${slots[npos]}" "$cur"
        elif [[ ${slots[${#slots[@]} - 1]} == *... ]]; then
            _dom0_offer "${slots[${#slots[@]} - 1]}" "$cur"
        fi
    fi
    # What bash replaces is only the part after the last : (a word break): drop what comes before it.
    if [[ $cur == *:* && $COMP_WORDBREAKS == *:* ]]; then
        local pre=${cur%"${cur##*:}"}
        COMPREPLY=("${COMPREPLY[@]#"$pre"}")
    fi
    return 0
}

complete -F _dom0 dom0
"""

_ZSH = r"""
_dom0_offer() {
    local item
    local -a items words
    items=("${(@s:|:)${1%...}}")
    for item in $items; do
        case $item in
        @guest) words+=("${(@f)$(timeout 2 $_dom0_cmd __complete-guests "$_dom0_uri" 2>/dev/null)}") ;;
        @file) _files ;;
        @dir) _files -/ ;;
        ?*) words+=("$item") ;;
        esac
    done
    words=(${words:#})
    (( $#words )) && compadd -- $words
}

_dom0() {
    local _dom0_cmd=${words[1]} _dom0_uri='' _dom0_opts _dom0_takes _dom0_subs _dom0_pos _dom0_val
    local level='' expect='' dashdash='' npos=0 i w cur=${words[CURRENT]}
    local -a slots _dom0_help
    [[ $_dom0_cmd == \~* ]] && _dom0_cmd=dom0
    _dom0_spec ''
    for ((i = 2; i < CURRENT; i++)); do
        w=${words[i]}
        if [[ -n $expect ]]; then
            [[ -z $level && ($expect == -c || $expect == --connect) ]] && _dom0_uri=$w
            expect=''
        elif [[ -z $dashdash && $w == -?* ]]; then
            if [[ $w == -- ]]; then
                dashdash=1
            elif [[ $w == --*=* ]]; then
                [[ -z $level && ${w%%=*} == --connect ]] && _dom0_uri=${w#*=}
            elif [[ " $_dom0_takes " == *" $w "* ]]; then
                expect=$w
            elif [[ -z $level && $w == -c?* ]]; then
                _dom0_uri=${w#-c}
            fi
        elif [[ -n $_dom0_subs && $npos == 0 ]]; then
            level=${level:+$level }$w
            _dom0_spec "$level"
        else
            npos=$((npos + 1))
        fi
    done
    if [[ -n $expect ]]; then
        _dom0_value "$level" "$expect"
        [[ -n $_dom0_val ]] && _dom0_offer "$_dom0_val"
    elif [[ -z $dashdash && $cur == --*=* ]]; then
        _dom0_value "$level" "${cur%%=*}"
        compset -P '*='
        [[ -n $_dom0_val ]] && _dom0_offer "$_dom0_val"
    elif [[ -z $dashdash && $cur == -* ]]; then
        compadd -- ${=_dom0_opts}
    elif [[ -n $_dom0_subs ]]; then
        if ((npos == 0)); then
            _dom0_described "$level"
            _describe -t commands 'dom0 command' _dom0_help
        fi
    elif [[ -n $_dom0_pos ]]; then
        slots=("${(@s:,:)_dom0_pos}")
        if ((npos < $#slots)); then
            _dom0_offer "${slots[npos + 1]}"
        elif [[ ${slots[-1]} == *... ]]; then
            _dom0_offer "${slots[-1]}"
        fi
    fi
    return 0
}

# Autoloaded from $fpath this file is _dom0's body: define the helpers, then complete. Sourced, it registers itself.
if [[ $funcstack[1] == _dom0 ]]; then
    _dom0 "$@"
else
    compdef _dom0 dom0
fi
"""


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The whole completion script for `shell` (bash or zsh)."""
    all_levels = list(levels(parser))
    if shell == "zsh":
        return "#compdef dom0\n" + _HEADER.format(shell=shell) + "\n" + _spec(all_levels) + _zsh_help(all_levels) + _ZSH
    return _HEADER.format(shell=shell) + "\n" + _spec(all_levels) + _BASH


def cmd_completion(args: argparse.Namespace) -> int:
    """Print the completion script; main passes its parser factory, as cli modules do not import main."""
    factory: Callable[[], argparse.ArgumentParser] = args.parser_factory
    sys.stdout.write(script(factory(), args.shell))
    return 0


# --- guest names, for the scripts ---------------------------------------------------------------------------------


def _cache_directory() -> str | None:
    """In this user's own runtime directory; root without one uses /run/dom0, beside dom0's locks. Never /tmp, where
    anyone could plant the file; None when there is no such directory (su sessions may have none)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
    try:
        own = os.path.isabs(runtime) and os.stat(runtime).st_uid == os.geteuid()
    except OSError:
        own = False
    if own:
        return os.path.join(runtime, "dom0", "completion")
    return "/run/dom0/completion" if os.geteuid() == 0 else None


def _open_own_directory(path: str, create: bool) -> int | None:
    """`path` opened without following a link, when it is this user's and no one else may write to it."""
    try:
        return open_own_directory(Path(path), create=create, what="the completion cache", hint="")
    except Dom0Error:
        return None  # a completion never complains: it only offers nothing


def _cache_name(key: str) -> str:
    # Two keys may share a name: the file's first line says which one it answers, and the other is a miss.
    return f"complete-guests-{zlib.crc32(key.encode()):08x}"


def _read_cache(key: str, now: float) -> list[str] | None:
    """The names cached for `key` less than CACHE_SECONDS ago, from a file only this user could have written."""
    directory = _cache_directory()
    dir_fd = _open_own_directory(directory, create=False) if directory else None
    if dir_fd is None:
        return None
    try:
        fd = os.open(_cache_name(key), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        fresh = 0 <= now - st.st_mtime < CACHE_SECONDS
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077 or not fresh:
            return None
        data = f.read(CACHE_LIMIT + 1)
    lines = data.decode("utf-8", "replace").splitlines()
    if len(data) > CACHE_LIMIT or not lines or lines[0] != key:
        return None
    return lines[1:]


def _write_cache(key: str, names: list[str]) -> None:
    """Replace the cache file whole (a new file renamed over it), so a reader never sees half of it."""
    directory = _cache_directory()
    dir_fd = _open_own_directory(directory, create=True) if directory else None
    if dir_fd is None:
        return
    name = _cache_name(key)
    temporary = f".{name}.{os.getpid()}"
    try:
        fd = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd
        )
        with os.fdopen(fd, "wb") as f:
            f.write("\n".join([key, *names, ""]).encode())
        os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def _list_names(uri: str, reason: str) -> list[str]:
    """Every guest's name, running or not: virsh's listing (~35 ms) where virsh is installed, which is far cheaper
    than loading libvirt's Python binding; the hypervisor layer otherwise (and for xl://, which virsh cannot reach)."""
    from dom0 import run
    from dom0.hypervisor import UriChoice, connect, is_xl_uri

    if not is_xl_uri(uri) and run.available("virsh"):
        out = run.run(["virsh", "-c", uri, "list", "--all", "--name"], timeout=LIST_TIMEOUT).stdout
        return [line for line in out.decode("utf-8", "replace").splitlines() if line.strip()]
    hv = connect(UriChoice(uri, reason))
    try:
        return [guest.name for guest in hv.guests(include_inactive=True)]
    finally:
        hv.close()


def cmd_complete_guests(args: argparse.Namespace) -> int:
    """`dom0 __complete-guests [URI]` (args.words: what follows it): guest names, one a line, for the completion
    scripts. Silent when the hypervisor cannot be reached: a Tab that offers nothing is better than an error in the
    middle of a command line."""
    words: list[str] = args.words
    explicit = words[0] if words and words[0] else None
    # Keyed by what picks the hypervisor (-c, else the environment; the host's own default does not change), so a
    # cached answer needs no hypervisor code at all.
    env = [os.environ.get(var, "") for var in ("DOM0_CONNECT", "LIBVIRT_DEFAULT_URI")]
    key = f"-c {explicit}" if explicit else "\t".join(["env", *env])
    names = _read_cache(key, time.time())
    if names is None:
        from dom0.hypervisor import choose_uri

        choice = choose_uri(explicit)
        try:
            names = _list_names(choice.uri, choice.reason)
        except Dom0Error:
            return 1
        _write_cache(key, names)
    if names:
        sys.stdout.write("\n".join(names) + "\n")
    return 0
