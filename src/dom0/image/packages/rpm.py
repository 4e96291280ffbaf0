"""rpm's database: the sqlite one (rpm 4.16 and later: Fedora 33+, RHEL 9, Rocky 9) read here, each package's
header parsed in Python; the Berkeley DB (CentOS/RHEL up to 8, SLES 12) and ndb (SUSE 15) ones through the host's
rpm tool when it can read them, else a note saying so.

A header as rpm stores it in the database (no lead, no magic): be32 index count, be32 data size, 16-byte index
entries (tag, type, offset, count, all be32), then the data store the offsets point into.
"""

from __future__ import annotations

import sqlite3
import struct
import tempfile
from pathlib import Path

from dom0 import humanize, run
from dom0.errors import Dom0Error
from dom0.image.packages.records import MAX_FIELD, MAX_PACKAGES, MAX_RPMDB, Application, Applications, Found, clip
from dom0.image.tree import GuestTree

# Where rpm keeps its database: /var/lib/rpm, or /usr/lib/sysimage/rpm since rpm 4.16 (/var/lib/rpm then a symlink).
PATHS = (
    "/var/lib/rpm/rpmdb.sqlite",
    "/usr/lib/sysimage/rpm/rpmdb.sqlite",
    "/var/lib/rpm/Packages",
    "/usr/lib/sysimage/rpm/Packages",
    "/var/lib/rpm/Packages.db",
    "/usr/lib/sysimage/rpm/Packages.db",
)

NAME, VERSION, RELEASE, EPOCH, SUMMARY, ARCH, SOURCERPM = 1000, 1001, 1002, 1003, 1004, 1022, 1044
_STRING, _STRING_ARRAY, _I18NSTRING, _INT32 = 6, 8, 9, 4
# rpm's own limits on a header it loads (HEADER_TAGS_MAX, HEADER_DATA_MAX): a bigger one is not rpm's.
MAX_INDEX = 0xFFFF
MAX_DATA = 0x0FFFFFFF
# sqlite calls the progress handler every this many virtual-machine steps; after _STEP_BUDGET calls the query is
# abandoned, so a database whose "Packages" is a view that never ends cannot hang dom0.
_STEPS = 10_000
_STEP_BUDGET = 20_000
# rpm -qa over a Berkeley DB of a few thousand packages takes about a second.
RPM_TIMEOUT = 120.0

_FIELDS = (NAME, VERSION, RELEASE, EPOCH, SUMMARY, ARCH, SOURCERPM)


class BadHeader(Exception):
    """A header blob that is not a whole rpm header: why, in a few words."""


def parse_header(blob: bytes) -> dict[int, str | int]:
    """NAME ... SOURCERPM of one stored header; BadHeader when any count, offset or size leaves the blob."""
    if len(blob) < 8:
        raise BadHeader(f"{len(blob)} bytes, shorter than a header's counts")
    count, size = struct.unpack_from(">II", blob, 0)
    if not 1 <= count <= MAX_INDEX:
        raise BadHeader(f"an index of {count} entries")
    start = 8 + 16 * count
    if size > MAX_DATA or start + size > len(blob):
        raise BadHeader(f"{count} entries and {size} bytes of data in a blob of {len(blob)} bytes")
    data = blob[start : start + size]
    out: dict[int, str | int] = {}
    for i in range(count):
        tag, kind, offset, n = struct.unpack_from(">IIII", blob, 8 + 16 * i)
        if tag not in _FIELDS:
            continue
        if offset >= size or n < 1:
            raise BadHeader(f"tag {tag} at offset {offset} of {size} bytes of data (count {n})")
        if kind in (_STRING, _STRING_ARRAY, _I18NSTRING):
            # The first string (of an array, or the i18n table's default language), NUL-terminated in the store.
            end = data.find(b"\0", offset, min(size, offset + MAX_FIELD + 1))
            if end >= 0:
                out[tag] = data[offset:end].decode("utf-8", errors="replace")
            elif tag == SUMMARY:
                out[tag] = data[offset : offset + 256].decode("utf-8", errors="replace")  # shortened, still true
            else:
                raise BadHeader(f"tag {tag}: a string without its end within {MAX_FIELD} bytes")
        elif kind == _INT32:
            if offset + 4 > size:
                raise BadHeader(f"tag {tag}: a number past the data")
            out[tag] = struct.unpack_from(">I", data, offset)[0]
        else:
            raise BadHeader(f"tag {tag} of type {kind}")
    return out


def source_name(sourcerpm: str) -> str:
    """ "bash-5.2.15-5.fc39.src.rpm" -> "bash" (the name, without -version-release)."""
    for suffix in (".src.rpm", ".nosrc.rpm"):
        if sourcerpm.endswith(suffix):
            parts = sourcerpm[: -len(suffix)].rsplit("-", 2)
            return parts[0] if len(parts) == 3 and parts[0] else ""
    return ""


def _application(fields: dict[int, str | int]) -> Application | None:
    name, version = fields.get(NAME), fields.get(VERSION)
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return None
    epoch = fields.get(EPOCH, 0)

    def text(tag: int) -> str:
        value = fields.get(tag, "")
        return value if isinstance(value, str) else ""

    return Application(
        name=name,
        version=version,
        release=text(RELEASE),
        epoch=epoch if isinstance(epoch, int) else 0,
        arch=text(ARCH),
        source=source_name(text(SOURCERPM)),
        summary=text(SUMMARY),
    )


