"""Saving guests to compressed images and restoring them, one at a time or all in parallel."""

from pathlib import Path

# Where images go when no directory is given (xendomains used /var/lib/xen/save).
DEFAULT_DIRECTORY = Path("/var/lib/dom0/save")
