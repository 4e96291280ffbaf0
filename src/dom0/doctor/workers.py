"""Worker pools configured inside a guest (Apache, PHP-FPM), read from its own files, against its memory.

An Apache allowed 150 workers in a 256 MiB guest takes the guest down at its first busy hour: each prefork child
holds tens of MiB, the guest swaps, its OOM killer fires. The configuration says so long before; this module reads
it through a GuestTree (read-only, symlinks resolved inside the guest) and says how many workers fit.

Reading is bounded: at most MAX_FILES files of at most MAX_FILE_BYTES each, includes at most MAX_INCLUDE_DEPTH
deep, a file included twice (an include loop) read once, at most MAX_GLOB names per wildcard.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field

from dom0.doctor.findings import Finding, Severity
from dom0.errors import Dom0Error
from dom0.image.tree import ResolvingTree

MAX_FILES = 64
MAX_FILE_BYTES = 1 << 20
MAX_INCLUDE_DEPTH = 8
MAX_GLOB = 256

# Memory per worker, where nothing better is known. Apache's performance notes say to measure a child's size with
# top and divide the RAM left by it; these are the usual sizes measured on small LAMP servers:
# a prefork child with mod_php loaded holds about 25-50 MiB resident; the low end is taken, so "about N fit" is
# an upper bound rather than an alarm about a guess.
APACHE_PREFORK_MIB = 25
# A worker/event child is one process whose threads (ThreadsPerChild, 25 by default) share its memory: about
# 30 MiB a process without an embedded interpreter. Processes, not threads, are what cost memory.
APACHE_THREADED_PROCESS_MIB = 32
# A PHP-FPM child running a typical application (WordPress, Drupal) sits at 30-60 MiB; 40 MiB is the figure the
# PHP-FPM tuning guides start from (php.ini's memory_limit of 128M is only its ceiling).
PHP_FPM_CHILD_MIB = 40
# What the guest's own system takes before any worker: kernel, page tables, init, sshd, cron, syslog of a small
# Debian or RHEL server.
OS_BASE_MIB = 128

# Apache's compiled-in defaults (httpd 2.4 documentation, mpm_common): prefork allows 256 workers (ServerLimit
# 256); worker and event run at most ServerLimit 16 processes of ThreadsPerChild 25 threads.
PREFORK_SERVER_LIMIT = 256
THREADED_SERVER_LIMIT = 16
THREADS_PER_CHILD = 25

# Where each distribution keeps Apache's main file, and the ServerRoot relative includes start from.
APACHE_LAYOUTS = (
    ("/etc/apache2/apache2.conf", "/etc/apache2"),  # Debian, Ubuntu
    ("/etc/httpd/conf/httpd.conf", "/etc/httpd"),  # RHEL, Fedora, CentOS
    ("/etc/apache2/httpd.conf", "/etc/apache2"),  # SUSE
)
PHP_FPM_POOLS = ("/etc/php/*/fpm/pool.d/*.conf", "/etc/php5/fpm/pool.d/*.conf", "/etc/php-fpm.d/*.conf")

_MPM = re.compile(r"(?:mpm_)?(prefork|worker|event)(?:_module|\.c)")
_WORKER_LIMITS = ("maxrequestworkers", "maxclients")  # MaxClients is Apache 2.2's name for the same limit


@dataclass(frozen=True, slots=True)
class WorkerPool:
    """One pool: how many workers it may run, in how many processes, and what one process costs."""

    server: str  # "Apache prefork", "PHP-FPM pool www"
    workers: int
    processes: int
    setting: str  # where the limit comes from, e.g. "MaxRequestWorkers in /etc/apache2/mods-enabled/mpm_prefork.conf"
    directive: str  # what to change: "MaxRequestWorkers", "pm.max_children"
    mib_per_process: int
    threads_per_process: int = 1

    @property
    def need_mib(self) -> int:
        """Memory the pool takes at its limit."""
        return self.processes * self.mib_per_process


@dataclass(frozen=True, slots=True)
class PoolScan:
    """The pools found in a guest, the files read, and what could not be read (in words)."""

    pools: tuple[WorkerPool, ...] = ()
    files_read: int = 0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Directive:
    name: str  # lower case: Apache's directive names are case-insensitive
    args: tuple[str, ...]
    path: str
    conditions: tuple[str, ...]  # the <IfModule> arguments around it


@dataclass(slots=True)
class _Reader:
    """Reads a guest's config files within the bounds, shared by Apache and PHP-FPM."""

    tree: ResolvingTree
    seen: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def text(self, path: str) -> str | None:
        real = self.tree.realpath(path)
        if real is None or not self.tree.is_file(real):
            return None
        if real in self.seen:
            self.notes.append(f"{path} is included more than once (an include loop?): read once")
            return None
        if len(self.seen) >= MAX_FILES:
            self.notes.append(f"stopped at {MAX_FILES} files; {path} and later ones were not read")
            return None
        self.seen.add(real)
        try:
            return self.tree.read_text(real, MAX_FILE_BYTES)
        except Dom0Error as exc:
            self.notes.append(exc.message)
            return None

    def glob(self, pattern: str) -> list[str]:
        """Guest paths matching a shell pattern (wildcards in any component), resolved inside the guest."""
        paths = ["/"]
        for part in (p for p in pattern.split("/") if p):
            found: list[str] = []
            for base in paths:
                if not any(c in part for c in "*?["):
                    found.append(f"{base.rstrip('/')}/{part}")
                    continue
                try:
                    names = self.tree.listdir(base) if self.tree.is_dir(base) else []
                except Dom0Error:
                    continue
                found += [f"{base.rstrip('/')}/{n}" for n in names[:MAX_GLOB] if fnmatch.fnmatchcase(n, part)]
            paths = found[:MAX_GLOB]
        return sorted(p for p in paths if self.tree.exists(p))


