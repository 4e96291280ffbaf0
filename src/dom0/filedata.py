"""Reading dom0's own small files back: JSON documents and whole-file checksums, with errors that say which file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dom0.errors import Dom0Error

CHUNK = 4 << 20


def read_json(path: Path, missing_hint: str) -> Any:
    """The JSON document in `path`; Dom0Error (with `missing_hint` when it does not exist) otherwise."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise Dom0Error(f"{path} does not exist", missing_hint) from exc
    except (OSError, ValueError) as exc:
        raise Dom0Error(f"cannot read {path}: {exc}") from exc


def sha256_file(path: Path) -> str:
    """The SHA-256 of the whole file, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
