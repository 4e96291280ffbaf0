"""Changing files inside a guest's filesystem from userspace: never a host mount, never a guest symlink followed.

Every path is a guest path. Its directory is resolved inside the guest (image/tree.py), its last component never:
writing over a symlink replaces the link by a regular file, removing one removes the link. Files are always
replaced by a new inode, so a hard link elsewhere (/etc/hostname linked to /etc/shadow) keeps its old content.
Edits are collected and applied together by close(), which then reads every one back to check it. A symlink is
made the same way (a new entry in place of the old one, checked by reading its target back); its target is stored
as given and never looked at, as `ln -sf` would.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dom0 import run
from dom0.errors import Dom0Error
from dom0.image.source import QCOW2_MAGIC, ImageSource, open_image
from dom0.image.tree import DirectoryTree, FilesystemTree, ResolvingTree

__all__ = ["EXT_TYPES", "DebugfsEditor", "DirectoryEditor", "GuestEditor", "open_editor"]

EXT_TYPES = ("ext2", "ext3", "ext4")

# ext superblock: 1024 bytes in, magic at 0x38, incompatible features at 0x60; RECOVER = journal not yet replayed.
_SUPERBLOCK = 1024
_EXT_MAGIC = 0xEF53
_INCOMPAT_RECOVER = 0x4

# Linux refuses a symlink target longer than a page (PATH_MAX, ENAMETOOLONG).
MAX_LINK_TARGET = 4095


class GuestEditor(Protocol):
    """Writes and removals inside one guest filesystem; `tree` reads it as it was when the editor was opened."""

    tree: ResolvingTree

    def write(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Make `path` a regular file (root-owned, `mode`) holding `data`; a symlink there is replaced, not followed."""
        ...

    def remove(self, path: str) -> None:
        """Remove the entry `path` itself (never a link's target); nothing happens when it is not there."""
        ...

    def symlink(self, path: str, target: str) -> None:
        """Make `path` a symlink to `target` (stored as given, never resolved); an entry there is replaced."""
        ...

    def close(self) -> None:
        """Apply every edit, sync, and check each one by reading it back; Dom0Error if one did not take."""
        ...


@dataclass(frozen=True, slots=True)
class _Link:
    """A symlink to be made: its target as the guest will read it."""

    target: str


# What an edit leaves at a path: a regular file (content, mode), a symlink, or nothing.
_State = tuple[bytes, int] | _Link | None


def _check_target(path: str, target: str) -> _Link:
    try:
        size = len(target.encode()) if isinstance(target, str) else 0
    except UnicodeEncodeError:
        size = 0
    if not 0 < size <= MAX_LINK_TARGET or "\0" in target:
        raise Dom0Error(f"{target!r} cannot be the target of the symlink {path}", "give a UTF-8 path, 1-4095 bytes")
    return _Link(target)


