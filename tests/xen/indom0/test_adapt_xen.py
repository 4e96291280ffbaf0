"""P2V to a Xen guest: a Debian 12 disk configured for bare metal, adapted by `dom0 image adapt --for xen-pv`, booted
as a PV guest by xl inside the lab's dom0 (the one running libvirtd, where the suite's other tests are fewer).

lab.stage_adapted_guest ran the adapt and `dom0 image kernel` on the host and staged the disk, the kernel (made
uncompressed) and initrd copied out of it, and what both commands printed. Here the guest boots with the command line
its own adapted grub.cfg gives, its disk as xvda and one vif on a bridge of its own, which holds dom0's address on
the guest's subnet. It must show systemd's `login:` on hvc0 (xenconsoled's log of its console) and answer dom0's
pings at its static address, which only a netfront NIC that systemd-networkd brought up can do.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .guests import BACKENDS, WORK, LabGuest, dom0, wait_until_gone, xl, xl_state

STAGED = Path("/opt/dom0-adapted")
NAME = "dom0test-xl-adapted"
MAC = "00:16:3e:d0:00:20"
BRIDGE = "adaptbr0"
BUSYBOX = "/bin/busybox"
# A disk-booted Debian under Xen under QEMU's emulation: `login:` after 161 s in the lab (2 host cores, both lab VMs
# running); the junit report records each boot's time.
BOOT_TIMEOUT = 300.0
PING_TIMEOUT = 60.0

# Adapting a guest edits its disk, whatever the toolstack: its boot is proven once, by xl, in the VM of the
# xen:///system half, whose other tests take ~4 minutes less than the xl:// half's (xl and libvirtd each leave the
# other's domains alone)
pytestmark = pytest.mark.skipif(
    "xen:///system" not in BACKENDS,
    reason="adapting a guest is backend-independent (it edits the disk): its boot is proven once, by xl, in the VM "
    "of the xen:///system half",
)


def _sh(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture
def staged() -> dict[str, Any]:
    """What the host staged (guest.json), the commands' outcomes checked first."""
    info: dict[str, Any] = json.loads((STAGED / "guest.json").read_text())
    if "missing" in info:
        pytest.skip(f"the host could not build the bare-metal disk: {info['missing']}")
    assert info["adapt_rc"] == 0, info["adapt_output"]
    assert info["kernel_rc"] == 0, info["kernel_output"]
    return info


@pytest.fixture
def bridge(staged: dict[str, Any]) -> Iterator[str]:
    """A bridge of the test's own with dom0's address on the guest's subnet (xenbr0 is the other tests')."""
    _sh("ip", "link", "del", BRIDGE, check=False)
    _sh("ip", "link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0")
    try:
        _sh("ip", "addr", "add", staged["peer"], "dev", BRIDGE)
        _sh("ip", "link", "set", BRIDGE, "up")
        yield BRIDGE
    finally:
        _sh("ip", "link", "del", BRIDGE, check=False)


def _xl_cfg(kernel: Path, initrd: Path, cmdline: str, disk: Path, bridge: str) -> str:
    return "\n".join(
        [
            f'name = "{NAME}"',
            'type = "pv"',
            f'kernel = "{kernel}"',
            f'ramdisk = "{initrd}"',
            f'extra = "{cmdline}"',
            "memory = 512",
            "vcpus = 1",
            f'disk = [ "format=raw, vdev=xvda, access=rw, backendtype=phy, target={disk}" ]',
            f'vif = [ "mac={MAC}, bridge={bridge}" ]',
            'on_poweroff = "destroy"',
            'on_reboot = "destroy"',
            'on_crash = "destroy"',
        ]
    )


def _ping(address: str) -> bool:
    return _sh(BUSYBOX, "ping", "-c", "1", "-W", "1", address, check=False, timeout=10).returncode == 0


