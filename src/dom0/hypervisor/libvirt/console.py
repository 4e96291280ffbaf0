"""libvirt's event loop (streams and keepalive need it running) and a guest's serial console over a stream."""

from __future__ import annotations

import queue
import threading
import time
from contextlib import suppress

import libvirt

from dom0.errors import Dom0Error, GuestStateError
from dom0.hypervisor.libvirt.failures import message, translated

_event_loop_lock = threading.Lock()
_event_loop_started = False


def ensure_event_loop() -> None:
    """Streams need libvirt's event loop running; start it once per process, before the connection opens."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def loop() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=loop, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


class LibvirtConsole:
    """A serial console over a non-blocking libvirt stream; bytes arrive through the event loop."""

    def __init__(self, conn: libvirt.virConnect, stream: libvirt.virStream) -> None:
        self._conn = conn
        self._stream = stream
        self._incoming: queue.Queue[bytes | None] = queue.Queue()
        self._closed = False

    @classmethod
    def attach(cls, uri: str, uuid: str, ref: str) -> LibvirtConsole:
        ensure_event_loop()
        with translated(f"cannot open the console of {ref!r}"):
            conn = libvirt.open(uri)
            dom = conn.lookupByUUIDString(uuid)
            stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
            try:
                dom.openConsole(None, stream, 0)
            except libvirt.libvirtError as exc:
                conn.close()
                if "active console session" in message(exc):
                    raise GuestStateError(
                        f"someone else is attached to the console of {ref!r}",
                        "detach them first (Ctrl-] in their session)",
                    ) from exc
                raise
        console = cls(conn, stream)
        events = libvirt.VIR_STREAM_EVENT_READABLE | libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP
        stream.eventAddCallback(events, console._on_event, None)
        return console

    def _on_event(self, stream: libvirt.virStream, events: int, _opaque: object) -> None:
        if events & libvirt.VIR_STREAM_EVENT_READABLE:
            while True:
                try:
                    data = stream.recv(4096)
                except libvirt.libvirtError:
                    data = b""
                if data == -2:
                    return  # drained for now
                if not data:
                    break
                assert isinstance(data, bytes)
                self._incoming.put(data)
        self._incoming.put(None)
        with suppress(libvirt.libvirtError):
            stream.eventRemoveCallback()

    def read(self, timeout: float) -> bytes | None:
        """Bytes from the guest, b'' if none within `timeout`, None once the console closed."""
        if self._closed:
            return None
        try:
            chunk = self._incoming.get(timeout=timeout)
        except queue.Empty:
            return b""
        if chunk is None:
            self._closed = True
        return chunk

    def write(self, data: bytes) -> None:
        """Send keystrokes to the guest."""
        while data:
            sent = self._stream.send(data)
            if sent == -2:
                time.sleep(0.01)
                continue
            if sent < 0:
                raise Dom0Error("the console closed while writing")
            data = data[sent:]

    def close(self) -> None:
        """Detach from the console; the guest keeps running."""
        with suppress(libvirt.libvirtError):
            self._stream.eventRemoveCallback()
        try:
            self._stream.finish()
        except libvirt.libvirtError:
            with suppress(libvirt.libvirtError):
                self._stream.abort()
        self._conn.close()
