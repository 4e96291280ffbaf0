"""A guest's files, read by guest path and resolved inside the guest's own root, never onto the host.

Every path given here is a path as the guest sees it ("/etc/os-release"). Components are resolved one by one by
this module, not by the host kernel or by the filesystem library: an absolute symlink restarts at the guest's root,
`..` at the root stays there, and more than MAX_LINK_HOPS symlinks end in Dom0Error. A DirectoryTree therefore
never opens a host path through a symlink, and a FilesystemTree never leaves the filesystem image it reads.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Protocol

from dom0.errors import Dom0Error

if TYPE_CHECKING:
    from dom0.image.layout import Filesystem
    from dom0.image.source import ImageSource

# Linux gives up after 40 links in one lookup (ELOOP); a guest's tree should not need more.
MAX_LINK_HOPS = 40

# Release and config files are a few KiB; a "file" bigger than this in /etc is a damaged or hostile image. It is
# reported and never loaded whole: a 50 MiB /etc/hostname would otherwise become hundreds of MB of JSON.
MAX_CONFIG_READ = 64 * 1024

Kind = Literal["dir", "file", "link", "other"]


class GuestTree(Protocol):
    """Read-only access to a guest's files by guest path."""

    name: str

    def read_bytes(self, path: str, limit: int = MAX_CONFIG_READ) -> bytes:
        """The whole content of a regular file; Dom0Error if it holds more than `limit` bytes."""
        ...

    def read_text(self, path: str, limit: int = MAX_CONFIG_READ) -> str:
        """The content of a regular file as text (undecodable bytes replaced); Dom0Error if over `limit` bytes."""
        ...

    def exists(self, path: str) -> bool:
        """Whether the path resolves to something (a dangling symlink does not)."""
        ...

    def is_dir(self, path: str) -> bool:
        """Whether the path resolves to a directory."""
        ...

    def is_file(self, path: str) -> bool:
        """Whether the path resolves to a regular file."""
        ...

    def listdir(self, path: str) -> list[str]:
        """Names in a directory, sorted, without . and .."""
        ...

    def size(self, path: str) -> int:
        """Size in bytes of a regular file."""
        ...

    def open(self, path: str) -> BinaryIO:
        """A read-only binary file object over a regular file."""
        ...


class _Backend(Protocol):
    """What a storage needs to offer for the resolver: nodes, their kind, children, link targets and data."""

    def root(self) -> Any: ...
    def child(self, node: Any, name: str) -> Any | None: ...
    def kind(self, node: Any) -> Kind: ...
    def names(self, node: Any) -> list[str]: ...
    def readlink(self, node: Any) -> str: ...
    def size(self, node: Any) -> int: ...
    def open(self, node: Any) -> BinaryIO: ...


class _Step:
    """One resolved component: the backend that holds it, its node, and its guest path."""

    __slots__ = ("backend", "node", "path")

    def __init__(self, backend: _Backend, node: Any, path: str) -> None:
        self.backend = backend
        self.node = node
        self.path = path


def _join(parent: str, name: str) -> str:
    return "/" + name if parent == "/" else f"{parent}/{name}"