def _logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined and comments and blanks left out."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _words(line: str) -> list[str]:
    return [w.strip("\"'") for w in re.findall(r"\"[^\"]*\"|'[^']*'|\S+", line)]


def _read_apache(reader: _Reader, path: str, root: str, depth: int, out: list[_Directive]) -> str:
    """Append the directives of `path` and of what it includes to `out`; the ServerRoot in force afterwards."""
    text = reader.text(path)
    if text is None:
        return root
    conditions: list[str] = []
    for line in _logical_lines(text):
        if line.startswith("</"):
            if conditions:
                conditions.pop()
            continue
        if line.startswith("<"):
            words = _words(line.strip("<>"))
            is_ifmodule = words and words[0].lower() == "ifmodule" and len(words) > 1
            conditions.append(words[1] if is_ifmodule else "")
            continue
        words = _words(line)
        name = words[0].lower()
        if name == "serverroot" and len(words) > 1:
            root = words[1]
        elif name in ("include", "includeoptional") and len(words) > 1:
            if depth >= MAX_INCLUDE_DEPTH:
                reader.notes.append(f"includes deeper than {MAX_INCLUDE_DEPTH} levels were not read (in {path})")
                continue
            pattern = words[1] if words[1].startswith("/") else f"{root.rstrip('/')}/{words[1]}"
            for included in _expand(reader, pattern):
                root = _read_apache(reader, included, root, depth + 1, out)
        else:
            out.append(_Directive(name, tuple(words[1:]), path, tuple(conditions)))
    return root


def _expand(reader: _Reader, pattern: str) -> list[str]:
    """The files an Include names: a glob, a file, or every file in a directory (and its subdirectories)."""
    found: list[str] = []
    pending = reader.glob(pattern)
    while pending and len(found) < MAX_FILES:
        path = pending.pop(0)
        if reader.tree.is_dir(path):
            try:
                pending += [f"{path.rstrip('/')}/{n}" for n in reader.tree.listdir(path)[:MAX_GLOB]]
            except Dom0Error:
                continue
        else:
            found.append(path)
    return found


def _holds(condition: str, mpm: str) -> bool:
    """Whether an <IfModule> condition holds: MPM modules by the MPM in use, any other module assumed loaded."""
    negated = condition.startswith("!")
    m = _MPM.fullmatch(condition.lstrip("!"))
    if m is None:
        return True
    return (m.group(1) == mpm) != negated


def _mpm(tree: ResolvingTree, root: str, directives: list[_Directive]) -> tuple[str, str]:
    """The MPM Apache loads and how that is known."""
    for d in reversed(directives):
        if d.name == "loadmodule" and d.args and (m := _MPM.fullmatch(d.args[0])):
            return m.group(1), f"LoadModule in {d.path}"
    for mpm in ("event", "worker", "prefork"):
        load = f"{root}/mods-enabled/mpm_{mpm}.load"
        if tree.exists(load):
            return mpm, load
    return "prefork", "no LoadModule names an MPM: Apache 2.2's usual build, prefork, assumed"


def _number(d: _Directive, notes: list[str]) -> int | None:
    if d.args and d.args[0].isdigit() and len(d.args[0]) < 10:
        return int(d.args[0])
    notes.append(f"{d.path}: {d.name} {' '.join(d.args)[:40]!r} is not a number")
    return None


