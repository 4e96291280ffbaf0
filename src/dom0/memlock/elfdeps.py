"""An ELF's shared libraries, found the way the dynamic loader finds them, by reading the files (never `ldd`).

`ldd` runs the binary's own loader (an ELF can name any interpreter, so that executes code chosen by whoever wrote
the file); here the program headers are read instead: PT_INTERP (the loader is itself a file to keep resident),
DT_NEEDED, DT_RPATH / DT_RUNPATH with $ORIGIN, $LIB and $PLATFORM, /etc/ld.so.conf with its includes, and the
default directories, keeping only candidates of the same ELF class and machine, as the loader does.
"""

from __future__ import annotations

import glob
import os
import stat
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

LD_SO_CONF = Path("/etc/ld.so.conf")
# ld.so.conf is a few lines; include globs nest once or twice on real systems.
_CONF_LIMIT = 256 << 10
_CONF_DEPTH = 4
_CONF_FILES = 128
# A support session's closure is a few dozen libraries; this stops a crafted chain of DT_NEEDED early.
_MAX_LIBRARIES = 2000
# Paths in the dynamic string table are short; longer is a malformed or hostile file.
_MAX_STRING = 4096

_CACHE: dict[tuple[int, int, int, int], _Elf] = {}
_CACHE_SIZE = 4096

_STRING_TAGS = {"DT_NEEDED": "needed", "DT_RPATH": "rpath", "DT_RUNPATH": "runpath"}

_DEFAULT_DIRS = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
)

# (e_machine, ELF class, little endian) -> Debian's multiarch triplet, and what $PLATFORM expands to.
_MULTIARCH = {
    ("EM_X86_64", 64): ("x86_64-linux-gnu", "x86_64"),
    ("EM_386", 32): ("i386-linux-gnu", "i686"),
    ("EM_AARCH64", 64): ("aarch64-linux-gnu", "aarch64"),
    ("EM_ARM", 32): ("arm-linux-gnueabihf", "v7l"),
    ("EM_PPC64", 64): ("powerpc64le-linux-gnu", "power8"),
    ("EM_S390", 64): ("s390x-linux-gnu", "z196"),
    ("EM_RISCV", 64): ("riscv64-linux-gnu", "riscv64"),
}


@dataclass(frozen=True, slots=True)
class Dependencies:
    """What one `+` line brings in: the libraries (real paths, the loader first), libraries not found
    (`problems`), and files that could not be read as ELF (`notes`: they are locked alone)."""

    libraries: tuple[Path, ...]
    problems: tuple[str, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Elf:
    kind: tuple[str, int, bool]  # machine, class, little endian: what a library must match
    interp: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]


class _NotElf(Exception):
    pass


