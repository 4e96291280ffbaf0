"""libvirt's errors in dom0's words: the first line of libvirt's message, and what dom0 was doing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import libvirt

from dom0.errors import Dom0Error


def message(exc: libvirt.libvirtError) -> str:
    """libvirt's message, first line only: XML errors go on to quote the offending line of the file and a caret."""
    text = str(exc.get_error_message() or exc).strip()
    return text.splitlines()[0] if text else "(libvirt gave no reason)"


@contextmanager
def translated(action: str, hint: str = "") -> Iterator[None]:
    """Turn a libvirtError raised inside the block into a Dom0Error that says what was being done."""
    try:
        yield
    except libvirt.libvirtError as exc:
        raise Dom0Error(f"{action}: {message(exc)}", hint) from exc
