"""The manifest beside each save image: whose image it is, how it was written, and how to check it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from dom0.errors import Dom0Error
from dom0.filedata import read_json
from dom0.model import SaveFormat
from dom0.saves.codec import Compression

FORMAT_VERSION = 1
SUFFIX = ".manifest.json"


@dataclass(frozen=True, slots=True)
class Manifest:
    """What `dom0 save` records about one image; the checksum and sizes let restore refuse a damaged one."""

    name: str
    uuid: str
    uri: str
    save_format: SaveFormat
    compression: Compression
    level: int
    raw_bytes: int  # the hypervisor's image, as `virsh save`/`xl save` would have written it
    stored_bytes: int
    sha256: str  # of the stored (compressed) file
    saved_at: str  # ISO 8601, UTC
    state: str  # "running" or "paused": what the guest was doing when it was saved
    image: str  # file name of the image, in the manifest's directory
    autostart: bool = False  # turned off while the image waits (else libvirtd would boot it afresh), back on restore

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON object."""
        doc = asdict(self)
        doc = {"format_version": FORMAT_VERSION, **doc}
        doc["save_format"] = str(self.save_format)
        doc["compression"] = str(self.compression)
        return doc

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Manifest:
        """Validate a manifest read from `where`; Dom0Error naming the first problem, on one line."""
        if not isinstance(doc, dict):
            raise Dom0Error(f"{where} is not a dom0 save manifest (not a JSON object)", _HINT)
        version = doc.get("format_version")
        if type(version) is not int or version != FORMAT_VERSION:
            raise Dom0Error(f"{where} has manifest version {_shown(version)}; dom0 reads {FORMAT_VERSION}", _HINT)
        try:
            manifest = cls(
                name=_text(doc, "name"),
                uuid=_text(doc, "uuid"),
                uri=_text(doc, "uri"),
                save_format=_choice(SaveFormat, doc, "save_format"),
                compression=_choice(Compression, doc, "compression"),
                level=_number(doc, "level"),
                raw_bytes=_number(doc, "raw_bytes"),
                stored_bytes=_number(doc, "stored_bytes"),
                sha256=_text(doc, "sha256"),
                saved_at=_text(doc, "saved_at"),
                state=_text(doc, "state"),
                image=_text(doc, "image"),
                autostart=doc.get("autostart", False) is True,
            )
        except KeyError as exc:
            raise Dom0Error(f"{where} is not a valid dom0 save manifest: it has no {exc.args[0]}", _HINT) from exc
        except (ValueError, TypeError) as exc:
            raise Dom0Error(f"{where} is not a valid dom0 save manifest: {exc}", _HINT) from exc
        if "/" in manifest.image or manifest.image in ("", ".", ".."):
            raise Dom0Error(f"{where} names its image {_shown(manifest.image)}, which is not a file beside it", _HINT)
        return manifest


_HINT = "the manifest is damaged or was not written by `dom0 save`"
_TEXT_LIMIT = 4096  # a guest name, URI or timestamp; the guest's definition is in the image, not here


def _shown(value: Any) -> str:
    """A value from the file, quoted and cut short, for a one-line message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(doc: dict[str, Any], key: str) -> str:
    value = doc[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} should be text, not {_shown(value)}")
    if len(value) > _TEXT_LIMIT or any(ord(c) < 32 or ord(c) == 127 for c in value):
        # Printed in tables and messages: control characters would reach the administrator's terminal.
        raise ValueError(f"{key} {_shown(value)} is not plain text of at most {_TEXT_LIMIT} characters")
    return value


def _number(doc: dict[str, Any], key: str) -> int:
    value = doc[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value >= 1 << 63:
        raise TypeError(f"{key} should be a whole number, not {_shown(value)}")
    return value


E = TypeVar("E", SaveFormat, Compression)


def _choice(kind: type[E], doc: dict[str, Any], key: str) -> E:
    value = doc[key]
    if not isinstance(value, str) or value not in {str(member) for member in kind}:
        choices = ", ".join(str(member) for member in kind)
        raise ValueError(f"{key} {_shown(value)} is not one of {choices}")
    return kind(value)


def manifest_path(directory: Path, name: str) -> Path:
    """Where the manifest of guest `name` lives in `directory`."""
    return directory / f"{name}{SUFFIX}"


def image_path(directory: Path, name: str, compression: Compression) -> Path:
    """Where the image of guest `name` lives in `directory`."""
    return directory / f"{name}.save{compression.suffix}"


def read(path: Path) -> Manifest:
    """Load and validate the manifest at `path`."""
    doc = read_json(path, "`ls` the save directory; dom0 writes NAME.manifest.json")
    return Manifest.from_json(doc, str(path))


def write(path: Path, manifest: Manifest) -> None:
    """Write the manifest to `path` (the caller makes it durable, then renames it into place)."""
    data = (json.dumps(manifest.to_json(), indent=2) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def find(directory: Path) -> list[Path]:
    """The manifests in `directory`, by name."""
    try:
        return sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith("."))
    except FileNotFoundError as exc:
        raise Dom0Error(f"{directory} does not exist", "give the directory `dom0 save -d` wrote to") from exc
    except NotADirectoryError as exc:
        raise Dom0Error(f"{directory} is not a directory") from exc
