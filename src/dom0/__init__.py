"""dom0: see, control, save, clone and inspect the guests of a Xen or KVM host."""

import os
import sys

# Debian ships no packages of the disk-image readers dom0 uses (dissect.*), so dom0's Debian package carries
# private copies here (debian/rules); they are used only when this Python has no dissect of its own.
PRIVATE_LIBRARIES = "/usr/share/dom0/vendor"


def _version() -> str:
    """pyproject.toml's version, from the VERSION file setup.py writes beside this module (into the wheel, or into
    src/dom0 for an editable install): one small read, where importlib.metadata would cost more than the rest of
    `dom0 --help` on every start."""
    try:
        with open(os.path.join(os.path.dirname(__file__), "VERSION"), encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dom0")
    except PackageNotFoundError:
        return "unknown"


def use_private_libraries(directory: str, probe: str = "dissect.volume") -> bool:
    """Append `directory` to the import path when it exists and `probe` cannot be imported without it; True if
    it was. Appended, never inserted: what the system installed for this Python always comes first."""
    if not os.path.isdir(directory) or directory in sys.path:
        return False
    import importlib.util

    try:
        if importlib.util.find_spec(probe) is not None:
            return False
    except (ImportError, ValueError):  # no parent package at all, or a half-imported module
        pass
    sys.path.append(directory)
    return True


__version__ = _version()
use_private_libraries(PRIVATE_LIBRARIES)
