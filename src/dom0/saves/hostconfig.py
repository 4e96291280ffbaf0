"""/etc/dom0/host.toml: how `dom0 host stop/start` treat the guests at host shutdown and boot.

[save]
directory = "/var/lib/dom0/save"   # where images go
compress = "zstd"                  # zstd | lz4 | gzip | none
level = 2
jobs = 0                           # guests at once; 0 = two per core
[stop]
shutdown_timeout = 300             # seconds an orderly shutdown may take before it is reported
[start]
autostart = true                   # after restoring, start the guests marked to start at boot
[guests.NAME]
on_stop = "save"                   # save | shutdown | leave
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from dom0.errors import Dom0Error, UsageError
from dom0.filedata import read_regular
from dom0.saves import DEFAULT_DIRECTORY
from dom0.saves.codec import Compression

DEFAULT_PATH = Path("/etc/dom0/host.toml")
# A host config is a few hundred bytes, one section per guest at most.
CONFIG_LIMIT = 1 << 20
MISSING_HINT = "write one (see contrib/host.toml) or leave out --config"


class OnStop(StrEnum):
    """What host stop does with a guest."""

    SAVE = "save"  # save its memory; an orderly shutdown if that fails
    SHUTDOWN = "shutdown"  # an orderly shutdown
    LEAVE = "leave"  # nothing (e.g. a guest that a cluster manager owns)


@dataclass(frozen=True, slots=True)
class HostConfig:
    """The parsed, validated config."""

    directory: Path = DEFAULT_DIRECTORY
    compression: Compression = Compression.ZSTD
    level: int = Compression.ZSTD.default_level
    jobs: int = 0
    shutdown_timeout: float = 300.0
    autostart: bool = True
    on_stop: dict[str, OnStop] = field(default_factory=dict)

    def action(self, name: str) -> OnStop:
        """What host stop does with guest `name`."""
        return self.on_stop.get(name, OnStop.SAVE)


_KEYS = {
    "save": {"directory", "compress", "level", "jobs"},
    "stop": {"shutdown_timeout"},
    "start": {"autostart"},
    "guests": None,  # any guest name
}


def load(path: Path | None) -> HostConfig:
    """The config at `path` (the default file when None; defaults when that does not exist); UsageError if wrong."""
    if path is None:
        if not DEFAULT_PATH.exists():
            return HostConfig()
        path = DEFAULT_PATH
    try:
        # the one bounded reader: a FIFO or /dev/zero given as --config is refused, not read forever
        doc = tomllib.loads(read_regular(path, CONFIG_LIMIT, MISSING_HINT).decode())
    except Dom0Error as exc:
        raise UsageError(exc.message, exc.hint) from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from exc
    return parse(doc, str(path))


def parse(doc: dict[str, Any], where: str) -> HostConfig:
    """Validate a config document; UsageError naming the first wrong key."""
    for section, value in doc.items():
        if section not in _KEYS:
            raise UsageError(f"{where}: unknown section [{section}]", f"sections are {', '.join(sorted(_KEYS))}")
        if not isinstance(value, dict):
            raise UsageError(f"{where}: {section} should be a [{section}] section")
        allowed = _KEYS[section]
        if allowed is None:
            continue
        for key in value:
            if key not in allowed:
                raise UsageError(
                    f"{where}: unknown key {section}.{key}", f"[{section}] takes {', '.join(sorted(allowed))}"
                )
    save, stop, start = doc.get("save", {}), doc.get("stop", {}), doc.get("start", {})
    compression = _choice(Compression, save.get("compress", "zstd"), f"{where}: save.compress")
    level = _integer(save.get("level", compression.default_level), f"{where}: save.level")
    try:
        compression.check_level(level)
    except UsageError as exc:
        raise UsageError(f"{where}: save.level: {exc.message}", exc.hint) from exc
    on_stop = {}
    for name, table in doc.get("guests", {}).items():
        if not isinstance(table, dict) or set(table) - {"on_stop"}:
            raise UsageError(f"{where}: [guests.{name}] takes only on_stop")
        on_stop[name] = _choice(OnStop, table.get("on_stop", "save"), f"{where}: guests.{name}.on_stop")
    autostart = start.get("autostart", True)
    if not isinstance(autostart, bool):
        raise UsageError(f"{where}: start.autostart should be true or false")
    directory = save.get("directory", str(DEFAULT_DIRECTORY))
    if not isinstance(directory, str) or not directory.startswith("/"):
        raise UsageError(f"{where}: save.directory should be an absolute path")
    timeout = stop.get("shutdown_timeout", 300)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise UsageError(f"{where}: stop.shutdown_timeout should be a number of seconds above 0")
    jobs = _integer(save.get("jobs", 0), f"{where}: save.jobs")
    return HostConfig(Path(directory), compression, level, jobs, float(timeout), autostart, on_stop)


def _integer(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UsageError(f"{what} should be a whole number, 0 or more")
    return value


E = TypeVar("E", bound=StrEnum)


def _choice(kind: type[E], value: object, what: str) -> E:
    try:
        return kind(str(value))
    except ValueError as exc:
        raise UsageError(f"{what} is {value!r}", f"choose one of {', '.join(kind)}") from exc