class _Batch:
    """The edits so far, by canonical guest path: new content and mode, a symlink, or None for removed."""

    def __init__(self, tree: ResolvingTree) -> None:
        self.tree = tree
        self.final: dict[str, _State] = {}
        self.existed: dict[str, bool] = {}
        self.closed = False

    def locate(self, path: str) -> tuple[str, str]:
        """(canonical parent directory, name) for a guest path; the name itself is not resolved."""
        if self.closed:
            raise Dom0Error(f"{self.tree.name}: this editor is closed", "open a new editor for more edits")
        if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
            raise Dom0Error(f"{path!r} is not an absolute guest path")
        parent, _, name = path.rstrip("/").rpartition("/")
        if name in ("", ".", ".."):
            raise Dom0Error(f"{path!r} does not name a file")
        real = self.tree.realpath(parent or "/")
        if real is None or not self.tree.is_dir(real):
            raise Dom0Error(
                f"{path}: its directory does not exist in the guest ({self.tree.name})",
                "dom0 creates files only in existing directories",
            )
        return real, name

    def record(self, path: str, state: _State) -> tuple[str, str]:
        parent, name = self.locate(path)
        full = _join(parent, name)
        if full not in self.existed:
            self.existed[full] = self.tree.lexists(full)
        if self.existed[full] and self.tree.readlink(full) is None and self.tree.is_dir(full):
            raise Dom0Error(f"{path} is a directory in the guest ({self.tree.name})", "dom0 only edits files")
        if isinstance(state, tuple) and not 0 <= state[1] <= 0o7777:
            raise Dom0Error(f"mode {state[1]:o} for {path} is not a file mode")
        self.final.pop(full, None)  # keep the order of last change
        self.final[full] = state
        return parent, name

    def verify(self, fresh: ResolvingTree) -> None:
        """Every edit, as read back through a tree opened after they were applied."""
        for full, state in self.final.items():
            if state is None:
                ok = not fresh.lexists(full)
            elif isinstance(state, _Link):
                ok = fresh.readlink(full) == state.target
            else:
                ok = (
                    fresh.readlink(full) is None
                    and fresh.is_file(full)
                    and fresh.size(full) == len(state[0])
                    and fresh.read_bytes(full, len(state[0])) == state[0]
                )
            if not ok:
                what = "removed" if state is None else "linked" if isinstance(state, _Link) else "written"
                raise Dom0Error(f"{full} was not {what} in the guest ({fresh.name})", "the filesystem may be damaged")


def _join(parent: str, name: str) -> str:
    return "/" + name if parent == "/" else f"{parent}/{name}"


# --- a guest that is a directory on the host ---------------------------------------------------------------------


class DirectoryEditor:
    """Edits a guest root that is a host directory (a chroot), through file descriptors opened below the root with
    O_NOFOLLOW, so nothing outside the root can be reached whatever the guest's symlinks say."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(os.path.realpath(root))
        self.tree: ResolvingTree = DirectoryTree(self.root)
        self._batch = _Batch(self.tree)

    def write(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Make `path` a regular file holding `data` (applied by close())."""
        self._batch.record(path, (bytes(data), mode))

    def remove(self, path: str) -> None:
        """Remove the entry `path` itself (applied by close())."""
        self._batch.record(path, None)

    def symlink(self, path: str, target: str) -> None:
        """Make `path` a symlink to `target` (applied by close())."""
        self._batch.record(path, _check_target(path, target))

    def _open_dir(self, parent: str) -> int:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.root, flags)
        try:
            for part in [p for p in parent.split("/") if p]:
                nxt = os.open(part, flags, dir_fd=fd)
                os.close(fd)
                fd = nxt
        except OSError:
            os.close(fd)
            raise
        return fd

    def _apply(self, full: str, state: _State) -> None:
        parent, _, name = full.rpartition("/")
        dfd = self._open_dir(parent or "/")
        try:
            if state is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=dfd)  # unlink never follows a symlink
                return
            if isinstance(state, _Link):
                self._link(dfd, name, state.target)
                return
            data, mode = state
            tmp = f".{name}.dom0-{secrets.token_hex(4)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
            try:
                with os.fdopen(fd, "wb", closefd=False) as fh:
                    fh.write(data)
                if os.geteuid() == 0:
                    os.fchown(fd, 0, 0)
                os.fchmod(fd, mode)
                os.fsync(fd)
            except BaseException:
                os.unlink(tmp, dir_fd=dfd)
                raise
            finally:
                os.close(fd)
            # rename replaces the entry itself: a symlink or hard link there is never written through.
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            os.fsync(dfd)
        finally:
            os.close(dfd)

    @staticmethod
    def _link(dfd: int, name: str, target: str) -> None:
        tmp = f".{name}.dom0-{secrets.token_hex(4)}"
        os.symlink(target, tmp, dir_fd=dfd)
        try:
            if os.geteuid() == 0:
                os.chown(tmp, 0, 0, dir_fd=dfd, follow_symlinks=False)
        except BaseException:
            os.unlink(tmp, dir_fd=dfd)
            raise
        # As for files: rename replaces whatever entry was there, and a link there is never followed.
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        os.fsync(dfd)

    def close(self) -> None:
        """Apply the edits in order, then read each back."""
        if self._batch.closed:
            return
        self._batch.closed = True
        for full, state in self._batch.final.items():
            try:
                self._apply(full, state)
            except OSError as exc:
                raise Dom0Error(f"cannot change {full} in {self.root}: {exc.strerror}") from exc
        self._batch.verify(DirectoryTree(self.root))

    def discard(self) -> None:
        """Drop the edits without applying them."""
        self._batch.closed = True