@contextmanager
def _opened(path: Path) -> Iterator[IO[bytes]]:
    """`path` (already resolved) opened with O_NOFOLLOW, refused unless it is a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _NotElf("not a regular file")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def _read_elf(path: Path) -> _Elf:
    """The parts of `path`'s ELF headers the loader uses; _NotElf when it is not an ELF, ELFError-like when
    malformed (the caller turns both into a note). Remembered per file version: a support config names the same
    libc and libsystemd dozens of times, and pyelftools takes milliseconds per file."""
    with _opened(path) as f:
        st = os.fstat(f.fileno())
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if key not in _CACHE:
            if len(_CACHE) >= _CACHE_SIZE:
                _CACHE.clear()
            _CACHE[key] = _parse(f)
        return _CACHE[key]


def _parse(f: IO[bytes]) -> _Elf:
    if f.read(4) != b"\x7fELF":
        raise _NotElf("not an ELF file")
    f.seek(0)
    elf = ELFFile(f)
    kind = (str(elf["e_machine"]), int(elf.elfclass), bool(elf.little_endian))
    interp = None
    strings: dict[str, list[str]] = {"needed": [], "rpath": [], "runpath": []}
    for seg in elf.iter_segments():
        if isinstance(seg, InterpSegment):
            interp = str(seg.get_interp_name())[:_MAX_STRING]
        elif isinstance(seg, DynamicSegment):
            for tag in seg.iter_tags():
                attr = _STRING_TAGS.get(tag.entry.d_tag)
                if attr:  # pyelftools names each string tag's value after the tag
                    value = str(getattr(tag, attr))[:_MAX_STRING]
                    strings[attr].extend([value] if attr == "needed" else value.split(":"))
    return _Elf(kind, interp, *(tuple(strings[k]) for k in ("needed", "rpath", "runpath")))


def _kind_of(path: str) -> tuple[str, int, bool] | None:
    try:
        return _read_elf(Path(os.path.realpath(path))).kind
    except Exception:  # a candidate that is not a readable ELF is skipped, as the loader skips it
        return None


def _ld_so_conf_dirs(conf: Path = LD_SO_CONF) -> tuple[str, ...]:
    """The directories /etc/ld.so.conf lists, includes followed (bounded), in order."""
    dirs: list[str] = []
    seen: set[str] = set()

    def read(path: Path, depth: int) -> None:
        real = os.path.realpath(path)
        if real in seen or len(seen) >= _CONF_FILES or depth > _CONF_DEPTH:
            return
        seen.add(real)
        try:
            with _opened(Path(real)) as f:
                text = f.read(_CONF_LIMIT).decode("utf-8", "replace")
        except (OSError, _NotElf):
            return
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if line.startswith("include") and line[7:8].isspace():
                for pattern in line[8:].split():
                    full = pattern if pattern.startswith("/") else str(path.parent / pattern)
                    for match in sorted(glob.glob(full))[:_CONF_FILES]:
                        read(Path(match), depth + 1)
            elif line.startswith("hwcap"):
                continue
            elif line.startswith("/"):
                # ldconfig also accepts "dir=TYPE" and comma/space separated lists
                for item in line.replace(",", " ").split():
                    d = item.split("=", 1)[0]
                    if d not in dirs:
                        dirs.append(d)

    read(conf, 0)
    return tuple(dirs)


def _expand(entry: str, origin: Path, kind: tuple[str, int, bool]) -> str:
    triplet, platform = _MULTIARCH.get((kind[0], kind[1]), ("", ""))
    lib = f"lib/{triplet}" if triplet and os.path.isdir(f"/lib/{triplet}") else ("lib64" if kind[1] == 64 else "lib")
    for name, value in (("ORIGIN", str(origin)), ("LIB", lib), ("PLATFORM", platform)):
        entry = entry.replace("${" + name + "}", value).replace("$" + name, value)
    return entry


def _system_dirs(kind: tuple[str, int, bool], conf: Path) -> list[str]:
    """ld.so.conf's directories, then the loader's defaults and the multiarch directories of this machine."""
    triplet = _MULTIARCH.get((kind[0], kind[1]), ("", ""))[0]
    defaults = list(_DEFAULT_DIRS)
    for d in (f"/lib/{triplet}", f"/usr/lib/{triplet}") if triplet else ():
        if d not in defaults:
            defaults.append(d)
    return [*_ld_so_conf_dirs(conf), *defaults]


def _find(name: str, obj: Path, dirs: list[str], kind: tuple[str, int, bool]) -> str | None:
    """Where the loader finds DT_NEEDED `name` of `obj`: the first candidate of the same class and machine (a
    32-bit libc in a 64-bit search path is skipped, as ld.so skips it)."""
    candidates = [_expand(name, obj.parent, kind)] if "/" in name else [os.path.join(d, name) for d in dirs]
    return next((c for c in candidates if os.path.isfile(c) and _kind_of(c) == kind), None)


def resolve(path: Path, conf: Path = LD_SO_CONF) -> Dependencies:
    """The closure of `path`'s shared libraries as the loader would load them (real paths, each once, the loader
    first); `path` itself is not included. Libraries not found are problems; an unreadable or non-ELF `path`
    gives a note and no libraries."""
    real = Path(os.path.realpath(path))
    try:
        top = _read_elf(real)
    except _NotElf as exc:
        return Dependencies((), (), (f"{path} is {exc}: locked alone, without libraries",))
    except (ELFError, Exception) as exc:  # pyelftools raises struct, value and index errors on truncated files
        return Dependencies((), (), (f"{path} is a malformed ELF ({exc or type(exc).__name__}): locked alone",))

    system = _system_dirs(top.kind, conf)

    found: dict[str, Path] = {}  # soname -> real path: the loader loads each soname once
    out: list[Path] = []
    problems: list[str] = []
    notes: list[str] = []

    def add(p: Path) -> None:
        if p not in out and p != real:
            out.append(p)

    if top.interp:
        interp = Path(os.path.realpath(top.interp))
        if os.path.isfile(interp):
            add(interp)
        else:
            problems.append(f"the loader {top.interp} of {path} is not found")

    # The executable's DT_RPATH applies to every object's lookups (when that object has no RUNPATH).
    exe_rpath = [_expand(e, real.parent, top.kind) for e in top.rpath if e] if not top.runpath else []
    queue: deque[tuple[Path, _Elf, str]] = deque([(real, top, str(path))])
    while queue and len(found) < _MAX_LIBRARIES:
        obj, elf, shown = queue.popleft()
        own_rpath = [_expand(e, obj.parent, top.kind) for e in elf.rpath if e] if not elf.runpath else []
        runpath = [_expand(e, obj.parent, top.kind) for e in elf.runpath if e]
        dirs = [*own_rpath, *exe_rpath, *runpath, *system]
        for name in elf.needed:
            if name in found:
                continue
            hit = _find(name, obj, dirs, top.kind)
            if hit is None:
                problems.append(f"{name}, needed by {shown}, is not found in its search path")
                found[name] = Path()
                continue
            lib = Path(os.path.realpath(hit))
            found[name] = lib
            if lib in out or lib == real:
                continue
            add(lib)
            try:
                queue.append((Path(hit).parent / lib.name, _read_elf(lib), hit))
            except Exception as exc:
                notes.append(f"{hit} (needed by {shown}) could not be read as ELF ({exc}): its own libraries skipped")
    return Dependencies(tuple(out), tuple(problems), tuple(notes))


def needed_libraries(path: Path) -> tuple[Path, ...]:
    """The real paths of every library the loader would load for `path` (its interpreter first)."""
    return resolve(path).libraries
