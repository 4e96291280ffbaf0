"""The host's configuration files under --root: symlinks resolved inside that root (never onto the machine running
dom0), each read bounded, anything odd left unread with one note saying why. A missing file is simply absent."""

from __future__ import annotations

import fnmatch

from dom0 import humanize
from dom0.errors import Dom0Error
from dom0.image.tree import DirectoryTree

# /etc/network/interfaces, a .network file, a netplan YAML: a few KiB. Far larger is the wrong file.
CONFIG_LIMIT = 1 << 20
# Files one glob or directory may bring in; a host has a handful.
MAX_FILES = 256


class HostFiles:
    """Read-only access to the files of the host whose root is `root` (/ for this host)."""

    def __init__(self, root: str) -> None:
        self.root = root
        try:
            self._tree = DirectoryTree(root)
        except Dom0Error as exc:
            raise Dom0Error(f"--root {root}: not a directory", "give the directory holding the host's /etc") from exc
        self.notes: list[str] = []

    def shown(self, path: str) -> str:
        """`path` (as the host sees it) as the administrator finds it on this machine."""
        return path if self.root.rstrip("/") == "" else self.root.rstrip("/") + path

    def note(self, path: str, why: str) -> None:
        self.notes.append(f"{self.shown(path)}: {why}")

    def read(self, path: str, limit: int = CONFIG_LIMIT) -> str | None:
        """The text of the regular file at `path`; None (with a note unless it is simply missing) otherwise."""
        try:
            if not self._tree.lexists(path):
                return None
            if not self._tree.is_file(path):
                self.note(path, self._why_not_file(path))
                return None
            size = self._tree.size(path)
            if size > limit:
                self.note(path, f"{humanize.size(size)}, more than the {humanize.size(limit)} dom0 reads: not read")
                return None
            return self._tree.read_text(path, limit)
        except Dom0Error as exc:
            self.note(path, self._words(exc))
            return None

    def _why_not_file(self, path: str) -> str:
        target = self._tree.readlink(path)
        if target is not None and not self._tree.exists(path):
            where = "which does not exist" if self.root.rstrip("/") == "" else f"which is not under {self.root}"
            return f"a symlink to {target}, {where}: not read"
        if self._tree.is_dir(path):
            return "a directory, not a file: not read"
        return "not a regular file (a FIFO, socket or device): not read"

    @staticmethod
    def _words(exc: Dom0Error) -> str:
        if "symlink loop" in exc.message:
            return "a symlink loop: not read"
        return exc.message

    def is_dir(self, path: str) -> bool:
        try:
            return self._tree.is_dir(path)
        except Dom0Error as exc:
            self.note(path, self._words(exc))
            return False

    def readlink(self, path: str) -> str | None:
        """The target of the symlink at `path` as written, or None when it is not one."""
        try:
            return self._tree.readlink(path)
        except Dom0Error:
            return None

    def realpath(self, path: str) -> str | None:
        try:
            return self._tree.realpath(path)
        except Dom0Error:
            return None

    def listdir(self, path: str) -> list[str]:
        """The names in the directory `path`, sorted; [] when it is missing or not a directory."""
        if not self.is_dir(path):
            return []
        names = self._tree.listdir(path)
        if len(names) > MAX_FILES:
            self.note(path, f"{len(names)} entries; only the first {MAX_FILES} are read")
        return names[:MAX_FILES]

    def glob(self, pattern: str) -> list[str]:
        """The paths matching a shell pattern (wildcards in any component), sorted, at most MAX_FILES."""
        found = ["/"]
        for part in [p for p in pattern.split("/") if p]:
            nxt: list[str] = []
            for base in found:
                prefix = base.rstrip("/")
                if any(c in part for c in "*?["):
                    nxt += [f"{prefix}/{n}" for n in self.listdir(base) if fnmatch.fnmatchcase(n, part)]
                else:
                    nxt.append(f"{prefix}/{part}")
                if len(nxt) > MAX_FILES:
                    self.note(pattern, f"matches more than {MAX_FILES} files; only the first {MAX_FILES} are read")
                    return sorted(nxt)[:MAX_FILES]
            found = nxt
        return sorted(p for p in found if p != "/")