class ResolvingTree:
    """A GuestTree over a root backend plus filesystems mounted at guest paths (the guest's fstab view)."""

    def __init__(self, name: str, backend: _Backend, mounts: Mapping[str, _Backend] | None = None) -> None:
        self.name = name
        self._backend = backend
        self._mounts: dict[str, _Backend] = dict(mounts or {})
        # Guest path -> size of each file read_bytes refused as larger than its limit, for the caller to report.
        self.too_large: dict[str, int] = {}

    @property
    def mountpoints(self) -> list[str]:
        """Guest paths where another filesystem is seen, e.g. ["/boot"]."""
        return sorted(self._mounts)

    def with_mounts(self, mounts: Mapping[str, GuestTree]) -> ResolvingTree:
        """A tree that shows each of `mounts` (guest path -> tree) at its mount point, as the guest would."""
        merged = dict(self._mounts)
        for where, tree in mounts.items():
            if not isinstance(tree, ResolvingTree):
                raise TypeError("only trees from dom0.image.tree can be mounted")
            merged[_normalise_mountpoint(where)] = tree._backend
        return ResolvingTree(self.name, self._backend, merged)

    def _enter(self, backend: _Backend, node: Any, path: str) -> _Step:
        mounted = self._mounts.get(path)
        if mounted is not None and path != "/":
            return _Step(mounted, mounted.root(), path)
        return _Step(backend, node, path)

    def _resolve(self, path: str, *, follow_last: bool = True) -> _Step | None:
        """The step `path` names inside the guest, or None if it does not exist."""
        if not isinstance(path, str):
            raise TypeError("guest paths are strings")
        root = self._enter(self._backend, self._backend.root(), "/")
        stack: list[_Step] = [root]
        pending = [p for p in path.split("/") if p][::-1]
        hops = 0
        while pending:
            part = pending.pop()
            if part == ".":
                continue
            if part == "..":
                if len(stack) > 1:
                    stack.pop()
                continue
            here = stack[-1]
            if here.backend.kind(here.node) != "dir":
                return None
            child = here.backend.child(here.node, part)
            if child is None:
                return None
            step = self._enter(here.backend, child, _join(here.path, part))
            if step.backend.kind(step.node) == "link" and (pending or follow_last):
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise Dom0Error(
                        f"symlink loop in the guest at {path}",
                        f"more than {MAX_LINK_HOPS} symbolic links were followed; the image may be damaged",
                    )
                target = step.backend.readlink(step.node)
                if target.startswith("/"):
                    del stack[1:]
                pending.extend([p for p in target.split("/") if p][::-1])
                continue
            stack.append(step)
        return stack[-1]

    def _regular(self, path: str) -> _Step:
        step = self._resolve(path)
        if step is None:
            raise Dom0Error(f"{path}: no such file in the guest ({self.name})")
        kind = step.backend.kind(step.node)
        if kind != "file":
            raise Dom0Error(f"{path}: not a regular file in the guest ({self.name})")
        return step

    def read_bytes(self, path: str, limit: int = MAX_CONFIG_READ) -> bytes:
        """The whole content of a regular file; Dom0Error if it holds more than `limit` bytes."""
        step = self._regular(path)
        size = step.backend.size(step.node)
        if size > limit:
            self.too_large[path] = size
            raise Dom0Error(
                f"{path}: {size} bytes in the guest ({self.name}), more than the {limit} dom0 reads of such a file",
                "the file is not read; the image may be damaged or hostile",
            )
        with step.backend.open(step.node) as fh:
            # At most `size` bytes, however long the file has grown since its size was read.
            return fh.read(size)

    def read_text(self, path: str, limit: int = MAX_CONFIG_READ) -> str:
        """The content of a regular file as text (undecodable bytes replaced); Dom0Error if over `limit` bytes."""
        return self.read_bytes(path, limit).decode("utf-8", errors="replace")

    def exists(self, path: str) -> bool:
        """Whether the path resolves to something (a dangling symlink does not)."""
        return self._resolve(path) is not None

    def lexists(self, path: str) -> bool:
        """Whether the path exists without following a final symlink."""
        return self._resolve(path, follow_last=False) is not None

    def is_dir(self, path: str) -> bool:
        """Whether the path resolves to a directory."""
        step = self._resolve(path)
        return step is not None and step.backend.kind(step.node) == "dir"

    def is_file(self, path: str) -> bool:
        """Whether the path resolves to a regular file."""
        step = self._resolve(path)
        return step is not None and step.backend.kind(step.node) == "file"

    def realpath(self, path: str) -> str | None:
        """The guest path that `path` names once every symlink in it is resolved inside the guest; None if missing."""
        step = self._resolve(path)
        return None if step is None else step.path

    def readlink(self, path: str) -> str | None:
        """The target of a symlink as stored in the guest, or None when the path is not a symlink."""
        step = self._resolve(path, follow_last=False)
        if step is None or step.backend.kind(step.node) != "link":
            return None
        return step.backend.readlink(step.node)

    def listdir(self, path: str) -> list[str]:
        """Names in a directory, sorted, without . and .."""
        step = self._resolve(path)
        if step is None or step.backend.kind(step.node) != "dir":
            raise Dom0Error(f"{path}: no such directory in the guest ({self.name})")
        return sorted(step.backend.names(step.node))

    def size(self, path: str) -> int:
        """Size in bytes of a regular file."""
        step = self._regular(path)
        return step.backend.size(step.node)

    def open(self, path: str) -> BinaryIO:
        """A read-only binary file object over a regular file."""
        step = self._regular(path)
        return step.backend.open(step.node)


