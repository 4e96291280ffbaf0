"""`dom0 mem`, `dom0 mem set` and `dom0 doctor` on real QEMU guests.

The guests boot the busybox initramfs of guestkit with virtio_balloon loaded. One 384 MiB guest holds 100 MiB in
a tmpfs (`hog=100`) and prints its own MemTotal every 2 s (`meminfo`), so a balloon move shows in the guest's
/proc/meminfo; one 256 MiB guest has a disk holding a Debian root whose Apache allows 150 prefork workers; one
256 MiB guest without swap runs a process that grows until the guest kernel's OOM killer kills it. The first two
are booted once for the whole file (module scope), side by side, to keep the file within a few minutes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imagebuild
import pytest

from . import guestkit
from .conftest import SESSION, Dom0, MakeGuest, TestGuest, _next_number, _remove, virsh
from .test_control import _assert_one_line_error

MiB = 1024 * 1024
BIG_MIB = 384  # the balloon guest's maximum
HOG_MIB = 100  # what it holds in a tmpfs, so it reports well over 100 MiB as used
APACHE_WORKERS = 150
MEMINFO = re.compile(r"dom0test meminfo MemTotal=(\d+)")

APACHE_CONF = """\
# Debian's layout: modules and their settings are enabled by symlinks in mods-enabled
ServerRoot "/etc/apache2"
Timeout 300
KeepAlive On
IncludeOptional mods-enabled/*.load
IncludeOptional mods-enabled/*.conf
Include ports.conf
IncludeOptional sites-enabled/*.conf
"""
PREFORK_CONF = f"""\
# prefork MPM
<IfModule mpm_prefork_module>
\tStartServers\t\t\t 5
\tMinSpareServers\t\t  5
\tMaxSpareServers\t\t 10
\tMaxRequestWorkers\t  {APACHE_WORKERS}
\tMaxConnectionsPerChild   0
</IfModule>
"""
WORKER_CONF = """\
<IfModule mpm_worker_module>
\tStartServers\t\t\t 2
\tMaxRequestWorkers\t  4000
\tThreadsPerChild\t\t 25
</IfModule>
"""


@dataclass
class Guests:
    """The file's long-lived guests: `big` (balloon polled every 2 s, hog, meminfo) and `apache` (its disk)."""

    big: TestGuest
    apache: TestGuest


def _apache_root(tree: Path) -> Path:
    """A Debian 12 root holding Apache with mpm_prefork enabled (150 workers) and mpm_worker only available."""
    etc = tree / "etc"
    (etc / "apache2/mods-available").mkdir(parents=True)
    (etc / "apache2/mods-enabled").mkdir()
    (etc / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n')
    (etc / "debian_version").write_text("12.5\n")
    (etc / "hostname").write_text("web1\n")
    (etc / "apache2/apache2.conf").write_text(APACHE_CONF)
    (etc / "apache2/ports.conf").write_text("Listen 80\n")
    mods = etc / "apache2/mods-available"
    for mpm, conf in (("prefork", PREFORK_CONF), ("worker", WORKER_CONF)):
        (mods / f"mpm_{mpm}.load").write_text(
            f"LoadModule mpm_{mpm}_module /usr/lib/apache2/modules/mod_mpm_{mpm}.so\n"
        )
        (mods / f"mpm_{mpm}.conf").write_text(conf)
    for name in ("mpm_prefork.load", "mpm_prefork.conf"):
        (etc / "apache2/mods-enabled" / name).symlink_to(f"../mods-available/{name}")
    return tree


def _define_and_start(
    kit: guestkit.Kit, *, memory_mib: int, mode: str, stats_period_s: int, disk: Path | None
) -> TestGuest:
    """Define and start a guest (without waiting for it); its files live in its own directory under the kit's."""
    name = f"dom0test-{SESSION}-{_next_number()}"
    gdir = kit.work_dir / name
    shutil.rmtree(gdir, ignore_errors=True)
    gdir.mkdir(parents=True)
    gdir.chmod(0o755)
    if disk is None:
        disk = guestkit.make_disk(gdir / "disk0.img", 32)
    else:
        shutil.move(disk, gdir / "disk0.img")
        disk = gdir / "disk0.img"
        disk.chmod(0o666)
    uuid = str(uuidlib.uuid4())
    xml = guestkit.domain_xml(
        name=name, uuid=uuid, kit=kit, guest_dir=gdir, disks=[disk], memory_mib=memory_mib, mode=mode,
        stats_period_s=stats_period_s,
    )  # fmt: skip
    xml_path = gdir / "domain.xml"
    xml_path.write_text(xml)
    guest = TestGuest(
        name=name, uuid=uuid, xml=xml, console_log=gdir / "console.log", disk_paths=[disk], dir=gdir,
        xml_path=xml_path, persistent=True, mode=mode, disk_targets=["vda"],
    )  # fmt: skip
    virsh("define", str(xml_path))
    virsh("start", name)
    return guest


@pytest.fixture(scope="module")
def guests(guest_kit: guestkit.Kit, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guests]:
    """Boot the file's two long-lived guests side by side; remove exactly them afterwards."""
    scratch = tmp_path_factory.mktemp("apache")
    image = imagebuild.mkfs("ext4", scratch / "apache.img", 64 * MiB, str(uuidlib.uuid4()), "root",
                            tree=_apache_root(scratch / "tree"))  # fmt: skip
    made: list[TestGuest] = []
    try:
        made.append(_define_and_start(guest_kit, memory_mib=BIG_MIB, mode=f"idle,meminfo,hog={HOG_MIB}",
                                      stats_period_s=2, disk=None))  # fmt: skip
        # no stats period: `dom0 mem` turns it on and says so
        made.append(_define_and_start(guest_kit, memory_mib=256, mode="idle", stats_period_s=0, disk=image))
        for g in made:
            g.wait_console(guestkit.READY, timeout=180)
        made[0].wait_console(f"dom0test hog {HOG_MIB} MiB", timeout=5)
        yield Guests(big=made[0], apache=made[1])
    finally:
        for g in reversed(made):
            _remove(g)


def _mem(dom0: Dom0, *guests: TestGuest) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(dom0("mem", "--json", *(g.name for g in guests)).stdout)
    return report


def _row(report: dict[str, Any], guest: TestGuest) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [r for r in report["guests"] if r["name"] == guest.name]
    assert len(rows) == 1, report
    return rows[0]


def _mem_total_kib(guest: TestGuest) -> int:
    """The guest's latest MemTotal (KiB) as it printed it."""
    seen = MEMINFO.findall(guest.console_text())
    assert seen, guest.console_text()[-2000:]
    return int(seen[-1])


def _wait_mem_total(guest: TestGuest, near_kib: int, slack_kib: int, timeout: float = 60) -> int:
    """Wait until the guest prints a MemTotal within `slack_kib` of `near_kib`; the value."""
    deadline = time.monotonic() + timeout
    while True:
        total = _mem_total_kib(guest)
        if abs(total - near_kib) <= slack_kib:
            return total
        if time.monotonic() > deadline:
            pytest.fail(f"{guest.name}: MemTotal is {total} KiB, not within {slack_kib} KiB of {near_kib} KiB")
        time.sleep(1)


def _findings(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    found: list[dict[str, Any]] = doc["findings"] if isinstance(doc, dict) else doc
    return found


def _about(findings: list[dict[str, Any]], guest: TestGuest) -> list[dict[str, Any]]:
    return [f for f in findings if f.get("subject") == guest.name]


def test_a_guest_with_a_polled_balloon_shows_what_it_uses(guests: Guests, dom0: Dom0) -> None:
    big = guests.big
    report = _mem(dom0, big)
    row = _row(report, big)
    assert (row["max_mib"], row["current_mib"]) == (BIG_MIB, BIG_MIB), row
    assert isinstance(row["used_mib"], int), row
    assert isinstance(row["usable_mib"], int), row
    # it holds the hog, and what it can still use is the rest of its memory
    assert HOG_MIB < row["used_mib"] < BIG_MIB - 100, row
    assert 100 < row["usable_mib"] < BIG_MIB - HOG_MIB, row
    assert row["verdict"] == "ok", row
    assert row["host_rss_mib"] is not None, row
    assert row["host_rss_mib"] > HOG_MIB, row
    assert report["host"]["total_mib"] > 0
    assert report["host"]["committed_max_mib"] >= BIG_MIB
    assert not any(big.name in note for note in report["notes"]), report["notes"]  # its period was set already

    table = dom0("mem", big.name).stdout
    (line,) = [ln for ln in table.splitlines() if big.name in ln]
    assert " ok" in line, table
    assert str(BIG_MIB) in line, table


def test_a_balloon_nobody_polls_is_turned_on_and_said_so(guests: Guests, dom0: Dom0) -> None:
    apache = guests.apache
    # The driver reports once as it loads, period or not; dom0 takes a report older than 5 s for a stale one and
    # then reads the guest's live XML. Let the boot's report age past that first.
    time.sleep(6)
    first = _mem(dom0, apache)
    notes = [n for n in first["notes"] if apache.name in n]
    assert notes, first["notes"]
    assert "turned on memory statistics" in notes[0], first["notes"]
    deadline = time.monotonic() + 30
    while (row := _row(_mem(dom0, apache), apache))["used_mib"] is None:
        assert time.monotonic() < deadline, row
        time.sleep(1)
    assert isinstance(row["usable_mib"], int), row
    assert row["verdict"] == "ok", row


def test_mem_set_shrinks_and_grows_a_running_guest_and_its_own_meminfo_agrees(guests: Guests, dom0: Dom0) -> None:
    big = guests.big
    full_kib = _mem_total_kib(big)
    try:
        proc = dom0("mem", "set", big.name, "200M", timeout=90)
        assert big.name in proc.stdout, proc.stdout
        assert _row(_mem(dom0, big), big)["current_mib"] == 200
        # the balloon took 184 MiB from the guest kernel: its MemTotal drops by as much
        _wait_mem_total(big, full_kib - (BIG_MIB - 200) * 1024, slack_kib=4096)
    finally:
        dom0("mem", "set", big.name, f"{BIG_MIB}M", timeout=90)
    assert _row(_mem(dom0, big), big)["current_mib"] == BIG_MIB
    _wait_mem_total(big, full_kib, slack_kib=4096)


def test_mem_set_refuses_above_the_maximum_and_below_what_the_guest_uses(guests: Guests, dom0: Dom0) -> None:
    big = guests.big
    # what a user does first: `dom0 mem` shows the guest using its hog (a report from its first seconds may not)
    deadline = time.monotonic() + 30
    while (_row(_mem(dom0, big), big)["used_mib"] or 0) <= HOG_MIB:
        assert time.monotonic() < deadline, "the guest never reported its hog as used"
        time.sleep(1)

    above = dom0("mem", "set", big.name, "1G", check=False)
    _assert_one_line_error(above, 1, big.name)
    error, hint = above.stderr.splitlines()
    assert f"{BIG_MIB} MiB" in error, error  # the maximum it can have
    assert "maximum" in hint, hint
    assert "restart" in hint, hint  # how the maximum changes

    below = dom0("mem", "set", big.name, f"{HOG_MIB // 2}M", check=False)
    _assert_one_line_error(below, 1, big.name)
    error, hint = below.stderr.splitlines()
    used = re.search(r" uses (\d+) MiB", error)
    assert used, error
    assert HOG_MIB < int(used.group(1)) < BIG_MIB, error  # what its balloon driver reports, the hog included
    assert "--force" in hint, hint

    assert _row(_mem(dom0, big), big)["current_mib"] == BIG_MIB  # neither moved the balloon


def test_doctor_names_the_process_a_guest_kernel_killed_for_memory(make_guest: MakeGuest, dom0: Dom0) -> None:
    victim = make_guest(memory_mib=256, mode="oom")
    log = victim.wait_console("dom0test oom hog ended", timeout=120)
    assert re.search(r"Out of memory: Killed process \d+ \(tail\)", log), log[-3000:]
    assert victim.state() == "running"  # the guest lives on; only its console knows

    proc = dom0("doctor", "--json", victim.name, check=False)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    about = _about(_findings(proc), victim)
    oom = [f for f in about if "tail" in f["evidence"]]
    assert oom, about
    assert "1 OOM kill " in oom[0]["evidence"], oom[0]  # how many, and which process last
    assert oom[0]["severity"], oom[0]
    assert oom[0]["hint"], oom[0]


def test_doctor_flags_apache_allowing_more_workers_than_memory_holds(guests: Guests, dom0: Dom0) -> None:
    apache = guests.apache
    proc = dom0("doctor", "--json", apache.name, check=False)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    about = _about(_findings(proc), apache)
    workers = [f for f in about if str(APACHE_WORKERS) in f["evidence"]]
    assert workers, about
    finding = workers[0]
    assert "prefork" in finding["evidence"], finding
    assert "256 MiB" in finding["evidence"], finding
    # the number that fits in 256 MiB: fewer than 150, more than none, and the hint says to set it
    fits = re.search(r"about (\d+) fit", finding["evidence"])
    assert fits, finding
    assert 0 < int(fits.group(1)) < APACHE_WORKERS, finding
    assert f"MaxRequestWorkers to {fits.group(1)}" in finding["hint"], finding
    # mpm_worker is installed but not enabled: its 4000 workers are not this guest's problem
    assert not [f for f in about if "4000" in f["evidence"]], about

    table = dom0("doctor", apache.name, check=False)
    assert table.returncode == 1, table.stderr
    assert f"about {fits.group(1)} fit" in table.stdout, table.stdout


def test_doctor_flags_a_paused_guest(guests: Guests, dom0: Dom0) -> None:
    apache = guests.apache
    virsh("suspend", apache.name)
    try:
        proc = dom0("doctor", "--json", apache.name, check=False)
    finally:
        virsh("resume", apache.name)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    paused = [f for f in _about(_findings(proc), apache) if "paused" in f["evidence"]]
    assert paused, proc.stdout
    assert "resume" in paused[0]["hint"], paused[0]