# --- an ext2/3/4 filesystem inside an image or on a block device -------------------------------------------------


def _superblock_flags(image: Path, offset: int) -> int:
    """The incompatible-feature flags of the ext superblock at `offset`; Dom0Error when there is none."""
    try:
        fd = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise Dom0Error(f"cannot open {image}: {exc.strerror}") from exc
    try:
        if os.pread(fd, 4, 0) == QCOW2_MAGIC:
            raise Dom0Error(
                f"{image} is a qcow2 image: debugfs edits raw images and block devices only",
                "clone with --mode copy to a raw file or an LV, or change the identity inside the clone after boot",
            )
        sb = os.pread(fd, 1024, offset + _SUPERBLOCK)
    finally:
        os.close(fd)
    if len(sb) < 0x64 or int.from_bytes(sb[0x38:0x3A], "little") != _EXT_MAGIC:
        raise Dom0Error(f"{image}: no ext2/3/4 filesystem at byte {offset}", "check the offset (dom0 image inspect)")
    return int.from_bytes(sb[0x60:0x64], "little")


class DebugfsEditor:
    """Edits an ext2/3/4 filesystem at `offset` bytes into a raw image or block device with one `debugfs -w` run."""

    def __init__(self, image: Path, offset: int, fs_type: str) -> None:
        if "?" in str(image):
            raise Dom0Error(f"{image}: debugfs cannot open a path with '?' in it", "rename or link the image")
        self.image = image
        self.offset = offset
        self.fs_type = fs_type
        self._spec = f"{image}?offset={offset}"
        if _superblock_flags(image, offset) & _INCOMPAT_RECOVER:
            # A snapshot of a running guest: replay its journal first, or the guest's first mount would replay
            # old metadata over the edits.
            self._replay_journal()
            if _superblock_flags(image, offset) & _INCOMPAT_RECOVER:
                raise Dom0Error(
                    f"{image}: the journal of the filesystem at byte {offset} could not be replayed",
                    "run e2fsck on a copy of it, then clone again",
                )
        self._sources: list[ImageSource] = []
        self.tree: ResolvingTree = self._open_tree()
        self._batch = _Batch(self.tree)

    def _open_tree(self) -> FilesystemTree:
        source = open_image(self.image, format="raw")  # a raw image or device, whatever its first bytes say
        self._sources.append(source)
        window = source.window(self.offset, source.size - self.offset)
        return FilesystemTree(window.as_file(), self.fs_type, f"{self.image} at byte {self.offset}")

    def _release(self) -> None:
        for source in self._sources:
            source.close()
        self._sources.clear()

    def _replay_journal(self) -> None:
        if self.offset == 0:
            self._debugfs(["-w", "-R", "journal_run"])
            return
        # Journal recovery reopens the device by name and loses "?offset=": give it a loop device of the
        # filesystem's range instead (a block device, not a mount: the host kernel never reads the filesystem).
        try:
            loop = run.output(["losetup", "--find", "--show", "--offset", str(self.offset), str(self.image)]).strip()
        except Dom0Error as exc:
            raise Dom0Error(
                f"{self.image}: the filesystem at byte {self.offset} has a journal to replay, and no loop device "
                f"was available for it ({exc.message})",
                "run as root on a host with loop devices, or clone the guest while it is shut down",
            ) from exc
        try:
            self._debugfs(["-w", "-R", "journal_run"], loop)
        finally:
            run.run(["losetup", "--detach", loop], check=False)

    def _debugfs(self, args: list[str], device: str = "") -> None:
        proc = run.run(["debugfs", *args, device or self._spec], check=False)
        # debugfs reports failed commands on stderr but exits 0; its first stderr line is its version banner.
        errors = [
            line
            for line in proc.stderr.decode(errors="replace").splitlines()
            if line.strip() and not line.startswith("debugfs ")
        ]
        if proc.returncode != 0 or errors:
            detail = errors[0] if errors else f"exit code {proc.returncode}"
            raise Dom0Error(f"debugfs could not edit {self.image}: {detail}", "check the image with e2fsck -n")

    def write(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Make `path` a regular file holding `data` (applied by close())."""
        _quotable(path)
        self._batch.record(path, (bytes(data), mode))

    def remove(self, path: str) -> None:
        """Remove the entry `path` itself (applied by close())."""
        _quotable(path)
        self._batch.record(path, None)

    def symlink(self, path: str, target: str) -> None:
        """Make `path` a symlink to `target` (applied by close())."""
        _quotable(path)
        link = _check_target(path, target)
        _quotable(target)
        self._batch.record(path, link)

    def commands(self, scratch: Path) -> list[str]:
        """The debugfs commands for the edits, content files written under `scratch` (ours, mode 0700)."""
        lines: list[str] = []
        for n, (full, state) in enumerate(self._batch.final.items()):
            parent, _, name = full.rpartition("/")
            existed = self._batch.existed[full]
            if not existed and state is None:
                continue
            # `write` names the new entry literally in the current directory, so cd there first.
            lines.append(f'cd "{parent or "/"}"')
            if existed:
                lines.append(f'rm "{name}"')  # removes the entry (a link's target is never looked at)
            if isinstance(state, _Link):
                # debugfs's symlink makes the entry in the current directory, root-owned, mode 0777 like ln -s.
                lines.append(f'symlink "{name}" "{state.target}"')
            elif state is not None:
                data, mode = state
                local = scratch / f"{n}.data"
                local.write_bytes(data)
                lines.append(f'write "{local}" "{name}"')
                lines.append(f'sif "{name}" mode 0{stat.S_IFREG | mode:o}')
                lines.append(f'sif "{name}" uid 0')
                lines.append(f'sif "{name}" gid 0')
        return lines

    def close(self) -> None:
        """Run debugfs once with every edit, then read each back from a fresh view of the filesystem."""
        if self._batch.closed:
            return
        self._batch.closed = True
        self._release()
        scratch = Path(tempfile.mkdtemp(prefix="dom0-debugfs-"))
        try:
            lines = self.commands(scratch)
            if lines:
                cmdfile = scratch / "commands"
                cmdfile.write_text("\n".join(lines) + "\n")
                self._debugfs(["-w", "-f", str(cmdfile)])
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        try:
            self._batch.verify(self._open_tree())
        finally:
            self._release()

    def discard(self) -> None:
        """Drop the edits without applying them."""
        self._batch.closed = True
        self._release()


def _quotable(path: str) -> None:
    # debugfs splits its command lines itself: a name with a quote or a control character cannot be given safely.
    if any(c == '"' or ord(c) < 32 or ord(c) == 127 for c in path):
        raise Dom0Error(f"{path!r}: debugfs cannot be given this name safely", "edit this file after the first boot")


def open_editor(image: Path, offset: int, fs_type: str) -> GuestEditor:
    """An editor for the filesystem of type `fs_type` at byte `offset` of a raw image or block device."""
    if fs_type not in EXT_TYPES:
        raise Dom0Error(
            f"cannot edit files in a {fs_type or 'unknown'} filesystem from userspace",
            "dom0 edits ext2/3/4 guests (with debugfs); change hostname and IP inside this clone after it boots",
        )
    if not run.available("debugfs"):
        raise Dom0Error("debugfs is not installed", "install e2fsprogs")
    return DebugfsEditor(Path(image), offset, fs_type)
