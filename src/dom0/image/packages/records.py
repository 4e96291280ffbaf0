"""What the package readers share: the Application records, the bounds every guest database is read within,
and the helpers that read a guest's text database line by line within them."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any

from dom0 import humanize
from dom0.errors import Dom0Error
from dom0.image.tree import GuestTree

# A Debian system with every desktop is about 4000 packages and a 10 MiB status file; an rpm sqlite database of
# a large Fedora install is ~150 MiB. Anything past these is damaged or hostile, and is not read.
MAX_TEXT_DB = 64 * 1024 * 1024
MAX_RPMDB = 512 * 1024 * 1024
MAX_PACKAGES = 100_000
# A name, version or architecture is tens of bytes; a one-line summary a few hundred.
MAX_FIELD = 4096


@dataclass(frozen=True, slots=True)
class Application:
    """One installed package, split as virt-inspector splits it ("" / 0 where the database has none)."""

    name: str
    version: str
    release: str
    epoch: int
    arch: str
    source: str
    summary: str

    def to_json(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "name": self.name,
            "version": self.version,
            "release": self.release,
            "epoch": self.epoch,
            "arch": self.arch,
            "source": self.source,
            "summary": self.summary,
        }


@dataclass(frozen=True, slots=True)
class Applications:
    """What the guest's package database lists; `database` is None when none was found."""

    database: str | None
    apps: tuple[Application, ...]
    notes: tuple[str, ...] = ()


def applications_json(a: Applications) -> dict[str, Any]:
    """The "applications" document of one operating system in `image inspect --applications --json`."""
    return {"database": a.database, "applications": [app.to_json() for app in a.apps], "notes": list(a.notes)}


class Found:
    """What a reader collected: packages, notes, and how many records it skipped as broken."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.apps: list[Application] = []
        self.notes: list[str] = []
        self.broken = 0
        # What was wrong with the first broken record, when the reader can say better than the generic words.
        self.why = ""
        self.truncated = False

    def add(self, app: Application) -> bool:
        """Keep `app`; False once MAX_PACKAGES are kept (the reader stops there)."""
        if len(self.apps) >= MAX_PACKAGES:
            self.truncated = True
            return False
        self.apps.append(app)
        return True

    def result(self, where: str, what: str = "records") -> Applications:
        notes = list(self.notes)
        if self.broken:
            why = self.why or f"a missing name or version, or a field over {MAX_FIELD} bytes"
            notes.append(f"{self.broken} {what} of {where} skipped: damaged (first: {why})" if self.why else
                         f"{self.broken} {what} of {where} skipped: damaged ({why})")  # fmt: skip
        if self.truncated:
            notes.append(f"only the first {MAX_PACKAGES} packages of {where} are listed: no real system has more")
        apps = tuple(sorted(self.apps, key=lambda a: (a.name, a.arch, a.version, a.release)))
        return Applications(self.database, apps, tuple(notes))


def clip(value: str) -> str | None:
    """A single-line field's value, or None when it is longer than any real one (the record is damaged)."""
    return value if len(value) <= MAX_FIELD else None


def split_epoch(version: str) -> tuple[int, str]:
    """ "1:2.3-4" -> (1, "2.3-4"); an epoch that is not a small number is left in the version."""
    head, sep, rest = version.partition(":")
    if sep and head.isdigit() and len(head) <= 9:
        return int(head), rest
    return 0, version


def split_release(version: str) -> tuple[str, str]:
    """ "2.3-4" -> ("2.3", "4"): the release (Debian revision, apk -rN, pacman pkgrel) follows the last hyphen."""
    upstream, sep, release = version.rpartition("-")
    return (upstream, release) if sep and upstream else (version, "")


def guest_lines(tree: GuestTree, path: str, limit: int = MAX_TEXT_DB) -> Iterator[bytes]:
    """The lines of a guest's text database, its size checked against `limit` before a byte is read."""
    size = tree.size(path)
    if size > limit:
        raise Dom0Error(
            f"{path} is {humanize.size(size)}, more than the {humanize.size(limit)} a package database can be",
            "the image may be damaged or hostile",
        )
    left = size
    with tree.open(path) as fh:
        # Never past the size checked above, however the file grows meanwhile.
        while left > 0:
            line = fh.readline(left)
            if not line:
                return
            left -= len(line)
            yield line


def present(tree: GuestTree, path: str) -> str | None:
    """ "file" when `path` is a regular file in the guest; "other" when something else (or a symlink that leads
    nowhere inside the guest) is there; None when nothing is."""
    if tree.is_file(path):
        return "file"
    lexists = getattr(tree, "lexists", tree.exists)
    return "other" if lexists(path) else None


def read_stanzas(
    tree: GuestTree,
    path: str,
    wanted: Collection[str],
    summary: str,
    finish: Callable[[dict[str, str], bool], bool],
    *,
    key_ok: Callable[[str], bool] = lambda key: True,
    continued: bool = False,
    strip: bool = False,
) -> None:
    """A text database of KEY:value records split by blank lines (dpkg's status, apk's installed), each record's
    `wanted` fields handed to `finish` with whether the record is damaged; `finish` False stops the reading.

    `continued`: lines starting with a blank continue the previous field (dpkg) and are skipped, as nothing read
    here needs them. A field over MAX_FIELD damages its record, except the `summary`, which is shortened.
    """
    fields: dict[str, str] = {}
    damaged = False
    for raw in guest_lines(tree, path):
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line.strip():
            if fields and not finish(fields, damaged):
                return
            fields, damaged = {}, False
            continue
        if continued and line[0] in " \t":
            continue
        key, sep, value = line.partition(":")
        if not sep or not key_ok(key):
            damaged = True
            continue
        if key not in wanted:
            continue
        if strip:
            value = value.strip()
        kept = clip(value)
        if kept is None:
            if key != summary:
                damaged = True
                continue
            kept = value[:256]  # only a summary line: shortened, the package is still real
        fields[key] = kept
    if fields:
        finish(fields, damaged)
