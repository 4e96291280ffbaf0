"""An export directory as `dom0 export` writes it, built by the tests themselves so each part can be made hostile."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import zstandard

URI = "test:///default"
UUID = "6f1e9c3a-5b0d-4c2e-9a7f-0d1b2c3d4e5f"
DISK = b"dom0 export test disk\n" * 1000 + bytes(200_000) + b"tail"

GOOD_DEVICES = """
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/var/lib/libvirt/images/web.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'><mac address='52:54:00:11:22:33'/><source network='default'/></interface>
    <serial type='pty'><target port='0'/></serial>
"""


def definition_xml(devices: str = GOOD_DEVICES, os_extra: str = "", name: str = "web") -> str:
    return f"""<domain type='test'>
  <name>{name}</name>
  <uuid>{UUID}</uuid>
  <memory unit='KiB'>131072</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type>{os_extra}</os>
  <devices>{devices}</devices>
</domain>
"""


def manifest_doc(stored: bytes, changes: Mapping[str, object], raw: bytes = DISK) -> dict[str, object]:
    disk: dict[str, object] = {
        "target": "vda",
        "file": "vda.raw.zst",
        "format": "raw",
        "size_bytes": len(raw),
        "raw_sha256": hashlib.sha256(raw).hexdigest(),
        "stored_bytes": len(stored),
        "stored_sha256": hashlib.sha256(stored).hexdigest(),
        "swap_uuid": "",
        "swap_label": "",
    }
    doc: dict[str, object] = {
        "name": "web",
        "uuid": UUID,
        "uri": "qemu:///system",
        "definition": "definition.xml",
        "disks": [disk],
        "exported_at": "2024-01-01T00:00:00+00:00",
        "format_version": 1,
    }
    for key, value in changes.items():
        if key.startswith("disk_"):
            disk[key[5:]] = value
        else:
            doc[key] = value
    return doc


def make_export(
    tmp_path: Path,
    xml: str | bytes | None = None,
    stored: bytes | None = None,
    fields: Mapping[str, object] | None = None,
    **changes: object,
) -> Path:
    """An export directory as `dom0 export` writes it, with the given parts replaced."""
    out = tmp_path / "media" / "web"
    out.mkdir(parents=True)
    stored = zstandard.ZstdCompressor().compress(DISK) if stored is None else stored
    (out / "vda.raw.zst").write_bytes(stored)
    xml = definition_xml() if xml is None else xml
    (out / "definition.xml").write_bytes(xml.encode() if isinstance(xml, str) else xml)
    (out / "manifest.json").write_text(json.dumps(manifest_doc(stored, {**(fields or {}), **changes})))
    return out
