"""The Xen lab: a Debian dom0 image with Xen 4.17 and libvirt, booted under QEMU software emulation.

The debootstrapped root is built once per recipe and cached under CACHE/<recipe hash>/root. Every run copies the
project's src/ and tests/xen/ into it (/opt/dom0) with the test guests' kernel and initramfs (/opt/dom0-guest)
and a bare-metal Debian 12 disk adapted for xen-pv (/opt/dom0-adapted, see stage_adapted_guest),
packs it with `mkfs.ext4 -d` (no mount), and boots one VM per backend side by side, each running dom0init
(beside this file) as dom0's init, which runs that backend's half of tests/xen/indom0. The results are read
back from each image's /outputs with debugfs.

Everything needs root (debootstrap, device nodes in the image); nothing is mounted on the host.
Run it alone with `make xen`, or `cd tests && ../.venv/bin/python -m xen.lab`.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dissect
import psutil

from dom0 import run
from integration import guestkit

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path(os.environ.get("DOM0_XENLAB_CACHE", "/var/cache/dom0-xenlab"))
WORK = Path(os.environ.get("DOM0_XENLAB_WORK", "/var/tmp/dom0-xenlab"))
SUITE = "bookworm"
# Bump when the steps that make the cached root change (the package list is hashed on its own).
RECIPE_VERSION = "1"
PACKAGES = (
    "xen-hypervisor-4.17-amd64",
    "xen-utils-4.17",
    "xen-utils-common",
    "xenstore-utils",
    "kmod",
    "procps",
    "iproute2",
    "util-linux",
    "mount",
    "busybox-static",
    "python3",
    "python3-libvirt",
    "python3-rich",
    "python3-pytest",
    "python3-pytest-timeout",
    "libvirt-daemon",
    "libvirt-daemon-driver-xen",
    "libvirt-clients",
    # dom0 save/restore compress the stream (zstd by default, lz4 as the fast choice)
    "python3-zstandard",
    "python3-cffi-backend",  # python3-zstandard needs it through a virtual package, which debootstrap cannot resolve
    "python3-lz4",
    # clone of a guest whose disks are LVs: a volume group on a loop device inside dom0 (Debian's kernel has
    # device-mapper, the CI host's does not)
    "lvm2",
)
# Modules the test guests load: Xen's block and network frontends (Debian builds both as modules), and ext4 for
# the clone and export procedures' guests, which mount their own root (guestkit's `identity` mode; ext4 wants crc32c
# by soft dependency, as in guestkit.IDENTITY_MODULES).
GUEST_MODULES = ("xen_blkfront", "xen_netfront", "crc32c_generic", "ext4")
# Xen asks a PV guest to power off through xenbus; its kernel then runs /sbin/poweroff. busybox's own poweroff
# only signals init, which the guest's shell-script init ignores, so this one powers off directly.
GUEST_POWEROFF = b"""#!/bin/sh
echo "dom0test: powering off" > /dev/console
sync
exec /bin/busybox poweroff -f
"""
# QEMU's emulation (TCG) has no VME and Xen hides SEP on AMD CPUs, so no CPU model in libvirt's map fits the
# emulated host and libvirt's libxl driver fails to start ("Cannot find suitable CPU model"); this minimal model,
# installed only into the lab's root, lets it describe the host. Real hardware has VME and needs none of this.
LIBVIRT_CPU_MODEL = """<cpus>
  <model name='xenlab-tcg'>
    <decode host='on' guest='off'/>
    <feature name='fpu'/>
    <feature name='pse'/>
  </model>
