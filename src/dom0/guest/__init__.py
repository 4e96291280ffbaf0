"""Changes inside a guest's own files, made from userspace: editors for its filesystem, and its identity reset."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dom0.guest.editors import DebugfsEditor, DirectoryEditor, GuestEditor, open_editor
    from dom0.guest.identity import Edit, IdentityChange, apply_edits, plan_identity

__all__ = [
    "DebugfsEditor",
    "DirectoryEditor",
    "Edit",
    "GuestEditor",
    "IdentityChange",
    "apply_edits",
    "open_editor",
    "plan_identity",
]

# Each name is loaded from its module when first asked for: `image inspect` plans edits (identity) but opens no
# editor, and the editors bring the external-command runner and temporary files with them.
_HOME = {name: "editors" for name in ("DebugfsEditor", "DirectoryEditor", "GuestEditor", "open_editor")} | {
    name: "identity" for name in ("Edit", "IdentityChange", "apply_edits", "plan_identity")
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
