"""`dom0 dmesg` and `dom0 support-bundle` against a real running guest."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

from .conftest import Dom0, MakeGuest

KERNEL_LINE = re.compile(r"^\[\s*\d+\.\d+\] ", re.MULTILINE)


def test_dmesg_of_a_guest_shows_its_console_and_libvirt_log(make_guest: MakeGuest, dom0: Dom0) -> None:
    guest = make_guest()
    # The test guests boot with loglevel=4, so make the guest kernel log one message the console will show.
    dom0("console", guest.name, input="echo '<3>dom0test-kmsg hello' > /dev/kmsg\n", timeout=30)
    guest.wait_console("dom0test-kmsg hello")
    out = dom0("dmesg", guest.name).stdout
    assert f"# console log of {guest.name} ({guest.console_log})" in out
    assert f"# libvirt's log of {guest.name}" in out
    console_part = out.split("# libvirt's log")[0]
    assert "dom0test ready" in console_part
    assert re.search(r"^\[\s*\d+\.\d+\] dom0test-kmsg hello", console_part, re.MULTILINE)
    # libvirt's own log of the guest records how QEMU was started: the guest's kernel is on that line.
    libvirt_part = out.split("# libvirt's log")[1]
    assert "qemu-system" in libvirt_part
    assert guest.name in libvirt_part

    logs = json.loads(dom0("dmesg", guest.name, "--json").stdout)
    assert [log["source"].split(" (")[0] for log in logs] == [
        f"console log of {guest.name}",
        f"libvirt's log of {guest.name}",
    ]
    assert "dom0test ready" in logs[0]["text"]


def test_dmesg_of_the_host_says_which_log_it_shows(dom0: Dom0) -> None:
    out = dom0("dmesg").stdout
    first, _, rest = out.partition("\n")
    assert first.startswith("# dmesg: the host kernel's log")
    assert KERNEL_LINE.search(rest)
    as_json = json.loads(dom0("dmesg", "--json").stdout)
    assert as_json["source"].startswith("dmesg: the host kernel's log")
    assert KERNEL_LINE.search(as_json["text"])


def test_support_bundle_holds_a_real_guests_definition_and_logs(
    make_guest: MakeGuest, dom0: Dom0, tmp_path: Path
) -> None:
    guest = make_guest()
    target = tmp_path / "bundle.tar.gz"
    result = json.loads(dom0("support-bundle", "-o", str(target), "--json").stdout)
    assert result["path"] == str(target)
    assert result["bytes"] == target.stat().st_size
    with tarfile.open(target) as tar:
        names = tar.getnames()
        assert set(result["files"]) <= set(names)

        def text(member: str) -> str:
            f = tar.extractfile(f"bundle/{member}")
            assert f is not None, member
            return f.read().decode()

        assert f"<uuid>{guest.uuid}</uuid>" in text(f"guests/{guest.name}.xml")
        assert "dom0test ready" in text(f"logs/{guest.name}/console.log")
        assert guest.name in text(f"logs/{guest.name}/libvirt.log")
        assert KERNEL_LINE.search(text("host/dmesg.txt"))
        assert text("hypervisor.log").startswith("# dmesg: the host kernel's log")
        listed = {g["uuid"]: g for g in json.loads(text("guests.json"))}
        assert listed[guest.uuid]["name"] == guest.name
        assert listed[guest.uuid]["console_log"] == str(guest.console_log)
        assert f"logs/{guest.name}/console.log" in text("README.txt")
    assert not list(tmp_path.glob("*.partial"))