</cpus>
"""
# smap=0: under QEMU's emulation dom0 faults at its first instructions without it.
XEN_ARGS = "console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M dom0_max_vcpus=1 loglvl=all guest_loglvl=all smap=0"
DOM0_ARGS = "root=/dev/vda rw console=hvc0 earlyprintk=xen init=/dom0init"
IMAGE_SIZE = "3G"
# Boot (~60 s), one backend's half of the suite and the logs: the halves took 1250-1450 s on a quiet 2-core host, and
# CI's machine ran them ~1.2x slower; a half still running at the deadline (less COLLECT_SECONDS) reports nothing.
BOOT_TIMEOUT = float(os.environ.get("DOM0_XENLAB_TIMEOUT", "2400"))
COLLECT_SECONDS = 120  # dom0init's logs into /outputs and its power-off, after the suite's deadline

Log = Callable[[str], None]


@dataclass
class StageResult:
    """What one boot of the lab brought back."""

    rc: int | None  # the inner pytest's exit code; None when dom0 never wrote one
    output: str  # the inner pytest's output
    tests: int  # tests the inner run reported (junit), 0 when it ran none
    failed: list[str]  # names of inner tests that failed or errored
    qemu_timed_out: bool
    outputs: Path
    serial_logs: list[Path]
    timings: dict[str, float] = field(default_factory=dict)
    # each procedure test as "TAG: module::test outcome N s" (see PROCEDURE_MODULES)
    procedures: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)  # segfaults in dom0's kernel log: a sign of emulation trouble
    flaky: list[str] = field(default_factory=list)  # inner tests that failed once, then passed when run again
    halves: dict[str, Half] = field(default_factory=dict)  # each VM's part (the Xen lab's; one VM labs have none)

    @property
    def passed(self) -> bool:
        """The inner run finished, ran tests, and all of them passed."""
        return self.rc == 0 and self.tests > 0 and not self.failed and not self.qemu_timed_out


def kernel_version() -> str:
    """The newest Debian kernel in /boot: Xen's dom0 and the guests boot it."""
    return guestkit.host_kernel()[1]


def mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 .sources or a classic sources.list)."""
    if os.environ.get("MIRROR"):
        return os.environ["MIRROR"]
    candidates: list[str] = []
    for src in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        candidates += [ln.split()[1] for ln in src.read_text().splitlines() if ln.startswith("URIs:")]
    classic = Path("/etc/apt/sources.list")
    if classic.exists():
        candidates += [ln.split()[1] for ln in classic.read_text().splitlines() if ln.startswith("deb ")]
    for uri in candidates:
        if "security" not in uri:
            return uri
    raise RuntimeError("no Debian mirror in apt's sources; set MIRROR")


def recipe_key(kv: str, packages: tuple[str, ...] = PACKAGES) -> str:
    """The cache key of the debootstrapped root: suite, packages, recipe version, kernel version."""
    text = "\n".join([SUITE, RECIPE_VERSION, kv, *packages])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock: one lab build or boot at a time on this machine (each takes both CPUs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached_root(kv: str, log: Log, packages: tuple[str, ...] = PACKAGES, marker: str = "usr/sbin/xl") -> Path:
    """The debootstrapped root for this recipe (Xen's dom0 unless other `packages` are given, with `marker` a
    file they install), built now unless the cache has it."""
    base = CACHE / recipe_key(kv, packages)
    root = base / "root"
    if (root / marker).exists() and (base / "complete").exists():
        log(f"xenlab: cached dom0 root {root}")
        return root
    partial = CACHE / f"{base.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    log(f"xenlab: debootstrap {SUITE} into {partial} (a few minutes, once per recipe)")
    run.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", SUITE, str(partial / "root"), mirror()],
        timeout=1800,
    )
    (partial / "root/lib/modules").mkdir(parents=True, exist_ok=True)
    run.run(["cp", "-a", f"/lib/modules/{kv}", str(partial / "root/lib/modules/")])
    (partial / "complete").write_text(kv + "\n")
    shutil.rmtree(base, ignore_errors=True)
    partial.rename(base)
    return root


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"))


def stage_root(root: Path, kv: str, log: Log) -> None:
    """Put this run's project files, init script and guest kit into the root."""
    opt = root / "opt/dom0"
    shutil.rmtree(opt, ignore_errors=True)
    _copy_tree(REPO / "src", opt / "src")
    # Libraries Debian 12 does not package (dissect: the userspace filesystem readers) or that the cached root was
    # built without (psutil): the host venv's copies go along, beside src/ on the same PYTHONPATH. psutil's C part
    # is built for the stable ABI, which the root's Python 3.11 loads.
    for package in (Path(dissect.__path__[0]), Path(psutil.__file__).parent):
        _copy_tree(package, opt / "src" / package.name)
    _copy_tree(HERE, opt / "tests/xen")
    shutil.copy2(HERE / "dom0init", root / "dom0init")
    (root / "dom0init").chmod(0o755)
    kit = guestkit.build_kit(
        WORK / "guest",
        modules=GUEST_MODULES,
        extra=[("sbin", 0o040755, b""), ("sbin/poweroff", 0o100755, GUEST_POWEROFF)],
    )
    guest = root / "opt/dom0-guest"
    shutil.rmtree(guest, ignore_errors=True)
    guest.mkdir(parents=True)
    (guest / "vmlinux").write_bytes(uncompressed_kernel(kit.kernel))
    shutil.copy2(kit.initramfs, guest / "initramfs.cpio.gz")
    stage_adapted_guest(root, log)
    stage_identity_root(root, log)
    # libvirtd would fail to start for want of QEMU's user; the lab's libvirtd is for Xen only
    (root / "usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so").unlink(missing_ok=True)
    cpu_map = root / "usr/share/libvirt/cpu_map"
    (cpu_map / "x86_xenlab-tcg.xml").write_text(LIBVIRT_CPU_MODEL)
    index = (cpu_map / "index.xml").read_text()
    if "x86_xenlab-tcg.xml" not in index:
        anchor = "<include filename='x86_486.xml'/>"
        index = index.replace(anchor, f"{anchor}\n    <include filename='x86_xenlab-tcg.xml'/>")
        (cpu_map / "index.xml").write_text(index)
    # compiled here (same Python minor version as dom0's): every CLI call inside dom0 costs seconds under emulation
    run.run(["python3", "-m", "compileall", "-q", str(opt / "src"), str(opt / "tests")], timeout=300)
    shutil.rmtree(root / "outputs", ignore_errors=True)
    log(f"xenlab: staged the project, dom0init and the guest kit (kernel {kv}) into {root}")


