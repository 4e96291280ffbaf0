"""What every save format module returns and implements: the header's facts and the stream fixer's shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dom0.errors import Dom0Error
from dom0.model import SaveFormat

# Enough of a stream's start for every format's header and the guest definition embedded in it.
HEAD_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """What a save image's header says: who wrote it and for which guest."""

    format: SaveFormat
    name: str  # '' when the header does not say
    uuid: str  # canonical lower-case 8-4-4-4-12, '' when unknown
    was_running: bool | None  # None when the format does not record it
    header_size: int  # bytes before the hypervisor's own memory stream, embedded definition included


class StreamFixer(Protocol):
    """Turns what a driver writes into a FIFO into the bytes a regular-file save would have left on disk."""

    expects_trailer: bool  # the driver reopens the path after the stream to finish its header

    def feed(self, chunk: bytes) -> bytes:
        """The bytes of `chunk` to store (the stream's first bytes may be patched)."""
        ...

    def trailer(self, data: bytes) -> None:
        """Check what the driver wrote on its second open; Dom0Error when it is not what a whole image needs."""
        ...


class PassThrough:
    """Drivers that write their header once, in order: the FIFO already carries the whole image."""

    expects_trailer = False

    def feed(self, chunk: bytes) -> bytes:
        """Stored as it comes."""
        return chunk

    def trailer(self, data: bytes) -> None:
        """These drivers write nothing after the stream."""
        if data:
            raise Dom0Error(f"the hypervisor wrote {len(data)} unexpected bytes after its save stream")
