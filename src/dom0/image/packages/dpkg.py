"""dpkg's /var/lib/dpkg/status: one stanza per package; only "install ok installed" ones are on the system.

status-old is dpkg's previous copy and is never read: it lists what was installed before the last run.
"""

from __future__ import annotations

from dom0.image.packages.records import Application, Applications, Found, read_stanzas, split_epoch, split_release
from dom0.image.tree import GuestTree

_WANTED = ("Package", "Status", "Version", "Architecture", "Source", "Description")


def _finish(found: Found, fields: dict[str, str], damaged: bool) -> bool:
    """Add the stanza in `fields`; False once the package limit is reached."""
    if not fields:
        return True
    status = fields.get("Status", "").split()
    if len(status) != 3 or status[1:] != ["ok", "installed"]:
        # Removed, half-configured, config-files only or failed: not installed, however whole the stanza. The
        # first word is only what the admin wants next (install, hold, deinstall): the package is there.
        return True
    name, version = fields.get("Package", ""), fields.get("Version", "")
    if damaged or not name or not version:
        found.broken += 1
        return True
    epoch, rest = split_epoch(version)
    upstream, revision = split_release(rest)
    source = fields.get("Source", "").split(" ", 1)[0]
    return found.add(
        Application(
            name=name,
            version=upstream,
            release=revision,
            epoch=epoch,
            arch=fields.get("Architecture", ""),
            source=source,
            summary=fields.get("Description", ""),
        )
    )


def read(tree: GuestTree, path: str) -> Applications:
    """The installed packages of a dpkg status file."""
    found = Found("dpkg")
    read_stanzas(
        tree, path, _WANTED, "Description", lambda fields, damaged: _finish(found, fields, damaged),
        continued=True, strip=True,
    )  # fmt: skip
    return found.result(path, "stanzas")