def _normalise_mountpoint(where: str) -> str:
    parts = [p for p in where.split("/") if p and p != "."]
    if ".." in parts:
        raise Dom0Error(f"mount point {where!r} is not a plain absolute path")
    return "/" + "/".join(parts)


# --- a directory on the host --------------------------------------------------------------------------------------


class _DirBackend:
    """Nodes are host paths made only of real directories below the root: no host symlink is ever followed."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def root(self) -> Path:
        return self._root

    def child(self, node: Path, name: str) -> Path | None:
        candidate = node / name
        try:
            os.lstat(candidate)
        except OSError:
            return None
        return candidate

    def kind(self, node: Path) -> Kind:
        try:
            mode = os.lstat(node).st_mode
        except OSError:
            return "other"
        if stat.S_ISDIR(mode):
            return "dir"
        if stat.S_ISLNK(mode):
            return "link"
        if stat.S_ISREG(mode):
            return "file"
        return "other"

    def names(self, node: Path) -> list[str]:
        return os.listdir(node)

    def readlink(self, node: Path) -> str:
        return os.readlink(node)

    def size(self, node: Path) -> int:
        return os.lstat(node).st_size

    def open(self, node: Path) -> BinaryIO:
        # O_NOFOLLOW: if the file was swapped for a symlink since it was checked, refuse rather than follow it.
        try:
            fd = os.open(node, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NOCTTY", 0))
        except PermissionError as exc:
            raise Dom0Error(f"cannot read {node}: permission denied", "run as root or add read permission") from exc
        except OSError as exc:
            raise Dom0Error(f"cannot read {node}: {exc.strerror}") from exc
        return os.fdopen(fd, "rb")


class DirectoryTree(ResolvingTree):
    """A guest root that is a directory on the host (a mounted image or a chroot)."""

    def __init__(self, root: Path | str) -> None:
        path = Path(root)
        if not path.is_dir():
            raise Dom0Error(f"{root}: not a directory")
        super().__init__(str(path), _DirBackend(path.resolve()))


# --- a filesystem read by dissect ---------------------------------------------------------------------------------


class _DissectBackend:
    """ext2/3/4 and XFS through dissect: their inodes share filename/filetype/link/open/size."""

    def __init__(self, fs: Any, label: str) -> None:
        self._fs = fs
        self._label = label
        self._children: dict[object, dict[str, Any]] = {}

    def root(self) -> Any:
        return self._fs.root

    def _entries(self, node: Any) -> dict[str, Any]:
        key = int(node.inum)
        cached = self._children.get(key)
        if cached is None:
            cached = {}
            try:
                for entry in node.iterdir():
                    name = entry.filename
                    if name not in (".", "..") and name:
                        cached.setdefault(name, entry)
            except Exception as exc:
                raise _damaged(self._label, exc) from exc
            self._children[key] = cached
        return cached

    def child(self, node: Any, name: str) -> Any | None:
        return self._entries(node).get(name)

    def kind(self, node: Any) -> Kind:
        try:
            mode = int(node.filetype)
        except Exception as exc:
            raise _damaged(self._label, exc) from exc
        return _kind_of_mode(mode)

    def names(self, node: Any) -> list[str]:
        return list(self._entries(node))

    def readlink(self, node: Any) -> str:
        try:
            return str(node.link)
        except Exception as exc:
            raise _damaged(self._label, exc) from exc

    def size(self, node: Any) -> int:
        return int(node.size)

    def open(self, node: Any) -> BinaryIO:
        try:
            return io.BufferedReader(_Reader(node.open(), self._label))
        except Exception as exc:
            raise _damaged(self._label, exc) from exc


class _BtrfsBackend(_DissectBackend):
    """btrfs: iterdir gives (name, inode) pairs and inodes answer is_dir()/is_symlink()."""

    def _entries(self, node: Any) -> dict[str, Any]:
        key = (id(node.subvolume), int(node.inum))
        cached = self._children.get(key)
        if cached is None:
            try:
                cached = {name: child for name, child in node.iterdir() if name not in (".", "..")}
            except Exception as exc:
                raise _damaged(self._label, exc) from exc
            self._children[key] = cached
        return cached

    def kind(self, node: Any) -> Kind:
        try:
            return _kind_of_mode(int(node.mode))
        except Exception as exc:
            raise _damaged(self._label, exc) from exc


class _FatBackend(_DissectBackend):
    """FAT (an EFI or old /boot partition): no symlinks, names compared without case as DOS does."""

    def _entries(self, node: Any) -> dict[str, Any]:
        key = id(node)
        cached = self._children.get(key)
        if cached is None:
            cached = {}
            try:
                for entry in node.iterdir():
                    if entry.name in (".", "..") or entry.is_volume_id():
                        continue
                    cached.setdefault(str(entry.name), entry)
            except Exception as exc:
                raise _damaged(self._label, exc) from exc
            self._children[key] = cached
        return cached

    def child(self, node: Any, name: str) -> Any | None:
        entries = self._entries(node)
        if name in entries:
            return entries[name]
        folded = name.upper()
        for entry in entries.values():
            if folded in (str(entry.name).upper(), str(entry.short_name).upper()):
                return entry
        return None

    def kind(self, node: Any) -> Kind:
        return "dir" if node.is_directory() else "file"

    def readlink(self, node: Any) -> str:
        raise Dom0Error("FAT has no symbolic links")

    def size(self, node: Any) -> int:
        return int(node.size)


def _kind_of_mode(mode: int) -> Kind:
    fmt = stat.S_IFMT(mode)
    if fmt == stat.S_IFDIR:
        return "dir"
    if fmt == stat.S_IFLNK:
        return "link"
    if fmt == stat.S_IFREG:
        return "file"
    return "other"


def _damaged(label: str, exc: BaseException) -> Dom0Error:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return Dom0Error(f"{label}: cannot read the filesystem ({detail})", "the image may be damaged or truncated")


class _Reader(io.RawIOBase):
    """A dissect stream whose parse errors become Dom0Error, so a damaged file never ends in a traceback."""

    def __init__(self, inner: Any, label: str) -> None:
        super().__init__()
        self._inner = inner
        self._label = label

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._inner.seek(offset, whence))

    def tell(self) -> int:
        return int(self._inner.tell())

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._inner.read(len(buffer))
        except Exception as exc:
            raise _damaged(self._label, exc) from exc
        buffer[: len(data)] = data
        return len(data)


FILESYSTEM_TYPES = ("ext2", "ext3", "ext4", "xfs", "btrfs", "vfat")


class FilesystemTree(ResolvingTree):
    """A guest filesystem read from its bytes by dissect (ext2/3/4, XFS, btrfs, FAT): nothing is mounted."""

    def __init__(self, fh: BinaryIO, fs_type: str, name: str = "filesystem") -> None:
        super().__init__(name, _open_backend(fh, fs_type, name))


def _open_backend(fh: BinaryIO, fs_type: str, name: str) -> _Backend:
    try:
        if fs_type in ("ext2", "ext3", "ext4"):
            from dissect.extfs import ExtFS

            return _DissectBackend(ExtFS(fh), name)
        if fs_type == "xfs":
            from dissect.xfs import XFS

            return _DissectBackend(XFS(fh), name)
        if fs_type == "btrfs":
            from dissect.btrfs import Btrfs

            return _BtrfsBackend(Btrfs(fh), name)
        if fs_type in ("vfat", "fat", "msdos"):
            from dissect.fat import FATFS

            return _FatBackend(FATFS(fh), name)
    except Dom0Error:
        raise
    except Exception as exc:
        raise _damaged(name, exc) from exc
    raise Dom0Error(
        f"{name}: cannot read files from a {fs_type or 'unknown'} filesystem",
        f"dom0 reads {', '.join(FILESYSTEM_TYPES)}",
    )


def open_tree(source: ImageSource, fs: Filesystem) -> FilesystemTree:
    """The files of `fs`, read from `source`, the filesystem's own bytes (see layout.open_filesystem_source)."""
    return FilesystemTree(source.as_file(), fs.type, f"{source.name} ({fs.location})")