@pytest.mark.timeout(BOOT_TIMEOUT + PING_TIMEOUT + 180)
def test_bare_metal_debian_adapted_for_xen_pv_logs_in_on_hvc0_with_netfront_up(
    staged: dict[str, Any], bridge: str, record_testsuite_property: Any
) -> None:
    # what `dom0 image adapt --for xen-pv` said it changed: a login on Xen's console, console= and the disk names
    said = staged["adapt_output"]
    assert "serial-getty@hvc0.service enabled" in said, said
    assert "console=hvc0 added" in said, said
    assert f"/dev/sda1 -> UUID={staged['root_uuid']}" in said, said
    assert re.search(r"^adapted \S+ for xen-pv: \d+ files changed$", said, re.M), said
    cmdline = staged["grub_cmdline"]
    args = cmdline.split()
    assert "console=hvc0" in args, cmdline
    assert f"root=UUID={staged['root_uuid']}" in args, cmdline
    # `dom0 image kernel` names the same root
    assert staged["kernel"]["root"] == f"UUID={staged['root_uuid']}", staged["kernel"]

    WORK.mkdir(parents=True, exist_ok=True)
    cfg = WORK / f"{NAME}.cfg"
    g = LabGuest(NAME, "pv", "xl://", MAC, STAGED / "disk.img", cfg)
    if xl_state(NAME) is not None:
        xl("destroy", NAME, check=False)
    g.console_log.unlink(missing_ok=True)
    cfg.write_text(_xl_cfg(STAGED / "vmlinux", STAGED / "initrd.img", cmdline, g.disk, bridge) + "\n")
    try:
        started = time.monotonic()
        xl("create", str(cfg), timeout=180)
        g.wait_for_console("login:", timeout=BOOT_TIMEOUT)
        booted = time.monotonic() - started
        console = g.console_text()
        # the getty's banner names the tty: the login is on Xen's console, hvc0
        assert f"{staged['hostname']} hvc0" in console, console[-2000:]
        deadline = time.monotonic() + PING_TIMEOUT
        while not _ping(staged["guest_ip"]):
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{staged['guest_ip']} did not answer dom0's pings within {PING_TIMEOUT:g} s of `login:`; "
                    f"xl network-list:\n{xl('network-list', NAME, check=False)}\nconsole tail:\n{console[-2000:]}"
                )
            time.sleep(1)
        # Xen's view of the same NIC: its frontend connected (xenbus state 4), which is xen-netfront's doing
        vifs = [line.split() for line in xl("network-list", NAME).splitlines()[1:] if line.strip()]
        assert [(v[2].lower(), v[4]) for v in vifs] == [(MAC, "4")], vifs
        # in the junit report (its test suite's properties): how long the boot takes under emulation
        record_testsuite_property("adapted_pv_login_seconds", round(booted))
        record_testsuite_property("adapted_pv_ping_seconds", round(time.monotonic() - started))
        _check_inspected_while_running(staged)
    finally:
        if xl_state(NAME) is not None:
            xl("destroy", NAME, check=False)
        wait_until_gone(NAME, 60)
        cfg.unlink(missing_ok=True)


def _check_inspected_while_running(staged: dict[str, Any]) -> None:
    """`dom0 image inspect GUEST` through xl: the running PV guest's disk read under it, its row as Xen sees it."""
    started = time.monotonic()
    report = json.loads(dom0("xl://", "image", "inspect", NAME, "--json").stdout)
    took = time.monotonic() - started
    assert report["error"] is None, report
    assert report["hypervisor"] == "xen-pv"
    row = report["row"]
    assert (row["distro"], row["version"]) == ("debian", "12"), row
    assert row["packages"] == "apt"
    assert row["console"] == "yes", row  # adapted: a login on hvc0
    assert row["hostname"] == staged["hostname"]
    # it boots the kernel copied out of its own /boot (an uncompressed ELF here: read from its banner)
    assert row["boots"] == staged["kernel"]["version"], row
    assert row["kernel"] == staged["kernel"]["version"], row
    # systemd has its root mounted read-write: the journal is never clean while it runs, and dom0 says so
    assert any("read while running" in n for n in report["notes"]), report["notes"]
    assert xl_state(NAME) is not None  # still there, untouched
    assert took < 60, f"inspect took {took:.1f} s"
