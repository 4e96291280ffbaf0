"""`make demo`: two small guests on the local hypervisor, then `dom0 list` and `dom0 list --long` on them.

    scripts/demo.py           create (or reuse) and start dom0demo-web and dom0demo-db, wait until they boot, list
    scripts/demo.py --clean   destroy and undefine exactly those two, and remove /var/lib/dom0-demo (make demo-clean)

The guests boot the host's Debian kernel with a busybox initramfs (software emulation, ~10 s) and are kept defined,
so `dom0 list --all` shows them until `make demo-clean`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The guest builder lives with the integration tests; src/ does not depend on it.
sys.path.insert(0, str(REPO / "tests" / "integration"))

import guestkit  # noqa: E402

from dom0 import run  # noqa: E402
from dom0.cli.main import main as dom0_main  # noqa: E402
from dom0.errors import CommandError  # noqa: E402

URI = "qemu:///system"
DEMO_DIR = Path("/var/lib/dom0-demo")


@dataclass(frozen=True)
class DemoGuest:
    """One demo guest's shape."""

    name: str
    memory_mib: int
    vcpus: int
    disk_mib: tuple[int, ...]


GUESTS = (
    DemoGuest("dom0demo-web", 128, 1, (64,)),
    DemoGuest("dom0demo-db", 160, 1, (64, 128)),
)


def virsh(*args: str, check: bool = True) -> str:
    """virsh against the local QEMU hypervisor."""
    proc = run.run(["virsh", "-q", "-c", URI, *args], check=check, timeout=120)
    return proc.stdout.decode(errors="replace").strip()


def defined(name: str) -> bool:
    """Whether libvirt knows a guest of that exact name."""
    return name in virsh("list", "--all", "--name").split()


def prepare(kit: guestkit.Kit, spec: DemoGuest) -> bool:
    """Define the guest (keeping its UUID when it exists) and start it; whether it was already running."""
    gdir = DEMO_DIR / spec.name
    gdir.mkdir(parents=True, exist_ok=True)
    gdir.chmod(0o755)
    if defined(spec.name) and virsh("domstate", spec.name) in ("running", "paused", "idle"):
        return True
    disks = []
    for i, size in enumerate(spec.disk_mib):
        path = gdir / f"disk{i}.img"
        disks.append(path if path.exists() else guestkit.make_disk(path, size))
    uuid = virsh("domuuid", spec.name) if defined(spec.name) else str(uuidlib.uuid4())
    xml = guestkit.domain_xml(
        name=spec.name,
        uuid=uuid,
        kit=kit,
        guest_dir=gdir,
        disks=disks,
        memory_mib=spec.memory_mib,
        vcpus=spec.vcpus,
    )
    xml_path = gdir / "domain.xml"
    xml_path.write_text(xml)
    # (re)defining refreshes the kernel and initramfs paths in case the artifacts were rebuilt
    virsh("define", str(xml_path))
    dom0("start", spec.name)
    return False


def dom0(*args: str) -> None:
    """Run a dom0 command in this process, as a user would type it; stop the demo if it fails."""
    print(f"\n$ dom0 {' '.join(args)}", flush=True)
    code = dom0_main(["-c", URI, *args])
    sys.stdout.flush()
    if code != 0:
        raise SystemExit(code)


def wait_booted(names: list[str], timeout: float = 240) -> None:
    """Wait until every guest printed its ready line on the serial console."""
    deadline = time.monotonic() + timeout
    waiting = list(names)
    while waiting:
        waiting = [n for n in waiting if not guestkit.console_has(DEMO_DIR / n / "console.log", guestkit.READY)]
        if waiting and time.monotonic() > deadline:
            raise SystemExit(f"demo: {', '.join(waiting)} did not boot within {timeout:g} s; see `dom0 dmesg NAME`")
        if waiting:
            time.sleep(0.5)


def demo() -> None:
    """Create or reuse the two guests, wait for them, and show them."""
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    DEMO_DIR.chmod(0o755)
    kit = guestkit.build_kit(DEMO_DIR)
    began = time.monotonic()
    for spec in GUESTS:
        if prepare(kit, spec):
            print(f"demo: {spec.name} already runs; reusing it")
    print("demo: waiting for the guests to boot (software emulation, ~10-20 s)...", flush=True)
    wait_booted([g.name for g in GUESTS])
    print(f"demo: both guests are up ({time.monotonic() - began:.0f} s)")
    dom0("list")
    dom0("list", "--long", "dom0demo-web")
    dom0("mem")
    print(
        "\nTry: dom0 top, dom0 plan, dom0 doctor, dom0 console dom0demo-web, dom0 shutdown --wait dom0demo-db."
        "  Remove: make demo-clean"
    )


def clean() -> None:
    """Destroy and undefine exactly the demo guests, then remove their files."""
    for spec in GUESTS:
        if not defined(spec.name):
            continue
        if virsh("domstate", spec.name) != "shut off":
            virsh("destroy", spec.name, check=False)
        virsh("undefine", spec.name)
        print(f"demo-clean: removed {spec.name}")
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    print(f"demo-clean: removed {DEMO_DIR}")


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clean", action="store_true", help="remove the demo guests and their files")
    args = parser.parse_args()
    try:
        if args.clean:
            clean()
        else:
            demo()
    except CommandError as exc:
        print(f"demo: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
