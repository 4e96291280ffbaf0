"""`dom0 image adapt --for kvm` on a Debian 12 disk configured for bare metal, then the disk booted under QEMU.

The disk (bootimage.py) names its root /dev/sda1 and has no console= and no serial getty: booted as it is on a
virtio disk, its serial console stays silent. After `dom0 image adapt IMG --for kvm`, the same disk, booted with
the kernel, initrd and command line its own /boot/grub/grub.cfg now gives (what grub would boot), must show
systemd's `login:` prompt on ttyS0 and answer pings from a network namespace on its NIC's tap, which proves
systemd-networkd brought the network up. The unadapted copy is booted alongside, with the same hardware and
its own bare-metal command line, and must show no `login:` in the same time.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ostrees
import pytest

from dom0 import run

from . import bootimage, guestkit, netns
from .conftest import SESSION, Dom0, TestGuest, _next_number, _remove, virsh

GETTY_LINK = "/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"
LOGIN = f"{ostrees.DEBOOT_HOSTNAME} login:"
BOOT_TIMEOUT = 180  # s: a disk-booted Debian under software emulation needs 60-120 s here
PING_TIMEOUT = 30

pytestmark = pytest.mark.skipif(bool(bootimage.missing()), reason=bootimage.missing() or "runs")


@dataclass
class BootLab:
    """A namespace holding the guests' taps, and the transient guests started here (removed in teardown)."""

    lab: netns.Lab
    work_dir: Path
    guests: list[TestGuest] = field(default_factory=list)

    def new_dir(self) -> tuple[str, Path]:
        name = f"dom0test-{SESSION}-{_next_number()}"
        gdir = self.work_dir / name
        shutil.rmtree(gdir, ignore_errors=True)
        gdir.mkdir(parents=True)
        gdir.chmod(0o755)
        return name, gdir

    def boot(
        self, name: str, gdir: Path, *, disk: Path, kernel: Path, initrd: Path, cmdline: str, peer: str = ""
    ) -> TestGuest:
        """Start a transient guest booting `kernel` with `cmdline` from `disk`; its tap is moved into the lab
        (with the address `peer` on it, when given: the guest's neighbour on the wire)."""
        uuid = str(uuidlib.uuid4())
        tap = f"dt{secrets.token_hex(4)}"
        mac = "52:54:00:" + ":".join(secrets.token_hex(1) for _ in range(3))
        console_log = gdir / "console.log"
        xml = bootimage.domain_xml(
            name=name,
            uuid=uuid,
            disk=disk,
            kernel=kernel,
            initrd=initrd,
            cmdline=cmdline,
            console_log=console_log,
            tap=tap,
            mac=mac,
        )
        xml_path = gdir / "domain.xml"
        xml_path.write_text(xml)
        guest = TestGuest(name, uuid, xml, console_log, [disk], gdir, xml_path, False, "bare-metal", ["vda"])
        self.guests.append(guest)
        virsh("create", str(xml_path))  # transient: destroying it leaves nothing defined
        # the tap libvirt just made for this guest, by the unique name the test gave it
        run.run(["ip", "link", "set", tap, "netns", self.lab.ns("peer")])
        if peer:
            self.lab.ip("peer", "addr", "add", peer, "dev", tap)
        self.lab.ip("peer", "link", "set", tap, "up")
        return guest

    def ping(self, address: str) -> bool:
        proc = self.lab.run("peer", str(guestkit.BUSYBOX), "ping", "-c", "1", "-W", "1", address, check=False)
        return proc.returncode == 0


@pytest.fixture
def boot_lab(guest_kit: guestkit.Kit, tmp_path: Path) -> Iterator[BootLab]:
    lab = netns.Lab(tmp_path)
    booted = BootLab(lab, guest_kit.work_dir)
    try:
        lab.add("peer")
        yield booted
    finally:
        # the guests first: their taps go with their QEMU, before the namespace holding them is deleted
        for guest in reversed(booted.guests):
            _remove(guest)
        lab.close()


