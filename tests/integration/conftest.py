"""Real QEMU guests through libvirtd at qemu:///system, and the real `dom0` command run against them.

Fixtures:
  guest_kit   (session) the kernel + busybox initramfs every guest boots (see guestkit.py)
  make_guest  factory: make_guest(memory_mib=128, vcpus=1, disks=1, swap=False, mode="idle", start=True,
              persistent=True, xen_names=False) -> TestGuest; a started guest is returned once it printed
              `dom0test ready`. Teardown destroys and undefines exactly the guests it made, and deletes their files.
  dom0        dom0(*args, input=None, timeout=120, check=True, env=None) -> CompletedProcess[str]: runs
              `.venv/bin/dom0 -c qemu:///system ARGS...` with stdin not a terminal.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest

from dom0 import run
from dom0.errors import CommandError

from . import guestkit

URI = "qemu:///system"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SESSION = secrets.token_hex(4)  # one per test run, so names never clash with another run's guests


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this directory as an integration test."""
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def virsh(*args: str, check: bool = True, timeout: float = 60) -> str:
    """Run virsh against qemu:///system: the harness's own, independent way to manage its guests."""
    proc = run.run(["virsh", "-q", "-c", URI, *args], check=check, timeout=timeout)
    return proc.stdout.decode(errors="replace")


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class TestGuest:
    """A guest the factory made: name (dom0test-...), uuid, definition XML, console log, disk images."""

    __test__ = False  # not a test class, despite the name

    name: str
    uuid: str
    xml: str
    console_log: Path
    disk_paths: list[Path]
    dir: Path
    xml_path: Path
    persistent: bool
    mode: str
    disk_targets: list[str]  # libvirt's target names, in the order of disk_paths
    swap_target: str = ""  # the target name of the swap disk, when there is one
    created_at: float = field(default_factory=time.monotonic)

    def console_text(self) -> str:
        """The console log so far ('' before the guest wrote anything)."""
        try:
            return self.console_log.read_text(errors="replace")
        except OSError:
            return ""

    def wait_console(self, text: str, timeout: float = 60, *, count: int = 1) -> str:
        """Poll the console log until `text` appears (`count` times); fail the test with the log's tail otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.console_text()
            if log.count(text) >= count:
                return log
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{self.name}: {text!r} did not appear {count}x on the console within {timeout:g} s; "
                    f"state {self.state()!r}; console log tail:\n{_tail(log)}"
                )
            time.sleep(0.25)

    def state(self) -> str:
        """The guest's state as virsh reports it ('' when libvirt no longer knows it)."""
        try:
            return virsh("domstate", self.name).strip()
        except CommandError:
            return ""

    def wait_state(self, wanted: str, timeout: float = 60) -> None:
        """Wait until virsh reports the state `wanted` ('shut off', 'running', 'paused', or '' for gone)."""
        deadline = time.monotonic() + timeout
        while (state := self.state()) != wanted:
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} is {state!r}, not {wanted!r}, after {timeout:g} s")
            time.sleep(0.25)


class MakeGuest(Protocol):
    """The make_guest factory's signature."""

    def __call__(
        self,
        *,
        memory_mib: int = 128,
        vcpus: int = 1,
        disks: int = 1,
        swap: bool = False,
        mode: str = "idle",
        start: bool = True,
        persistent: bool = True,
        xen_names: bool = False,
    ) -> TestGuest: ...


class Dom0(Protocol):
    """The dom0 fixture's signature."""

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = 120,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture(scope="session")
def guest_kit() -> guestkit.Kit:
    """Kernel and initramfs for every test guest; fails early and clearly when libvirtd cannot be reached."""
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (they run guests at qemu:///system); run `make test` as root")
    try:
        virsh("uri")
    except CommandError as exc:
        pytest.fail(f"libvirtd at {URI} does not answer ({exc}); run `make setup` (scripts/setup-host.sh)")
    return guestkit.build_kit()


@pytest.fixture
def make_guest(guest_kit: guestkit.Kit) -> Iterator[MakeGuest]:
    """Factory of real guests; teardown destroys and undefines exactly the guests it made."""
    made: list[TestGuest] = []

    def factory(
        *,
        memory_mib: int = 128,
        vcpus: int = 1,
        disks: int = 1,
        swap: bool = False,
        mode: str = "idle",
        start: bool = True,
        persistent: bool = True,
        xen_names: bool = False,
    ) -> TestGuest:
        if not start and not persistent:
            raise ValueError("a transient guest exists only while it runs: use start=True or persistent=True")
        name = f"dom0test-{SESSION}-{_next_number()}"
        gdir = guest_kit.work_dir / name
        shutil.rmtree(gdir, ignore_errors=True)
        gdir.mkdir(parents=True)
        gdir.chmod(0o755)
        paths = [guestkit.make_disk(gdir / f"disk{i}.img", 32) for i in range(disks)]
        if swap:
            paths.append(guestkit.make_disk(gdir / "swap.img", 256, swap=True))
        targets = guestkit.disk_targets(len(paths), xen_names=xen_names)
        uuid = str(uuidlib.uuid4())
        xml = guestkit.domain_xml(
            name=name,
            uuid=uuid,
            kit=guest_kit,
            guest_dir=gdir,
            disks=paths,
            memory_mib=memory_mib,
            vcpus=vcpus,
            mode=mode,
            swap=swap,
            xen_names=xen_names,
        )
        xml_path = gdir / "domain.xml"
        xml_path.write_text(xml)
        guest = TestGuest(
            name=name,
            uuid=uuid,
            xml=xml,
            console_log=gdir / "console.log",
            disk_paths=paths,
            dir=gdir,
            xml_path=xml_path,
            persistent=persistent,
            mode=mode,
            disk_targets=targets,
            swap_target=targets[-1] if swap else "",
        )
        made.append(guest)
        if persistent:
            virsh("define", str(xml_path))
            if start:
                virsh("start", name)
        else:
            virsh("create", str(xml_path))
        if start:
            guest.wait_console(guestkit.READY, timeout=120)
        return guest

    yield factory

    for guest in reversed(made):
        _remove(guest)


def _remove(guest: TestGuest) -> None:
    assert guest.name.startswith("dom0test-")
    # Only the exact UUID the factory gave it is removed, so a stranger's guest can never be hit.
    if guest.uuid in virsh("list", "--all", "--uuid", check=False).split():
        virsh("destroy", guest.uuid, check=False)
        virsh("undefine", guest.uuid, check=False)
    shutil.rmtree(guest.dir, ignore_errors=True)


_counter = 0


def _next_number() -> int:
    global _counter
    _counter += 1
    return _counter


def dom0_program() -> list[str]:
    """How to run this checkout's dom0 command."""
    for candidate in (Path(sys.executable).parent / "dom0", REPO / ".venv" / "bin" / "dom0"):
        if candidate.exists():
            return [str(candidate)]
    return [sys.executable, "-m", "dom0"]


@pytest.fixture
def dom0() -> Dom0:
    """Run the real dom0 CLI against qemu:///system; with check=True, fail the test on a non-zero exit."""
    program = dom0_program()

    def call(
        *args: str,
        input: str | None = None,
        timeout: float = 120,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if k not in ("DOM0_CONNECT", "LIBVIRT_DEFAULT_URI")}
        environ.update(env or {})
        proc = subprocess.run(
            [*program, "-c", URI, *args],
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environ,
            check=False,
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"dom0 {' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        return proc

    return call


_dom0_program = dom0_program  # the name the first version of this harness used; other tests import it
