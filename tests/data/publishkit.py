"""Helpers for the publish tests: a network namespace of the test's own, and nft or dom0 run inside it.

nft and iptables only ever run inside a namespace the test created (`ip netns exec`), never in the machine's own,
and the namespace is removed when the test ends, whatever happened.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
from unitkit import DOM0, Result

from dom0 import run
from dom0.publish.table import PortRange, PublishEntry, Transport


def entry(
    public: str = "203.0.113.10",
    *,
    ports: str = "80",
    guest: str = "web",
    guest_ports: str | None = None,
    to: str | None = None,
    transport: Transport = Transport.TCP,
    line: int = 2,
) -> PublishEntry:
    """A table entry built directly, as the table's parser would make it."""

    def ports_of(text: str) -> PortRange:
        first, _, last = text.partition("-")
        return PortRange(int(first), int(last or first))

    return PublishEntry(
        public=ipaddress.ip_address(public),
        ports=ports_of(ports),
        transport=transport,
        guest=guest,
        guest_ports=ports_of(guest_ports or ports),
        to=ipaddress.ip_address(to) if to else None,
        line=line,
    )


@contextmanager
def netns() -> Iterator[str]:
    """A fresh, empty network namespace (its loopback up); skips the test when not root or without `ip netns`."""
    if os.geteuid() != 0 or not run.available("ip") or not run.available("nft"):
        pytest.skip("needs root, ip and nft, to create a network namespace of the test's own")
    name = f"dom0t-{secrets.token_hex(4)}"
    if run.run(["ip", "netns", "add", name], check=False).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    try:
        run.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"])
        yield name
    finally:
        run.run(["ip", "netns", "del", name], check=False)


def in_ns(ns: str, *cmd: str, input: bytes | None = None, check: bool = True) -> str:
    """Run `cmd` inside namespace `ns`; its standard output."""
    proc = run.run(["ip", "netns", "exec", ns, *cmd], input=input, check=check, timeout=60)
    return proc.stdout.decode()


def dom0_in(ns: str, *args: str, env: Mapping[str, str] | None = None) -> Result:
    """`dom0 ARGS` inside namespace `ns` (through env(1), so a test can give it its own PATH)."""
    settings = [f"{k}={v}" for k, v in (env or {}).items()]
    proc = run.run(["ip", "netns", "exec", ns, "env", *settings, str(DOM0), *args], check=False, input=b"", timeout=120)
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def write_table(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