def _check_plan(plan: dict[str, object], uuid_root: str) -> None:
    """The plan enables the serial getty, names the root by UUID in fstab and grub.cfg, and adds console=ttyS0."""
    assert isinstance(plan["changes"], list), plan
    changes: dict[str, dict[str, object]] = {str(c["path"]): c for c in plan["changes"]}
    assert changes[GETTY_LINK]["action"] == "symlink", changes[GETTY_LINK]
    assert str(changes[GETTY_LINK]["after"]).endswith("/serial-getty@.service"), changes[GETTY_LINK]
    fstab_after = str(changes["/etc/fstab"]["after"])
    assert f"\n{uuid_root} " in fstab_after, fstab_after
    assert "/dev/sda1" not in fstab_after, fstab_after
    planned = bootimage.grub_entry(str(changes["/boot/grub/grub.cfg"]["after"])).cmdline.split()
    assert f"root={uuid_root}" in planned, planned
    assert "root=/dev/sda1" not in planned, planned
    assert any(arg.partition(",")[0] == "console=ttyS0" for arg in planned), planned


def test_bare_metal_debian_adapted_for_kvm_logs_in_on_ttyS0_with_its_network_up(dom0: Dom0, boot_lab: BootLab) -> None:
    name, gdir = boot_lab.new_dir()
    image = bootimage.copy_image(gdir / "disk.img")
    bare_name, bare_dir = boot_lab.new_dir()
    bare = bootimage.copy_image(bare_dir / "disk.img")
    bare_entry = bootimage.grub_entry(bootimage.read_guest_file(bare, "/boot/grub/grub.cfg"))
    assert bare_entry.cmdline == bootimage.BARE_CMDLINE  # what a physical server's grub.cfg says: no console=
    uuid_root = f"UUID={image.root_uuid}"

    # the dry run plans the console, the serial getty and the root by UUID, and leaves every byte as it was
    digest = bootimage.sha256(image.path)
    dry = dom0("image", "adapt", str(image.path), "--for", "kvm", "--dry-run", "--json")
    plan = json.loads(dry.stdout)
    assert plan["applied"] is False, plan
    _check_plan(plan, uuid_root)
    assert bootimage.sha256(image.path) == digest, "adapt --dry-run changed the image"

    done = dom0("image", "adapt", str(image.path), "--for", "kvm")
    assert "adapted" in done.stdout, done.stdout
    again = json.loads(dom0("image", "adapt", str(image.path), "--for", "kvm", "--json").stdout)
    assert again["changes"] == [], again

    # what grub would now boot, read from the image by debugfs, not by dom0
    entry = bootimage.grub_entry(bootimage.read_guest_file(image, "/boot/grub/grub.cfg"))
    assert (entry.kernel, entry.initrd) == (bare_entry.kernel, bare_entry.initrd)
    assert f"root={uuid_root}" in entry.cmdline.split(), entry
    assert "console=ttyS0" in entry.cmdline, entry
    fstab = bootimage.read_guest_file(image, "/etc/fstab")
    assert f"\n{uuid_root} " in fstab, fstab
    assert "/dev/sda1" not in fstab, fstab
    # the kernel and initrd grub names, copied out as an admin would for direct kernel boot
    copied = json.loads(dom0("image", "kernel", str(image.path), "-o", str(gdir / "boot"), "--json").stdout)
    assert (copied["kernel"]["guest"], copied["initrd"]["guest"]) == (entry.kernel, entry.initrd), copied
    kernel, initrd = Path(copied["kernel"]["path"]), Path(copied["initrd"]["path"])

    # both at once, with the same hardware: the unadapted disk gets its own bare-metal command line
    started = time.monotonic()
    before = boot_lab.boot(
        bare_name, bare_dir, disk=bare.path, kernel=kernel, initrd=initrd, cmdline=bare_entry.cmdline
    )
    peer = f"{bootimage.PEER_IP}/{bootimage.PREFIX_LEN}"
    after = boot_lab.boot(name, gdir, disk=image.path, kernel=kernel, initrd=initrd, cmdline=entry.cmdline, peer=peer)

    log = after.wait_console(LOGIN, timeout=BOOT_TIMEOUT)
    took = time.monotonic() - started
    assert f"{ostrees.DEBOOT_HOSTNAME} ttyS0" in log, log[-2000:]  # the banner of the getty on ttyS0
    deadline = time.monotonic() + PING_TIMEOUT
    while not boot_lab.ping(bootimage.GUEST_IP):
        if time.monotonic() > deadline:
            pytest.fail(
                f"{bootimage.GUEST_IP} did not answer pings within {PING_TIMEOUT} s of `login:`; "
                f"console tail:\n{after.console_text()[-2000:]}"
            )
        time.sleep(0.5)

    # the same disk unadapted, booted as long as the adapted one needed: still no login on the serial console
    assert before.state() == "running", before.state()
    assert time.monotonic() - started >= took
    assert "login:" not in before.console_text(), before.console_text()[-2000:]
