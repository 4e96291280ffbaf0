"""`dom0 publish` with a real QEMU guest on a plain bridge, whose address dom0 has to find by itself.

The lab of netns.py (an outside client at 198.51.100.2, the host with 203.0.113.10 on its uplink and br0 at
10.0.0.1) gets one more guest on br0: a busybox guest of guestkit's mode net at 10.0.0.5, serving TCP 8080. Its NIC
is an `<interface type='ethernet'>`: libvirt creates the tap in its own namespace, and the test moves it into the
host's namespace and onto br0. libvirt knows no address for such a NIC (no DHCP server of its own, no agent, and
its ARP view is its own namespace's), so `dom0 publish add` without --to can only find the guest where an admin's
dom0 on a bridged host finds it: the neighbour table of the namespace dom0 runs in, by the NIC's MAC. The guest
pings its gateway at boot, as any guest's first packets would, so the host has heard from it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dom0 import run

from . import guestkit, netns
from .conftest import SESSION, URI, TestGuest, _next_number, _remove, dom0_program, virsh

PUBLIC = netns.PUBLIC_IPS[0]
CLIENT = netns.OUTSIDE_IP
GUEST_IP = "10.0.0.5"
GUEST_PORT = 8080

pytestmark = pytest.mark.skipif(bool(netns.missing_tools()), reason=netns.missing_tools() or "runs")


@dataclass
class NetGuest:
    """The lab, the real guest on its bridge, and its NIC."""

    lab: netns.Lab
    guest: TestGuest
    net: guestkit.GuestNet
    file: Path

    def dom0(self, verb: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`dom0 -c qemu:///system publish VERB ARGS -f FILE` run inside the host's namespace."""
        argv = [*dom0_program(), "-c", URI, "publish", verb, *args, "-f", str(self.file)]
        environ = {k: v for k, v in os.environ.items() if k not in ("DOM0_CONNECT", "LIBVIRT_DEFAULT_URI")}
        proc = self.lab.run("host", *argv, check=False, env=environ, timeout=60)
        if check and proc.returncode != 0:
            pytest.fail(f"dom0 publish {verb} {' '.join(args)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}")
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc


def _net_guest(kit: guestkit.Kit, net: guestkit.GuestNet) -> TestGuest:
    """The definition of a guest of mode net whose NIC is the tap `net.tap`, written to its directory."""
    name = f"dom0test-{SESSION}-{_next_number()}"
    gdir = kit.work_dir / name
    shutil.rmtree(gdir, ignore_errors=True)
    gdir.mkdir(parents=True)
    gdir.chmod(0o755)
    uuid = str(uuidlib.uuid4())
    xml = guestkit.domain_xml(name=name, uuid=uuid, kit=kit, guest_dir=gdir, disks=[], mode="net", net=net)
    xml_path = gdir / "domain.xml"
    xml_path.write_text(xml)
    return TestGuest(name, uuid, xml, gdir / "console.log", [], gdir, xml_path, False, "net", [])


@pytest.fixture
def bridged(tmp_path: Path) -> Iterator[NetGuest]:
    reason = netns.missing_tools()
    if reason:
        pytest.skip(reason)
    kit = guestkit.build_kit(modules=guestkit.NET_MODULES)
    lab = netns.Lab(tmp_path)
    guest: TestGuest | None = None
    try:
        netns.build_publish_lab(lab)
        mac = "52:54:00:" + ":".join(secrets.token_hex(1) for _ in range(3))
        net = guestkit.GuestNet(f"dt{secrets.token_hex(4)}", mac, f"{GUEST_IP}/24", netns.BRIDGE_IP, GUEST_PORT)
        guest = _net_guest(kit, net)
        virsh("create", str(guest.xml_path))  # transient: destroying it in teardown leaves nothing defined
        # the tap is the one libvirt just made for this guest, by the unique name the test gave it
        run.run(["ip", "link", "set", net.tap, "netns", lab.ns("host")])
        lab.ip("host", "link", "set", net.tap, "master", "br0", "up")
        guest.wait_console(f"{guestkit.NET_UP} {GUEST_IP}", timeout=90)
        yield NetGuest(lab, guest, net, tmp_path / "publish.toml")
    finally:
        # the guest first: its tap goes with its QEMU, before the namespace holding it is deleted
        if guest is not None:
            _remove(guest)
        lab.close()


def test_outside_client_reaches_a_bridged_guest_found_by_its_mac(bridged: NetGuest) -> None:
    lab, name = bridged.lab, bridged.guest.name
    # the guest answers on its own address before anything is published
    assert lab.tcp("host", GUEST_IP, GUEST_PORT) == f"{name} {GUEST_PORT} {netns.BRIDGE_IP}"
    assert lab.tcp("outside", PUBLIC, 80) == "refused"

    bridged.dom0("add", f"{PUBLIC}:80", f"{name}:{GUEST_PORT}")
    listed = bridged.dom0("list").stdout
    [row] = [line for line in listed.splitlines() if f"{PUBLIC}:80" in line]
    assert f"{name}:{GUEST_PORT}" in row, listed
    assert f"{GUEST_IP} (neighbour)" in row, listed
    [entry] = json.loads(bridged.dom0("list", "--json").stdout)
    assert (entry["address"], entry["source"], entry["state"]) == (GUEST_IP, "neighbour", "not applied"), entry

    bridged.dom0("apply")
    # the guest saw the outside client's own address: nothing masqueraded it
    assert lab.tcp("outside", PUBLIC, 80) == f"{name} {GUEST_PORT} {CLIENT}"
    [checked] = json.loads(bridged.dom0("check", "--json").stdout)
    assert (checked["address"], checked["guest_result"], checked["public_result"]) == (
        f"{GUEST_IP}:{GUEST_PORT}",
        "answering",
        "answering",
    ), checked

    bridged.dom0("remove", f"{PUBLIC}:80")
    bridged.dom0("apply")
    assert lab.tcp("outside", PUBLIC, 80) == "refused"
    assert lab.tcp("host", GUEST_IP, GUEST_PORT) == f"{name} {GUEST_PORT} {netns.BRIDGE_IP}"
