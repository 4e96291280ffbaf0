"""What the running `dom0 memlock run` holds, published as one JSON file anyone may read, and the status view
built on it (residency and staleness measured by the reader, so `dom0 memlock status` works without root).

The document: pid, started, sources (config files read), budget_bytes, budget (in words), files[] each with path,
reason, size, locked_bytes, inode, left_out_reason; problems[]; totals {files, locked_files, locked_bytes,
left_out}.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from dom0.errors import Dom0Error

DEFAULT_STATE = Path("/run/dom0/memlock.json")
_START_HINT = "start it: systemctl start dom0-memlock (contrib/systemd/dom0-memlock.service), or dom0 memlock run"


def publish(path: Path, document: dict[str, Any]) -> None:
    """Write `document` to `path` atomically (a reader sees the old or the new whole file), mode 0644."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(document, f, indent=1)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def withdraw(path: Path) -> None:
    """Remove the state file: the daemon has released everything."""
    path.unlink(missing_ok=True)


def read(path: Path) -> dict[str, Any]:
    """The published document; Dom0Error when no daemon publishes there or the file is not one of ours."""
    from dom0.filedata import read_json

    if not os.path.lexists(path):
        raise Dom0Error(f"dom0 memlock is not running (no {path})", _START_HINT)
    doc = read_json(path, _START_HINT)
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list) or not isinstance(doc.get("pid"), int):
        raise Dom0Error(f"{path} is not a dom0 memlock state file", "give the file `dom0 memlock run --state` wrote")
    return doc


def pid_alive(pid: int) -> bool:
    """Whether process `pid` still exists (a reader that may not signal it still learns it exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def with_residency(doc: dict[str, Any]) -> dict[str, Any]:
    """The state with each file's `resident` bytes (mincore, now) and `stale`: the path now names another inode
    than the one locked (replaced and not yet relocked) or is gone, while the old one is still mapped."""
    from dom0.memlock.locker import LockError, resident

    files = []
    for entry in doc["files"]:
        row = dict(entry)
        path = Path(str(entry.get("path", "")))
        try:
            st = os.stat(path, follow_symlinks=False)
            current: int | None = st.st_ino
        except OSError:
            current = None
        try:
            row["resident"] = resident(path) if current is not None else 0
        except LockError:
            row["resident"] = 0
        locked = int(entry.get("locked_bytes") or 0) > 0
        row["stale"] = locked and current != entry.get("inode")
        files.append(row)
    out = dict(doc)
    out["files"] = files
    totals = dict(doc.get("totals") or {})
    totals["resident_bytes"] = sum(int(f["resident"]) for f in files if int(f.get("locked_bytes") or 0) > 0)
    totals["stale"] = sum(1 for f in files if f["stale"])
    out["totals"] = totals
    out["running"] = pid_alive(int(doc["pid"]))
    return out
