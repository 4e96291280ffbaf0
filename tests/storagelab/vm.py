"""The storage lab VM: tests/storagelab against real lvm2 and device-mapper, and bonds under bridges (the bond drill),
in a QEMU guest booting Debian's kernel.

The host's own kernel has no device-mapper and no bonding, so this boots the newest Debian kernel in /boot (with its
initrd) under QEMU's software emulation, on a root debootstrapped and cached by the Xen lab's code (tests/xen/lab.py)
with this lab's package list, plus one empty sparse disk that the tests make a volume group on. Every run copies the
project's src/ and tests/storagelab/ into the root (/opt/dom0), packs it with `mkfs.ext4 -d` (no mount), boots it
with `init` (beside this file) as its init, and reads /outputs back with debugfs.

Needs root. Run it alone with `make storagelab`, or `cd tests && ../.venv/bin/python -m storagelab.vm`.
"""

from __future__ import annotations

import os
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import dissect

from dom0 import run
from xen import lab

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORK = Path(os.environ.get("DOM0_STORAGELAB_WORK", "/var/tmp/dom0-storagelab"))
PACKAGES = (
    "lvm2",
    "thin-provisioning-tools",  # lvm2 checks a thin pool's metadata with thin_check when it activates it
    "udev",
    "kmod",
    "util-linux",
    "mount",
    "e2fsprogs",
    "procps",
    "qemu-utils",  # dom0.storage.probe asks qemu-img
    "python3",
    "python3-pytest",
    "python3-pytest-timeout",
    "python3-zstandard",
    "python3-cffi-backend",  # python3-zstandard needs it through a virtual package, which debootstrap cannot resolve
    # the bond drill (test_bond_drill.py): namespaces, a ping stream, and ifupdown with its bond and bridge scripts
    "iproute2",
    "iputils-ping",
    "ifupdown",
    "ifenslave",
    "bridge-utils",
    "python3-yaml",  # dom0 net check reads netplan's files with PyYAML
)
MARKER = "usr/sbin/lvcreate"  # a file the package list installs: the cached root is complete
# The host-side stage and this runner stay out of the image: inside, the directory is only the LVM tests.
HOST_ONLY = ("vm.py", "test_storagelab_stage.py", "init")
ROOT_SIZE = "2G"
SPARE_SIZE = "2G"
SPARE = "/dev/vdb"  # the second virtio disk
# 1 GiB: a guest booted from disk with Debian's initrd needs more than 512 MiB to unpack it and start.
MEMORY_MIB = 1024
KERNEL_ARGS = f"root=/dev/vda rw console=ttyS0 quiet noresume panic=-1 init=/storagelabinit storagelab.disk={SPARE}"
# boot, the suite's own limit (600 s in init: its 12 tests took ~417 s with the host loaded) and the logs
BOOT_TIMEOUT = float(os.environ.get("DOM0_STORAGELAB_TIMEOUT", "780"))


