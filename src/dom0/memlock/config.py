"""memlockd's configuration format, read unchanged, expanded to the files to lock.

One absolute path per line. Prefixes, combinable in any order before the path:
  `+`  also lock the ELF's shared libraries (read from the file, see elfdeps; memlockd ran ldd)
  `?`  a missing file is fine (a tool not installed on this host)
  `!`  dom0's extension: lock the file even though non-root users can write it (owner not root, or group/other
       write bit); without it such files are left out with a note, since locking them lets anyone who can write
       them pin memory and swap what root keeps resident
`%/path` includes another config file (or a directory of `*.cfg`); `#` starts a comment; blank lines are skipped.
`-c` may name a directory, whose `*.cfg` files are read in name order. Without `-c`: /etc/memlockd.cfg when it
exists, else dom0's own default (defaults.py).

A bad line never stops the rest: each missing file, unreadable config, include loop or non-regular file is one
problem line naming FILE:LINE, and everything else is still listed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from dom0.errors import Dom0Error
from dom0.filedata import kind_of, read_regular

SYSTEM_CONFIG = Path("/etc/memlockd.cfg")
DEFAULT_SOURCE = "dom0's default config"
# memlockd configs are a few dozen lines; a megabyte is the wrong file.
CONFIG_LIMIT = 1 << 20
# memlockd follows one level of %; nesting deeper than this is a loop in all but name.
INCLUDE_DEPTH = 8
# A directory of *.cfg on a real host holds a handful.
_DIR_ENTRIES = 1000


@dataclass(frozen=True, slots=True)
class LockFile:
    """One file to lock: its real path, why ("config FILE:LINE" or "library of /usr/sbin/sshd"), its size, and
    whether non-root users can write it (only listed then when the config line insisted with `!`)."""

    path: Path
    reason: str
    size: int
    writable_by_others: bool


@dataclass(frozen=True, slots=True)
class Expansion:
    """A config expanded: the files in config order (each real file once), the problem lines, the config files
    read, and notes (non-ELF `+` files, files left out as writable by others) that are not problems."""

    files: tuple[LockFile, ...]
    problems: tuple[str, ...]
    sources: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


class _Expander:
    def __init__(self) -> None:
        self.files: dict[Path, LockFile] = {}
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.sources: list[str] = []

    # -- configs ---------------------------------------------------------------------------------------------------

    def config(self, path: Path, where: str, stack: tuple[str, ...]) -> None:
        """Read `path` (a file, or a directory of *.cfg); `where` names what pointed at it ("" for -c)."""
        at = f"{where}: " if where else ""
        if len(stack) >= INCLUDE_DEPTH:
            self.problems.append(f"{at}includes nest deeper than {INCLUDE_DEPTH}; {path} not read")
            return
        real = os.path.realpath(path)
        if real in stack:
            loop = " -> ".join([*stack[stack.index(real) :], real])
            self.problems.append(f"{at}include loop: {loop}; not followed")
            return
        if os.path.isdir(real):
            self.directory(Path(real), where, stack)
            return
        try:
            data = read_regular(path, CONFIG_LIMIT, "check the path (memlockd's config, or a directory of *.cfg)")
        except Dom0Error as exc:
            self.problems.append(f"{at}{exc.message}")
            return
        self.sources.append(str(path))
        self.text(data.decode("utf-8", "replace"), str(path), (*stack, real))

    def directory(self, real: Path, where: str, stack: tuple[str, ...]) -> None:
        at = f"{where}: " if where else ""
        try:
            names = sorted(e.name for e in os.scandir(real) if e.name.endswith(".cfg"))[:_DIR_ENTRIES]
        except OSError as exc:
            self.problems.append(f"{at}cannot read the directory {real}: {exc.strerror}")
            return
        for name in names:
            entry = real / name
            if entry.is_symlink():
                # Whoever can plant a link in a config directory must not make dom0 read (and report on) any file
                # on the host: a link is followed only while it stays inside the directory.
                target = Path(os.path.realpath(entry))
                if target.parent != real and real not in target.parents:
                    self.problems.append(f"{entry} is a symlink to {target}, outside {real}; not read")
                    continue
            self.config(entry, where, (*stack, str(real)))

    def text(self, text: str, source: str, stack: tuple[str, ...]) -> None:
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{source}:{number}"
            if line.startswith("%"):
                target = line[1:].strip()
                if not target.startswith("/"):
                    self.problems.append(f"{where}: %{target}: an include needs an absolute path")
                    continue
                self.config(Path(target), where, stack)
                continue
            prefix = ""
            while line and line[0] in "+?!":
                prefix += line[0]
                line = line[1:].lstrip()
            if not line.startswith("/"):
                self.problems.append(f"{where}: {raw.strip()!r} is not an absolute path (memlockd's format)")
                continue
            self.entry(Path(line), where, libraries="+" in prefix, optional="?" in prefix, insist="!" in prefix)

    # -- files -----------------------------------------------------------------------------------------------------

    def entry(self, path: Path, where: str, *, libraries: bool, optional: bool, insist: bool) -> None:
        if not os.path.lexists(path) or not os.path.exists(path):
            if not optional:
                self.problems.append(f"{where}: {path} does not exist (prefix the line with ? if that is fine)")
            return
        if not self.add(path, f"config {where}", where, insist):
            return
        if libraries:
            from dom0.memlock.elfdeps import resolve

            deps = resolve(path)
            self.problems.extend(f"{where}: {p}" for p in deps.problems)
            self.notes.extend(f"{where}: {n}" for n in deps.notes)
            for lib in deps.libraries:
                self.add(lib, f"library of {path}", where, insist)

    def add(self, path: Path, reason: str, where: str, insist: bool) -> bool:
        """Add `path`'s real file unless already there; False when it cannot be locked at all."""
        real = Path(os.path.realpath(path))
        if real in self.files:
            return True
        try:
            st = os.stat(real, follow_symlinks=False)
        except OSError as exc:
            self.problems.append(f"{where}: cannot read {path}: {exc.strerror}")
            return False
        if not stat.S_ISREG(st.st_mode):
            self.problems.append(f"{where}: {path} is {kind_of(st.st_mode)}; only regular files are locked")
            return False
        writable = bool(st.st_mode & 0o022) or st.st_uid != 0
        if writable and not insist:
            self.notes.append(
                f"{where}: left out {real}: users other than root can write it (prefix the line with ! to lock it)"
            )
            return True
        self.files[real] = LockFile(real, reason, st.st_size, writable)
        return True


def default_path() -> Path | None:
    """/etc/memlockd.cfg when it exists (an existing memlockd setup is kept), else None: dom0's own default."""
    return SYSTEM_CONFIG if os.path.lexists(SYSTEM_CONFIG) else None


def expand(config: Path | None) -> Expansion:
    """The files `config` (a file or directory; None: /etc/memlockd.cfg, else dom0's default) asks to lock."""
    ex = _Expander()
    chosen = config if config is not None else default_path()
    if chosen is None:
        from dom0.memlock.defaults import default_config

        ex.sources.append(DEFAULT_SOURCE)
        ex.text(default_config(), DEFAULT_SOURCE, ())
    else:
        ex.config(chosen, "", ())
    return Expansion(tuple(ex.files.values()), tuple(ex.problems), tuple(ex.sources), tuple(ex.notes))
