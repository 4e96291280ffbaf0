"""Changes inside a guest's own files, made from userspace: editors for its filesystem, and its identity reset."""

from __future__ import annotations

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