def apache_pool(reader: _Reader) -> WorkerPool | None:
    """Apache's worker limit in force, from the first main config file the guest has."""
    layout = next(((m, r) for m, r in APACHE_LAYOUTS if reader.tree.is_file(m)), None)
    if layout is None:
        return None
    main, default_root = layout
    directives: list[_Directive] = []
    root = _read_apache(reader, main, default_root, 0, directives)
    mpm, _ = _mpm(reader.tree, root, directives)
    values: dict[str, tuple[int, str]] = {}
    for d in directives:
        if all(_holds(c, mpm) for c in d.conditions if c):
            key = "maxrequestworkers" if d.name in _WORKER_LIMITS else d.name
            if key in ("maxrequestworkers", "serverlimit", "threadsperchild"):
                number = _number(d, reader.notes)
                if number is not None:
                    values[key] = (number, f"{'MaxClients' if d.name == 'maxclients' else _SPELLING[key]} in {d.path}")
    if mpm == "prefork":
        limit = values.get("serverlimit", (PREFORK_SERVER_LIMIT, ""))[0]
        workers, setting = values.get("maxrequestworkers", (PREFORK_SERVER_LIMIT, "Apache's default"))
        workers = min(workers, limit)
        return WorkerPool("Apache prefork", workers, workers, setting, "MaxRequestWorkers", APACHE_PREFORK_MIB)
    threads = max(values.get("threadsperchild", (THREADS_PER_CHILD, ""))[0], 1)
    limit = values.get("serverlimit", (THREADED_SERVER_LIMIT, ""))[0] * threads
    workers, setting = values.get("maxrequestworkers", (limit, "Apache's default"))
    workers = min(workers, limit)
    processes = math.ceil(workers / threads)
    return WorkerPool(
        f"Apache {mpm}", workers, processes, setting, "MaxRequestWorkers", APACHE_THREADED_PROCESS_MIB, threads
    )


_SPELLING = {
    "maxrequestworkers": "MaxRequestWorkers",
    "serverlimit": "ServerLimit",
    "threadsperchild": "ThreadsPerChild",
}


def php_fpm_pools(reader: _Reader) -> list[WorkerPool]:
    """Each PHP-FPM pool's pm.max_children (an ini file; one [section] per pool)."""
    pools: list[WorkerPool] = []
    for pattern in PHP_FPM_POOLS:
        for path in reader.glob(pattern):
            text = reader.text(path)
            if text is None:
                continue
            section = "www"
            for raw in text.splitlines():
                line = raw.split(";", 1)[0].strip()
                if line.startswith("[") and line.endswith("]"):
                    section = line[1:-1].strip()[:64]
                    continue
                key, eq, value = line.partition("=")
                if not eq or key.strip() != "pm.max_children":
                    continue
                value = value.strip().strip("\"'")
                if not value.isdigit() or len(value) >= 10:
                    reader.notes.append(f"{path}: pm.max_children {value[:40]!r} is not a number")
                    continue
                n = int(value)
                pools.append(
                    WorkerPool(
                        f"PHP-FPM pool {section}",
                        n,
                        n,
                        f"pm.max_children in {path}",
                        "pm.max_children",
                        PHP_FPM_CHILD_MIB,
                    )
                )
    return pools


def scan_tree(tree: ResolvingTree) -> PoolScan:
    """Every worker pool configured in the guest's tree."""
    reader = _Reader(tree)
    pools: list[WorkerPool] = []
    try:
        apache = apache_pool(reader)
        if apache is not None:
            pools.append(apache)
        pools += php_fpm_pools(reader)
    except Dom0Error as exc:  # a symlink loop in the guest, a damaged directory
        reader.notes.append(exc.message)
    return PoolScan(tuple(pools), len(reader.seen), tuple(dict.fromkeys(reader.notes)))


def fitting(pool: WorkerPool, guest_mib: int) -> int:
    """How many of the pool's workers fit beside the guest's own system."""
    processes = max(guest_mib - OS_BASE_MIB, 0) // pool.mib_per_process
    return min(processes * pool.threads_per_process, pool.workers)


def judge(guest: str, guest_mib: int, pools: tuple[WorkerPool, ...]) -> list[Finding]:
    """A warning for each pool that cannot fit in the guest's memory, with the number that fits."""
    room = guest_mib - OS_BASE_MIB
    findings = []
    for pool in pools:
        if pool.need_mib <= room:
            continue
        fit = fitting(pool, guest_mib)
        if pool.threads_per_process > 1:
            cost = f"{pool.processes} processes at ~{pool.mib_per_process} MiB each"
        else:
            cost = f"~{pool.mib_per_process} MiB each"
        findings.append(
            Finding(
                Severity.WARNING,
                guest,
                "workers",
                f"{pool.server} allows {pool.workers} workers ({pool.setting}); at {cost} that is "
                f"{pool.need_mib} MiB in a {guest_mib} MiB guest: about {fit} fit",
                f"set {pool.directive} to {fit} or give the guest more memory"
                if fit
                else f"give the guest more memory: {OS_BASE_MIB} MiB go to its own system before any worker",
            )
        )
    total = sum(p.need_mib for p in pools)
    if not findings and len(pools) > 1 and total > room:
        names = " and ".join(p.server for p in pools)
        findings.append(
            Finding(
                Severity.WARNING,
                guest,
                "workers",
                f"{names} together allow {total} MiB of workers in a {guest_mib} MiB guest "
                f"({OS_BASE_MIB} MiB kept for its own system)",
                "lower their limits so they fit together, or give the guest more memory",
            )
        )
    return findings
