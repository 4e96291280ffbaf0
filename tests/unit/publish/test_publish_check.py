"""dom0 publish check's probes, against listeners on this host's loopback only."""

from __future__ import annotations

import ipaddress
import socket

from publishkit import entry

from dom0.publish.addresses import Target
from dom0.publish.check import ANSWERING, NO_ANSWER, NOT_CHECKED, REFUSED, check
from dom0.publish.table import Transport

ip = ipaddress.ip_address


def test_answering_refused_udp_and_no_address() -> None:
    with socket.socket() as listener, socket.socket() as closed:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        closed.bind(("127.0.0.1", 0))  # bound, not listening: a connect is refused
        up, down = listener.getsockname()[1], closed.getsockname()[1]
        targets = (
            Target(entry("127.0.0.1", ports=str(up)), ip("127.0.0.1"), "to"),
            Target(entry("127.0.0.1", ports=str(down)), ip("127.0.0.1"), "to"),
            Target(entry("127.0.0.1", ports="53", transport=Transport.UDP), ip("127.0.0.1"), "to"),
            Target(entry("127.0.0.1", ports=str(up)), None, "", "web is shutoff"),
        )
        results = check(targets, 1.0)
    assert [(r.guest.result, r.public.result, r.failed) for r in results] == [
        (ANSWERING, ANSWERING, False),
        (REFUSED, REFUSED, True),
        (NOT_CHECKED, NOT_CHECKED, False),
        (NO_ANSWER, ANSWERING, True),
    ]
    assert results[3].guest.detail == "web is shutoff"
    assert results[2].guest.detail == "UDP has no handshake: no answer to a datagram proves nothing"