def stage_root(root: Path, log: lab.Log) -> None:
    """Put this run's src/, tests/storagelab/ and init script into the root."""
    opt = root / "opt/dom0"
    shutil.rmtree(opt, ignore_errors=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    shutil.copytree(REPO / "src", opt / "src", ignore=skip)
    # Debian has no dissect packages (the userspace filesystem readers the identity reset uses): they are pure
    # Python, so the host venv's copies go along, beside src/ on the same PYTHONPATH.
    shutil.copytree(Path(dissect.__path__[0]), opt / "src" / "dissect", ignore=skip)
    shutil.copytree(HERE, opt / "tests/storagelab", ignore=shutil.ignore_patterns(*HOST_ONLY, "__pycache__", "*.pyc"))
    shutil.copy2(HERE / "init", root / "storagelabinit")
    (root / "storagelabinit").chmod(0o755)
    # compiled here (same Python minor version as the root's): imports cost seconds under emulation
    run.run(["python3", "-m", "compileall", "-q", str(opt)], timeout=300)
    shutil.rmtree(root / "outputs", ignore_errors=True)
    log(f"storagelab: staged the project and its init into {root}")


def make_disks(root: Path, work: Path) -> tuple[Path, Path]:
    """rootfs.img (ext4 made from the root directory, no mount) and a new, empty, sparse spare disk."""
    work.mkdir(parents=True, exist_ok=True)
    image, spare = work / "rootfs.img", work / "spare.img"
    for path, size in ((image, ROOT_SIZE), (spare, SPARE_SIZE)):
        path.unlink(missing_ok=True)
        run.run(["truncate", "-s", size, str(path)])
    run.run(["mkfs.ext4", "-q", "-F", "-L", "labroot", "-d", str(root), str(image)], timeout=600)
    return image, spare


def qemu_command(image: Path, spare: Path, kv: str, serial: Path) -> list[str]:
    """QEMU booting Debian's kernel and initrd from /boot (no Xen) on the root image, with the spare disk second."""
    return [
        "qemu-system-x86_64",
        *("-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", str(MEMORY_MIB)),
        *("-display", "none", "-monitor", "none", "-no-reboot", "-serial", f"file:{serial}"),
        *("-kernel", f"/boot/vmlinuz-{kv}", "-initrd", f"/boot/initrd.img-{kv}", "-append", KERNEL_ARGS),
        *("-drive", f"file={image},if=virtio,format=raw"),
        *("-drive", f"file={spare},if=virtio,format=raw"),
    ]


def skipped_tests(junit: Path) -> list[str]:
    """The tests a junit XML file reports as skipped: inside the lab every test must really run."""
    if not junit.exists():
        return []
    cases = ET.parse(junit).getroot().iter("testcase")
    return [f"{c.get('classname', '')}::{c.get('name', '')}" for c in cases if c.find("skipped") is not None]


def run_stage(log: lab.Log = print, timeout: float = BOOT_TIMEOUT) -> tuple[lab.StageResult, list[str]]:
    """Build (or reuse) the root, boot the VM, run tests/storagelab inside; the result and the skipped tests."""
    kv = lab.kernel_version()
    if not Path(f"/boot/initrd.img-{kv}").exists():
        raise RuntimeError(f"no /boot/initrd.img-{kv}: the lab boots Debian's kernel with its initrd")
    with lab.locked(WORK / "lock"):
        t0 = time.monotonic()
        root = lab.cached_root(kv, log, PACKAGES, MARKER)
        t1 = time.monotonic()
        stage_root(root, log)
        image, spare = make_disks(root, WORK)
        serial = WORK / "serial.log"
        serial.unlink(missing_ok=True)
        t2 = time.monotonic()
        log(f"storagelab: booting Debian's kernel {kv} under QEMU (hard timeout {timeout:g} s), logs in {WORK}")
        killed, boot_s = lab.boot_all({"vm": qemu_command(image, spare, kv, serial)}, WORK, timeout)
        outputs = lab.read_outputs(image, WORK / "results")
    timings = {"root": t1 - t0, "image": t2 - t1, "boot+tests": boot_s}
    rc_text = (outputs / "rc").read_text().strip() if (outputs / "rc").exists() else ""
    pytest_out = outputs / "pytest.txt"
    output = pytest_out.read_text(errors="replace") if pytest_out.exists() else ""
    if not output and (outputs / "timeline.txt").exists():
        output = "the VM's init stopped before pytest:\n" + (outputs / "timeline.txt").read_text()
    tests, failed = lab.junit_summary(outputs / "junit.xml")
    result = lab.StageResult(
        rc=int(rc_text) if rc_text.lstrip("-").isdigit() else None,
        output=output,
        tests=tests,
        failed=failed,
        qemu_timed_out=bool(killed),
        outputs=outputs,
        serial_logs=[serial],
        timings=timings,
    )
    return result, skipped_tests(outputs / "junit.xml")


def main() -> int:
    """`python -m storagelab.vm`: one run from the command line, for working on the lab itself."""
    result, skipped = run_stage()
    print(result.output)
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in result.timings.items())
    print(f"storagelab: rc={result.rc} tests={result.tests} failed={result.failed} skipped={skipped}; {timings}")
    return 0 if result.passed and not skipped else 1


if __name__ == "__main__":
    raise SystemExit(main())