def _copy_out(tree: GuestTree, path: str, into: Path) -> None:
    """The guest's file copied to `into`, at most the size it had when checked and never more than MAX_RPMDB."""
    size = tree.size(path)
    if size > MAX_RPMDB:
        raise Dom0Error(
            f"{path} is {humanize.size(size)}, more than the {humanize.size(MAX_RPMDB)} an rpm database can be",
            "the image may be damaged or hostile",
        )
    left = size
    with tree.open(path) as src, open(into, "xb") as dst:
        while left > 0:
            chunk = src.read(min(left, 1 << 20))
            if not chunk:
                break
            dst.write(chunk)
            left -= len(chunk)


def _read_sqlite(tree: GuestTree, path: str, found: Found) -> None:
    wal = f"{path}-wal"
    if tree.is_file(wal) and tree.size(wal) > 0:
        found.notes.append(
            f"{wal} holds changes not yet written into the database (the guest was running or stopped uncleanly): "
            "the packages installed or removed last may be missing"
        )
    with tempfile.TemporaryDirectory(prefix="dom0-rpmdb-") as tmp:
        copy = Path(tmp) / "rpmdb.sqlite"
        _copy_out(tree, path, copy)
        steps = [0]

        def budget() -> int:
            steps[0] += 1
            return 1 if steps[0] > _STEP_BUDGET else 0

        try:
            db = sqlite3.connect(f"{copy.as_uri()}?mode=ro&immutable=1", uri=True)
        except sqlite3.Error as exc:
            raise Dom0Error(f"not an sqlite database ({exc})") from exc
        try:
            db.set_progress_handler(budget, _STEPS)
            db.execute("PRAGMA trusted_schema = OFF")
            kind = db.execute("SELECT type FROM sqlite_master WHERE name = 'Packages'").fetchone()
            if kind is None or kind[0] != "table":
                raise Dom0Error("it has no Packages table: not an rpm database")
            rows = db.execute(
                "SELECT hnum, CASE WHEN length(blob) <= ? THEN blob END, length(blob) FROM Packages LIMIT ?",
                (MAX_DATA, MAX_PACKAGES + 1),
            )
            for hnum, blob, length in rows:
                if not _add_header(found, hnum, blob, length):
                    break
        except sqlite3.Error as exc:
            detail = "too much work for a package list" if steps[0] > _STEP_BUDGET else str(exc)
            raise Dom0Error(f"the sqlite database could not be read ({detail})") from exc
        finally:
            db.close()


def _add_header(found: Found, hnum: object, blob: object, length: object) -> bool:
    """One row of Packages added to `found`; False once the package limit is reached."""
    if not isinstance(blob, bytes):
        found.broken += 1
        found.why = found.why or f"header {hnum}: {length} bytes, not an rpm header"
        return True
    try:
        app = _application(parse_header(blob))
    except BadHeader as exc:
        found.broken += 1
        found.why = found.why or f"header {hnum}: {exc}"
        return True
    if app is None:
        found.broken += 1
        found.why = found.why or f"header {hnum}: no name or version"
        return True
    if app.name == "gpg-pubkey":
        return True  # the signing keys rpm imported, kept as pseudo-packages: not software
    return found.add(app)


_QUERY = "%{NAME}\\t%{EPOCHNUM}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\t%{SUMMARY}\\n"


def _read_with_rpm(tree: GuestTree, path: str, found: Found, backend: str, what: str) -> None:
    """A Berkeley DB or ndb database, read by the host's rpm from a private copy (rpm's own read-only readers)."""
    if not run.available("rpm"):
        found.notes.append(
            f"{path} is {what}, which dom0 reads only through the host's rpm tool, and it is not installed: the "
            "packages are not listed (apt-get install rpm)"
        )
        return
    with tempfile.TemporaryDirectory(prefix="dom0-rpmdb-") as tmp:
        _copy_out(tree, path, Path(tmp) / path.rsplit("/", 1)[1])
        try:
            out = run.run(
                ["rpm", "--dbpath", tmp, "--define", f"_db_backend {backend}", "-qa", "--qf", _QUERY],
                timeout=RPM_TIMEOUT,
            ).stdout
        except Dom0Error as exc:
            # The message names the private copy's directory, gone once this returns: the guest's is meant.
            said = str(exc).replace(tmp, path.rsplit("/", 1)[0])
            found.notes.append(f"{path} is {what}; the host's rpm could not read it ({said}): packages not listed")
            return
    for line in out.decode("utf-8", errors="replace").splitlines():
        cells = line.split("\t")
        if len(cells) != 7 or not cells[0] or not cells[2] or any(clip(c) is None for c in cells[:6]):
            found.broken += 1
            continue
        name, epoch, version, release, arch, sourcerpm, summary = cells
        if name == "gpg-pubkey":
            continue
        number = int(epoch) if epoch.isdigit() and len(epoch) <= 9 else 0
        arch = "" if arch == "(none)" else arch
        if not found.add(Application(name, version, release, number, arch, source_name(sourcerpm), summary[:256])):
            break


def database_of(path: str) -> str:
    """Which of rpm's formats a database file of PATHS is."""
    return {"rpmdb.sqlite": "rpm-sqlite", "Packages": "rpm-bdb"}.get(path.rsplit("/", 1)[1], "rpm-ndb")


def read(tree: GuestTree, path: str) -> Applications:
    """The installed packages of an rpm database file (rpmdb.sqlite, Packages or Packages.db)."""
    found = Found(database_of(path))
    if found.database == "rpm-sqlite":
        _read_sqlite(tree, path, found)
    elif found.database == "rpm-bdb":
        _read_with_rpm(tree, path, found, "bdb_ro", "a Berkeley DB rpm database")
    else:
        _read_with_rpm(tree, path, found, "ndb", "an ndb rpm database (SUSE)")
    return found.result(path, "package headers")
