"""apk's /lib/apk/db/installed: one record per package, records split by blank lines, each line "X:value"."""

from __future__ import annotations

from dom0.image.packages.records import Application, Applications, Found, read_stanzas, split_release
from dom0.image.tree import GuestTree

# P: name, V: pkgver-rN, A: arch, o: origin (the aport it was built from), T: one-line description.
_WANTED = {"P", "V", "A", "o", "T"}


def _finish(found: Found, fields: dict[str, str], damaged: bool) -> bool:
    if not fields:
        return True
    name, pkgver = fields.get("P", ""), fields.get("V", "")
    if damaged or not name or not pkgver:
        found.broken += 1
        return True
    version, release = split_release(pkgver)
    return found.add(
        Application(name, version, release, 0, fields.get("A", ""), fields.get("o", ""), fields.get("T", ""))
    )


def read(tree: GuestTree, path: str) -> Applications:
    """The installed packages of an apk database."""
    found = Found("apk")
    # every line is one letter and a colon: F: (directories), R: (files), Z: (checksums) and the rest are skipped
    read_stanzas(
        tree, path, _WANTED, "T", lambda fields, damaged: _finish(found, fields, damaged),
        key_ok=lambda key: len(key) == 1,
    )  # fmt: skip
    return found.result(path)
