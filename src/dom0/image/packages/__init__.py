"""The applications installed in a guest, read from its own package database in userspace (what virt-inspector
lists as <applications>): dpkg's status file, rpm's sqlite database (older Berkeley DB ones through the host's rpm),
apk's installed file and pacman's local database.

A guest's package database is untrusted input like any other file of the image: each reader bounds the bytes it
reads, the length of each field and the number of packages, and turns what it cannot parse into a note.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dom0.errors import Dom0Error
from dom0.image.packages.records import Application, Applications, applications_json, present
from dom0.image.tree import GuestTree

if TYPE_CHECKING:
    from dom0.image.osinspect import OperatingSystem

__all__ = ["Application", "Applications", "applications_json", "read_applications"]


def _not_a_file(path: str) -> str:
    return f"{path} is not a regular file inside the guest (a symlink out of the guest, or a device): not read"


def read_applications(tree: GuestTree, system: OperatingSystem) -> Applications:
    """The packages installed in `system`, from the first package database its tree holds (the one its package
    format says first); never raises for a damaged or hostile database: what could not be read is in the notes."""
    from dom0.image.packages import apk, dpkg, pacman, rpm

    readers = {
        "deb": [("/var/lib/dpkg/status", dpkg.read, "dpkg")],
        "rpm": [(path, rpm.read, rpm.database_of(path)) for path in rpm.PATHS],
        "apk": [("/lib/apk/db/installed", apk.read, "apk")],
        "pacman": [("/var/lib/pacman/local", pacman.read, "pacman")],
    }
    order = [system.package_format] if system.package_format in readers else []
    order += [fmt for fmt in readers if fmt not in order]
    notes: list[str] = []
    for fmt in order:
        for path, reader, database in readers[fmt]:
            try:
                kind = "file" if fmt == "pacman" and tree.is_dir(path) else present(tree, path)
                if kind is None:
                    continue
                if kind == "other":
                    notes.append(_not_a_file(path))
                    continue
                found = reader(tree, path)
            except Dom0Error as exc:
                hint = f" ({exc.hint})" if getattr(exc, "hint", "") else ""
                found = Applications(database, (), (f"{path} could not be read: {exc}{hint}",))
            return Applications(found.database, found.apps, (*notes, *found.notes))
    if system.package_format == "ebuild":
        notes.append("Gentoo's package database (/var/db/pkg) is not read by dom0")
    return Applications(None, (), tuple(notes))
