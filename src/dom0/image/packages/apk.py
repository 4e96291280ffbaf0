"""apk's /lib/apk/db/installed: one record per package, records split by blank lines, each line "X:value"."""

from __future__ import annotations

from dom0.image.packages.records import Application, Applications, Found, clip, guest_lines, split_release
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
    fields: dict[str, str] = {}
    damaged = False
    for raw in guest_lines(tree, path):
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if not _finish(found, fields, damaged):
                break
            fields, damaged = {}, False
            continue
        key, sep, value = line.partition(":")
        if not sep or len(key) != 1:
            damaged = True
            continue
        if key not in _WANTED:
            continue  # F: (directories), R: (files), Z: (checksums) and the rest
        kept = clip(value)
        if kept is None:
            if key == "T":
                kept = value[:256]
            else:
                damaged = True
                continue
        fields[key] = kept
    else:
        _finish(found, fields, damaged)
    return found.result(path)
