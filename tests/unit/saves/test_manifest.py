"""Save manifests: what `dom0 save` writes is what restore reads back; anything else is refused, naming the file."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dom0.errors import Dom0Error
from dom0.model import SaveFormat
from dom0.saves import manifest
from dom0.saves.codec import Compression
from dom0.saves.manifest import Manifest

RECORD = Manifest(
    name="web1",
    uuid="6a1c2f3e-8b4d-4e5f-9a0b-1c2d3e4f5a6b",
    uri="qemu:///system",
    save_format=SaveFormat.QEMU,
    compression=Compression.ZSTD,
    level=3,
    raw_bytes=268_435_456,
    stored_bytes=91_234_567,
    sha256="ab" * 32,
    saved_at="2024-05-01T12:00:00+00:00",
    state="running",
    image="web1.save.zst",
)


def _written(tmp_path: Path, **changes: Any) -> Path:
    """A manifest file as dom0 writes it, with `changes` made to its JSON (None removes a key)."""
    doc = RECORD.to_json()
    for key, value in changes.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    path = tmp_path / "web1.manifest.json"
    path.write_text(json.dumps(doc))
    return path


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "web1.manifest.json"
    manifest.write(path, RECORD)
    assert manifest.read(path) == RECORD
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "record",
    [
        replace(RECORD, compression=Compression.NONE, image="web1.save", level=0, autostart=True),
        replace(RECORD, save_format=SaveFormat.LIBXL, uri="xen:///system", state="paused", compression=Compression.LZ4),
        replace(RECORD, save_format=SaveFormat.XL, uri="xl://", compression=Compression.GZIP, raw_bytes=0),
    ],
)
def test_every_format_and_compression_round_trips(tmp_path: Path, record: Manifest) -> None:
    path = tmp_path / "m.manifest.json"
    manifest.write(path, record)
    assert manifest.read(path) == record


def test_written_manifest_is_plain_json_with_the_documented_keys(tmp_path: Path) -> None:
    path = tmp_path / "web1.manifest.json"
    manifest.write(path, RECORD)
    doc = json.loads(path.read_text())
    assert doc["format_version"] == 1
    assert doc["save_format"] == "qemu"
    assert doc["compression"] == "zstd"
    assert doc["sha256"] == RECORD.sha256
    assert {"uri", "raw_bytes", "stored_bytes", "saved_at", "state", "image"} <= doc.keys()


def test_write_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "web1.manifest.json"
    path.write_text("older")
    with pytest.raises(FileExistsError):
        manifest.write(path, RECORD)
    assert path.read_text() == "older"


def test_missing_manifest_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "gone.manifest.json"
    with pytest.raises(Dom0Error, match="does not exist") as err:
        manifest.read(path)
    assert str(path) in err.value.message
    assert err.value.hint


@pytest.mark.parametrize("text", ["", "{", "not json", "\0\1\2"])
def test_non_json_is_refused_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "web1.manifest.json"
    path.write_text(text)
    with pytest.raises(Dom0Error) as err:
        manifest.read(path)
    assert str(path) in err.value.message


@pytest.mark.parametrize("doc", [[], "text", 3, None])
def test_json_that_is_not_an_object_is_refused(tmp_path: Path, doc: Any) -> None:
    path = tmp_path / "web1.manifest.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(Dom0Error, match="not a dom0 save manifest") as err:
        manifest.read(path)
    assert str(path) in err.value.message


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_wrong_version_is_refused_naming_the_file(tmp_path: Path, version: Any) -> None:
    path = _written(tmp_path, format_version=version)  # None: no version at all
    with pytest.raises(Dom0Error, match="manifest version") as err:
        manifest.read(path)
    assert str(path) in err.value.message


@pytest.mark.parametrize("key", ["raw_bytes", "stored_bytes", "level"])
@pytest.mark.parametrize("value", [-1, 1.5, "100", True, [1]])
def test_negative_or_non_integer_sizes_are_refused(tmp_path: Path, key: str, value: Any) -> None:
    path = _written(tmp_path, **{key: value})
    with pytest.raises(Dom0Error, match="not a valid dom0 save manifest") as err:
        manifest.read(path)
    assert str(path) in err.value.message
    assert key in err.value.message


@pytest.mark.parametrize(
    ("changes", "word"),
    [
        ({"name": None}, "name"),
        ({"sha256": None}, "sha256"),
        ({"uuid": 5}, "uuid"),
        ({"save_format": "vmware"}, "vmware"),
        ({"compression": "xz"}, "xz"),
    ],
)
def test_missing_or_wrong_fields_are_refused(tmp_path: Path, changes: dict[str, Any], word: str) -> None:
    path = _written(tmp_path, **changes)
    with pytest.raises(Dom0Error, match="not a valid dom0 save manifest") as err:
        manifest.read(path)
    assert str(path) in err.value.message
    assert word in err.value.message


@pytest.mark.parametrize("image", ["../web1.save.zst", "/etc/shadow", "sub/web1.save.zst", "", ".", ".."])
def test_image_name_outside_the_manifests_directory_is_refused(tmp_path: Path, image: str) -> None:
    path = _written(tmp_path, image=image)
    with pytest.raises(Dom0Error, match="not a file beside it") as err:
        manifest.read(path)
    assert str(path) in err.value.message


def test_paths_and_find(tmp_path: Path) -> None:
    assert manifest.manifest_path(tmp_path, "web1") == tmp_path / "web1.manifest.json"
    assert manifest.image_path(tmp_path, "web1", Compression.ZSTD) == tmp_path / "web1.save.zst"
    assert manifest.image_path(tmp_path, "web1", Compression.NONE) == tmp_path / "web1.save"
    for name in (
        "b.manifest.json",
        "a.manifest.json",
        ".hidden.manifest.json",
        "a.save.zst",
        "c.manifest.json.partial",
    ):
        (tmp_path / name).write_text("")
    assert [p.name for p in manifest.find(tmp_path)] == ["a.manifest.json", "b.manifest.json"]


def test_find_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(Dom0Error, match="does not exist"):
        manifest.find(tmp_path / "nope")
    (tmp_path / "file").write_text("")
    with pytest.raises(Dom0Error, match="not a directory"):
        manifest.find(tmp_path / "file")


@pytest.mark.parametrize(
    ("changes", "word"),
    [
        ({"save_format": ["qemu"]}, "save_format"),
        ({"compression": {"zstd": 1}}, "compression"),
        ({"name": "web1\x1b]0;owned\x07"}, "name"),
        ({"name": "x" * 100_000}, "name"),
        ({"raw_bytes": 10**400}, "raw_bytes"),
        ({"format_version": True}, "version"),
        ({"format_version": 1.0}, "version"),
    ],
)
def test_wrong_field_types_are_one_line_errors_with_a_hint(tmp_path: Path, changes: dict[str, Any], word: str) -> None:
    path = _written(tmp_path, **changes)
    with pytest.raises(Dom0Error) as err:
        manifest.read(path)
    assert word in err.value.message
    assert "\n" not in err.value.message
    assert "\x1b" not in err.value.message
    assert len(err.value.message) < len(str(path)) + 200
    assert "dom0 save" in err.value.hint


def test_deeply_nested_json_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "web1.manifest.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(Dom0Error) as err:
        manifest.read(path)
    assert str(path) in err.value.message
    assert "\n" not in err.value.message


@pytest.mark.parametrize("what", ["fifo", "link to /dev/zero"])
def test_a_manifest_that_is_a_fifo_or_endless_is_refused_at_once(tmp_path: Path, what: str) -> None:
    path = tmp_path / "web1.manifest.json"
    if what == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    started = time.monotonic()
    with pytest.raises(Dom0Error) as err:
        manifest.read(path)
    assert time.monotonic() - started < 2
    assert str(path) in err.value.message


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_FIELDS = st.fixed_dictionaries({}, optional={key: _JSON for key in RECORD.to_json()})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=512) | _FIELDS.map(lambda d: json.dumps({**RECORD.to_json(), **d}).encode()))
def test_any_bytes_are_a_manifest_or_a_one_line_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.manifest.json"
    path.write_bytes(data)
    try:
        record = manifest.read(path)
    except Dom0Error as exc:
        message = exc.message
    else:
        message = ""
    assert "\n" not in message
    if message:
        return
    assert isinstance(record, Manifest)
    assert record.image
    assert "/" not in record.image