# Where the P2V guest goes in the lab's root (read by indom0/test_adapt_xen.py).
ADAPTED = "opt/dom0-adapted"


def stage_adapted_guest(root: Path, log: Log) -> None:
    """A bare-metal Debian 12 disk (integration/bootimage.py) adapted here by the real `dom0 image adapt --for
    xen-pv`, with the kernel and initrd `dom0 image kernel` copied out of it, staged for dom0 to boot as a PV guest.

    What each command printed goes along in guest.json: the test inside dom0 checks it, so a refused adapt is a
    failed test there, not a lab that cannot start. Where the disk cannot be built here (no root, no debootstrap
    tree), guest.json says why and the test skips with that reason.
    """
    data = str(REPO / "tests/data")
    if data not in sys.path:  # `python -m xen.lab` runs without pytest's pythonpath, which bootimage needs
        sys.path.append(data)
    import ostrees

    from integration import bootimage

    dest = root / ADAPTED
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    why = bootimage.missing()
    if why:
        (dest / "guest.json").write_text(json.dumps({"missing": why}) + "\n")
        log(f"xenlab: no adapted P2V guest: {why}")
        return
    t0 = time.monotonic()
    work = WORK / "adapted"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    image = bootimage.copy_image(work / "disk.img")

    def dom0_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
        return run.run([sys.executable, "-m", "dom0", *args], check=False, timeout=300)

    adapt = dom0_cli("image", "adapt", str(image.path), "--for", "xen-pv")
    info: dict[str, object] = {
        "adapt_rc": adapt.returncode,
        "adapt_output": (adapt.stdout + adapt.stderr).decode(errors="replace"),
        "hostname": ostrees.DEBOOT_HOSTNAME,
        "root_uuid": image.root_uuid,
        "guest_ip": bootimage.GUEST_IP,
        "peer": f"{bootimage.PEER_IP}/{bootimage.PREFIX_LEN}",
    }
    kernel = dom0_cli("image", "kernel", str(image.path), "-o", str(work / "boot"), "--json")
    info["kernel_rc"] = kernel.returncode
    info["kernel_output"] = (kernel.stdout + kernel.stderr).decode(errors="replace")
    if adapt.returncode == 0 and kernel.returncode == 0:
        copied = json.loads(kernel.stdout)
        # what grub (or pygrub) would boot: the command line the adapted grub.cfg gives, read by debugfs
        entry = bootimage.grub_entry(bootimage.read_guest_file(image, "/boot/grub/grub.cfg"))
        info |= {"kernel": copied, "grub_cmdline": entry.cmdline}
        # uncompressed, as the lab's own guest kernel (see uncompressed_kernel)
        (dest / "vmlinux").write_bytes(uncompressed_kernel(Path(copied["kernel"]["path"])))
        shutil.copy2(copied["initrd"]["path"], dest / "initrd.img")
        run.run(["cp", "--sparse=always", str(image.path), str(dest / "disk.img")], timeout=300)
    (dest / "guest.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    log(f"xenlab: staged the bare-metal Debian 12 disk adapted for xen-pv ({time.monotonic() - t0:.0f} s)")


# The root filesystem of the clone and export procedures' guests (read by indom0/lvmlab.py), and its size: small,
# as everything those guests' LVs hold is copied under emulation.
IDENTITY_ROOT = "opt/dom0-identity/root.img"
IDENTITY_ROOT_MIB = 32
# The root UUID the Debian 12 tree's fstab names (ostrees.debian12)
IDENTITY_ROOT_UUID = "0b4e2a8c-1df3-4a4f-9a43-2a7c0a0e51c1"


def stage_identity_root(root: Path, log: Log) -> None:
    """An ext4 root for guests in guestkit's `identity` mode, built here (mkfs.ext4 -d, natively: seconds, where
    dom0 under emulation would take far longer): a Debian 12 tree (ostrees.debian12, so dom0 finds an OS whose
    identity it resets) made the `identity` guest's by guestkit.identity_tree (hostname source-vm, 10.0.0.2/24)."""
    data = str(REPO / "tests/data")
    if data not in sys.path:  # `python -m xen.lab` runs without pytest's pythonpath
        sys.path.append(data)
    import imagebuild
    import ostrees

    work = WORK / "identity"
    shutil.rmtree(work, ignore_errors=True)
    tree = guestkit.identity_tree(ostrees.debian12().build(work / "tree"))
    dest = root / IDENTITY_ROOT
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    imagebuild.mkfs("ext4", dest, IDENTITY_ROOT_MIB << 20, IDENTITY_ROOT_UUID, "root", tree=tree)
    shutil.rmtree(work, ignore_errors=True)
    log(f"xenlab: staged the identity guests' root filesystem ({IDENTITY_ROOT_MIB} MiB ext4) at /{IDENTITY_ROOT}")


def uncompressed_kernel(bzimage: Path) -> bytes:
    """The ELF kernel inside a Debian bzImage (its payload is xz-compressed).

    The guests boot it uncompressed: xz decompression inside dom0's domain builder takes many seconds under
    emulation, and it failed now and then there ("unable to XZ decompress kernel: Invalid kernel").
    """
    data = bzimage.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise RuntimeError(f"{bzimage}: no xz-compressed payload (not a Debian kernel?)")
    elf = lzma.LZMADecompressor().decompress(data[start:])
    if not elf.startswith(b"\x7fELF"):
        raise RuntimeError(f"{bzimage}: its payload is not an ELF kernel")
    return elf


def make_image(root: Path, work: Path) -> tuple[Path, Path]:
    """rootfs.img (ext4 made from the root directory, no mount) and the unpacked Xen hypervisor."""
    work.mkdir(parents=True, exist_ok=True)
    xen = work / "xen-4.17-amd64"
    xen.write_bytes(gzip.decompress((root / "boot/xen-4.17-amd64.gz").read_bytes()))
    image = work / "rootfs.img"
    image.unlink(missing_ok=True)
    run.run(["truncate", "-s", IMAGE_SIZE, str(image)])
    run.run(["mkfs.ext4", "-q", "-F", "-L", "dom0root", "-d", str(root), str(image)], timeout=600)
    return image, xen


# One lab VM per backend, booted side by side (each takes about one host CPU).
ALL_BACKENDS = {"xl": "xl://", "libvirt": "xen:///system"}
# While working on the lab: DOM0_XENLAB_BACKENDS=xl boots one VM only, and DOM0_XENLAB_TESTS=a.py,b.py::test_x runs
# only those tests of indom0/ (in the order given) instead of the whole suite. `make test` sets neither.
BACKENDS = {
    tag: uri
    for tag, uri in ALL_BACKENDS.items()
    if tag in (os.environ.get("DOM0_XENLAB_BACKENDS") or ",".join(ALL_BACKENDS)).split(",")
}
SELECTED_TESTS = os.environ.get("DOM0_XENLAB_TESTS", "")
# Test modules holding an administrator's whole procedure on Xen; the stage's summary lists each with its time.
PROCEDURE_MODULES = "test_procedure_"


def qemu_command(
    image: Path, xen: Path, kv: str, serial: Path, tag: str, *, tests: str = "", timeout: float = BOOT_TIMEOUT
) -> list[str]:
    """QEMU booting Xen (multiboot) with dom0's kernel and initrd as modules; dom0init runs the `tag` half, or only
    `tests` of it (DOM0_XENLAB_TESTS' form), ending it in time to collect its logs before the `timeout`."""
    deadline = int(timeout) - COLLECT_SECONDS
    dom0_args = f"{DOM0_ARGS} xenlab.tag={tag} xenlab.uri={ALL_BACKENDS[tag]} xenlab.deadline={deadline}"
    if tests:
        if any(c.isspace() for c in tests):
            raise ValueError(f"{tests!r}: comma-separated test paths without spaces")
        dom0_args += f" xenlab.tests={tests}"
    return [
        "qemu-system-x86_64",
        *("-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", "3072"),
        *("-display", "none", "-monitor", "none", "-no-reboot", "-serial", f"file:{serial}"),
        *("-kernel", str(xen), "-append", XEN_ARGS),
        # QEMU's multiboot -initrd separates modules with commas: one within a module's command line is doubled
        *("-initrd", f"/boot/vmlinuz-{kv} {dom0_args.replace(',', ',,')},/boot/initrd.img-{kv}"),
        # cache=unsafe: dom0's flushes (mkfs, LVM metadata, each save image's fsync) stay in the host's page cache;
        # the image is thrown away after its /outputs are read, so nothing is lost but time spent waiting on the disk
        *("-drive", f"file={image},if=virtio,format=raw,cache=unsafe"),
    ]


def boot_all(commands: dict[str, list[str]], work: Path, timeout: float) -> tuple[list[str], float]:
    """Run the QEMU commands side by side until each powers off; returns the tags killed at the deadline, secs."""
    start = time.monotonic()
    killed: list[str] = []
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        # Popen rather than dom0.run: the VMs run side by side for minutes and must be killed at the deadline
        for tag, cmd in commands.items():
            with (work / f"qemu-{tag}.log").open("wb") as out:
                procs[tag] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        for tag, proc in procs.items():
            try:
                proc.wait(timeout=max(1.0, start + timeout - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed.append(tag)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return killed, time.monotonic() - start


def read_outputs(image: Path, dest: Path) -> Path:
    """dom0's /outputs, copied out of the image with debugfs (no mount)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    run.run(["debugfs", "-R", f"rdump /outputs {dest}", str(image)], check=False, timeout=120)
    return dest / "outputs"


def junit_outcomes(path: Path) -> dict[str, str]:
    """Each test a junit XML file reports (classname::name) and how it ended: passed, failed or skipped."""
    if not path.exists():
        return {}
    outcomes: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            outcomes[name] = "failed"
        else:
            outcomes[name] = "skipped" if case.find("skipped") is not None else "passed"
    return outcomes


def junit_times(path: Path) -> dict[str, float]:
    """Each test a junit XML file reports (classname::name) and the seconds it took."""
    if not path.exists():
        return {}
    return {
        f"{case.get('classname', '')}::{case.get('name', '')}": float(case.get("time") or 0)
        for case in ET.parse(path).getroot().iter("testcase")
    }


def junit_summary(path: Path) -> tuple[int, list[str]]:
    """How many tests a junit XML file reports, and the names of those that failed or errored."""
    outcomes = junit_outcomes(path)
    return len(outcomes), [name for name, how in outcomes.items() if how == "failed"]


def run_stage(
    log: Log = print,
    timeout: float = BOOT_TIMEOUT,
    tests: dict[str, str] | None = None,
    deadline: float | None = None,
) -> StageResult:
    """Build (or reuse) the image, boot one lab VM per backend, run the Xen suite in each, bring results back.

    `tests` (backend tag -> DOM0_XENLAB_TESTS' form) boots only those backends' VMs, each running only those tests.
    `deadline` (time.monotonic()) shortens the boot's hard timeout to what is left then, ten minutes at the least."""
    halves = tests if tests is not None else {tag: SELECTED_TESTS for tag in BACKENDS}
    kv = kernel_version()
    with locked(WORK / "lock"):
        t0 = time.monotonic()
        root = cached_root(kv, log)
        t1 = time.monotonic()
        stage_root(root, kv, log)
        image, xen = make_image(root, WORK)
        if deadline is not None:  # after the root's build, which a cold cache makes long
            timeout = min(timeout, max(deadline - time.monotonic(), 600.0))
        commands: dict[str, list[str]] = {}
        for i, tag in enumerate(halves):
            vm = WORK / tag
            vm.mkdir(exist_ok=True)
            if i == len(halves) - 1:
                image.replace(vm / "rootfs.img")
            else:
                run.run(["cp", "--sparse=always", str(image), str(vm / "rootfs.img")], timeout=300)
            (vm / "serial.log").unlink(missing_ok=True)
            commands[tag] = qemu_command(
                vm / "rootfs.img", xen, kv, vm / "serial.log", tag, tests=halves[tag], timeout=timeout
            )
        t2 = time.monotonic()
        log(f"xenlab: booting {len(commands)} Xen 4.17 VMs under QEMU (hard timeout {timeout:g} s), logs in {WORK}")
        killed, boot_s = boot_all(commands, WORK, timeout)
        results = {tag: read_outputs(WORK / tag / "rootfs.img", WORK / tag / "results") for tag in halves}
    return _result(results, killed, {"root": t1 - t0, "image": t2 - t1, "boot": boot_s})


_SIGNAL_EXIT = re.compile(r"failed: exit code -(4|7|11)\b")
# The dynamic loader tripping over its own assertions: a Xen tool's libraries misread under emulation (seen once for
# every xl run of one boot; the other VM and the next boot were fine).
_LOADER_CRASH = "Inconsistency detected by ld.so"
# glibc's heap checks aborting a Xen tool ("corrupted double-linked list" from xl create, seen in one boot of three,
# the same config going through in the others): the tool's memory misread under emulation, as above.
_HEAP_CRASH = re.compile(r"corrupted double-linked list|double free or corruption|malloc\(\): |free\(\): invalid")


# A dom0 process killed by the kernel for a fault: "python3[1200] segfault at ..." or, as seen when a `dom0 save`
# exited -11 right after printing its result, "traps: python3[1200] general protection fault ip:...".
_KERNEL_TRAP = re.compile(r"\bsegfault at\b|^\[[ \d.]+\] traps: ")


def _emulation_trouble(line: str) -> bool:
    """Whether a line of the inner run shows a Xen tool crashing the way emulation makes them crash."""
    return bool(_SIGNAL_EXIT.search(line) or _LOADER_CRASH in line or _HEAP_CRASH.search(line))


@dataclass
class Half:
    """What one lab VM (one backend's half of the suite) brought back."""

    rc: int | None  # its inner pytest's exit code, None when it never wrote one
    text: str  # its inner pytest's output, headed by the backend
    outcomes: dict[str, str]  # each test (module::name) and how it ended, after any run again
    times: dict[str, float]  # each test's seconds in its first run
    failed: list[str]  # tests that failed (and failed again, where they were run again)
    crashes: list[str]  # signs of emulation trouble, "TAG: line"
    flaky: list[str]  # tests that failed, then passed when run again
    killed: bool = False  # QEMU hit its hard timeout


def _half(tag: str, outputs: Path, killed: bool) -> Half:
    """One VM's rc-TAG, pytest-TAG.txt and junit-TAG.xml (and the -again files of its failed tests' second run)."""
    rc_file = outputs / f"rc-{tag}"
    out = outputs / f"pytest-{tag}.txt"
    text = rc_file.read_text().strip() if rc_file.exists() else ""
    body = out.read_text(errors="replace") if out.exists() else ""
    early = outputs / "rc"
    if not text and early.exists():  # dom0init stopped before the suite (its codes are 90 and up)
        text = early.read_text().strip()
        timeline = outputs / "timeline.txt"
        body = "dom0init stopped early:\n" + (timeline.read_text() if timeline.exists() else "")
    texts = [f"----- {tag} ({ALL_BACKENDS[tag]}) -----\n{body or '(no output)'}"]
    crashes: list[str] = []
    dmesg = outputs / "logs" / "dom0-dmesg.txt"
    if dmesg.exists():
        kernel_log = dmesg.read_text(errors="replace").splitlines()
        crashes += [f"{tag}: {ln}" for ln in kernel_log if _KERNEL_TRAP.search(ln)]
    # A Xen tool killed by SIGSEGV/SIGBUS/SIGILL is not always in dom0's kernel log (rate limits), but the
    # inner run reports it as the tool's exit code: the same emulation trouble.
    crashes += [f"{tag}: {ln.strip()}" for ln in body.splitlines() if _emulation_trouble(ln)][:20]
    outcomes = junit_outcomes(outputs / f"junit-{tag}.xml")
    bad = [name for name, how in outcomes.items() if how == "failed"]
    flaky: list[str] = []
    again = outputs / f"pytest-{tag}-again.txt"
    if bad and again.exists():  # dom0init ran the failed tests once more (see there)
        texts.append(f"----- {tag}: the failed tests run again -----\n{again.read_text(errors='replace')}")
        second = junit_outcomes(outputs / f"junit-{tag}-again.xml")
        flaky = [name for name in bad if second.get(name) == "passed"]
        bad = [name for name in bad if second.get(name) != "passed"]
        outcomes |= {name: f"{how} when run again" for name, how in second.items()}
    return Half(
        rc=int(text) if text.lstrip("-").isdigit() else None,
        text="\n".join(texts),
        outcomes=outcomes,
        times=junit_times(outputs / f"junit-{tag}.xml"),
        failed=bad if outcomes else [f"{tag}: no tests ran"],
        crashes=crashes,
        flaky=flaky,
        killed=killed,
    )


def _combine(halves: dict[str, Half], timings: dict[str, float]) -> StageResult:
    """The stage's result from its halves."""
    procedures: list[str] = []
    for tag, half in halves.items():
        for name, how in half.outcomes.items():
            module, _, test = name.partition("::")
            if module.split(".")[-1].startswith(PROCEDURE_MODULES):
                seconds = half.times.get(name, 0)
                procedures.append(f"{tag}: {module.split('.')[-1]}::{test} {how} {seconds:.0f} s")
    rcs = [h.rc for h in halves.values()]
    known = [r for r in rcs if r is not None]
    rc = next((r for r in known if r != 0), 0) if rcs and len(known) == len(rcs) else None
    return StageResult(
        rc=rc,
        output="\n".join(h.text for h in halves.values()),
        tests=sum(len(h.outcomes) for h in halves.values()),
        failed=[name for h in halves.values() for name in h.failed],
        qemu_timed_out=any(h.killed for h in halves.values()),
        outputs=WORK,
        serial_logs=[WORK / tag / "serial.log" for tag in halves],
        timings=timings,
        crashes=[c for h in halves.values() for c in h.crashes],
        flaky=[name for h in halves.values() for name in h.flaky],
        procedures=procedures,
        halves=halves,
    )


def _result(results: dict[str, Path], killed: list[str], timings: dict[str, float]) -> StageResult:
    """Combine the VMs' halves of the inner run (rc-TAG, pytest-TAG.txt, junit-TAG.xml in each /outputs)."""
    return _combine({tag: _half(tag, outputs, tag in killed) for tag, outputs in results.items()}, timings)


def rerun_plan(result: StageResult) -> dict[str, tuple[str, float]]:
    """For a second boot after emulation trouble: each half with failed tests, what to run again (DOM0_XENLAB_TESTS'
    form) and how many seconds that took the first time.

    A procedure module runs again whole, its tests being one procedure's steps, each needing the one before; any
    other failed test runs by itself. A half that reported no tests (killed, or its pytest died) is not run again:
    only its whole suite could tell, and that is a whole stage's time."""
    plan: dict[str, tuple[str, float]] = {}
    for tag, half in result.halves.items():
        if not half.failed or not half.outcomes:
            continue
        picks: list[str] = []
        for name in half.failed:
            module, _, test = name.partition("::")
            pick = f"{module}.py" if module.startswith(PROCEDURE_MODULES) else f"{module}.py::{test}"
            picks += [pick] if pick not in picks else []
        seconds = 0.0
        for name, took in half.times.items():
            module, _, test = name.partition("::")
            seconds += took if f"{module}.py" in picks or f"{module}.py::{test}" in picks else 0.0
        plan[tag] = (",".join(picks), seconds)
    return plan


# A lab VM's boot to a ready toolstack (~60 s) with room for a slow one; and the most a second boot may take.
READY_SECONDS = 180
RERUN_TIMEOUT = 1200


def second_boot_timeout(plan: dict[str, tuple[str, float]], left: float) -> float | None:
    """The hard timeout of a second boot running `plan` (rerun_plan's): a boot, twice the tests' first-run time and
    the logs, at most RERUN_TIMEOUT and the `left` seconds of the run's budget; None when that leaves no room."""
    seconds = max((took for _, took in plan.values()), default=0.0)
    timeout = min(RERUN_TIMEOUT, READY_SECONDS + 2 * seconds + COLLECT_SECONDS, left)
    return timeout if timeout >= READY_SECONDS + COLLECT_SECONDS + 120 else None


def merged(first: StageResult, second: StageResult) -> StageResult:
    """The stage after a second boot ran some halves' failed tests again: a test that passed there is flaky, one
    that failed there too has failed; the halves not booted again stand as they were."""
    halves = dict(first.halves)
    for tag, again in second.halves.items():
        was = first.halves[tag]
        passed = [n for n in was.failed if again.outcomes.get(n, "").startswith("passed")]
        halves[tag] = Half(
            rc=again.rc,
            text=f"{was.text}\n----- {tag}: a second boot ran the failed tests again -----\n{again.text}",
            outcomes=was.outcomes | {n: f"{how} on a second boot" for n, how in again.outcomes.items()},
            times=was.times | again.times,
            # a failed test the second boot did not pass (or never reported) stays failed
            failed=[n for n in was.failed if n not in passed] + [n for n in again.failed if n not in was.failed],
            crashes=was.crashes + again.crashes,
            flaky=was.flaky + again.flaky + passed,
            killed=again.killed,
        )
    return _combine(halves, first.timings | {f"second {k}": v for k, v in second.timings.items()})


def main() -> int:
    """`python tests/xen/lab.py`: one stage run from the command line, for working on the lab itself."""
    result = run_stage()
    print(result.output)
    print(f"xenlab: rc={result.rc} tests={result.tests} failed={result.failed} timings={result.timings}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
