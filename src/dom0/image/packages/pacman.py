"""pacman's local database: a directory per installed package (/var/lib/pacman/local/NAME-VER-REL/) whose `desc`
holds "%KEY%" lines each followed by its values and a blank line."""

from __future__ import annotations

from dom0.errors import Dom0Error
from dom0.image.packages.records import (
    MAX_PACKAGES,
    Application,
    Applications,
    Found,
    clip,
    split_epoch,
    split_release,
)
from dom0.image.tree import GuestTree

# A desc file is a few hundred bytes (name, version, description, URL, licences, dependencies).
MAX_DESC = 256 * 1024


def _parse(text: str) -> dict[str, str] | None:
    """The first value of each %KEY% section; None when a needed one is longer than any real one."""
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line.startswith("%") and line.endswith("%") and len(line) > 2:
            key = line[1:-1]
            continue
        if key is not None and line and key not in fields:
            fields[key] = line
            key = None
    for needed in ("NAME", "VERSION", "ARCH", "BASE"):
        if needed in fields and clip(fields[needed]) is None:
            return None
    return fields


def read(tree: GuestTree, path: str) -> Applications:
    """The installed packages of a pacman local database directory."""
    found = Found("pacman")
    names = [n for n in tree.listdir(path) if n != "ALPM_DB_VERSION"]
    if len(names) > MAX_PACKAGES:
        names = names[:MAX_PACKAGES]
        found.truncated = True
    for entry in names:
        desc = f"{path}/{entry}/desc"
        try:
            if not tree.is_file(desc):
                found.broken += 1
                continue
            fields = _parse(tree.read_text(desc, MAX_DESC))
        except Dom0Error:
            fields = None
        if fields is None or not fields.get("NAME") or not fields.get("VERSION"):
            found.broken += 1
            continue
        epoch, rest = split_epoch(fields["VERSION"])
        version, release = split_release(rest)
        summary = fields.get("DESC", "")[:256]
        found.add(Application(fields["NAME"], version, release, epoch, fields.get("ARCH", ""),
                              fields.get("BASE", ""), summary))  # fmt: skip
    return found.result(path, "package directories")
