"""Tiny real guests for tests and the demo: the host's Debian kernel, a busybox initramfs, libvirt domain XML.

The guest's /init reads `dom0test.mode=MODE` from the kernel command line (a comma list):
  idle    prints `dom0test ready`, then `tick N` every 5 s; a root shell runs on the serial console
  swap    like idle, plus swapon of the swap disk and a loop that keeps paging
  diskio  like idle, plus a loop that keeps reading and writing vda
  diskping  like idle, plus one 4 KiB synced write to the data disk each second (cheap under emulation)
  noacpi  ignore the ACPI power button (so an orderly shutdown never completes)
  identity  mounts the data disk (ext4) read-only and prints `dom0test identity hostname=H ip=A mac=M
            machine-id=ID` from the guest's own /etc/hostname, /etc/network/interfaces and NIC (needs IDENTITY_MODULES)
  rootrw  mounts the data disk (ext4) read-write, prints `dom0test rootrw mounted` and rewrites
          /var/tmp/dom0test-beat every second (needs IDENTITY_MODULES)
  memfill  before `ready`: copy the whole data disk into a tmpfs and drop the caches, so the guest's RAM holds
          real non-zero data (use with build_data_disk()); prints `dom0test memfill done BYTES`, then like idle
  hog=N   before `ready`: hold N MiB in a tmpfs (not reclaimable without swap, so the guest steadily uses it);
          prints `dom0test hog N MiB`
  meminfo  prints `dom0test meminfo MemTotal=KIB` every 2 s (what the guest kernel has after the balloon moved)
  net     configures eth0 from dom0test.ip=ADDR/PREFIX and dom0test.gw=GW (see GuestNet), pings the gateway until it
          answers (so the host's neighbour table holds the guest's MAC and address: nothing else would tell a host
          about a guest on a plain bridge), serves TCP dom0test.port answering each connection with one line
          `NAME PORT CLIENT_IP` (as tests/integration/netns.py's servers do), and prints `dom0test net up ADDR`
          (or `dom0test net FAILED ...`); needs NET_MODULES
  oom     after `ready`, with no swap: a `tail` buffering /dev/zero grows until the guest kernel's OOM killer
          kills it ("Out of memory: Killed process N (tail)" on the console); prints `dom0test oom hog ended`
Without `noacpi`, a power-button press powers the guest off cleanly.

This module imports only the standard library and dom0.run, so scripts/demo.py can use it too.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from dom0 import run

WORK_DIR = Path("/var/tmp/dom0-tests")
BUSYBOX = Path("/bin/busybox")
READY = "dom0test ready"

# Modules the guest loads (Debian builds these as modules); their dependencies are added from modules.dep.
# virtio_balloon lets the host move the guest's memory and read its own statistics (dom0 mem).
MODULES = ("virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "evdev", "button", "virtio_balloon")
# A guest that reads its own root filesystem and NIC (mode identity).
IDENTITY_MODULES = (*MODULES, "crc32c_generic", "ext4", "virtio_net")  # ext4 wants crc32c by soft dependency
# A guest on a network (mode net).
NET_MODULES = (*MODULES, "virtio_net")
NET_UP = "dom0test net up"

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp /mnt /etc/acpi/PWRF
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo -1000 > /proc/self/oom_score_adj
for m in $(cat /modules.order); do insmod "/lib/modules/$m" 2>/dev/null; done
arg() { sed -n "s/.*dom0test\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
mode=$(arg mode)
swapdev=$(arg swap)
datadev=$(arg data)
has() { case ",$mode," in *",$1,"*) return 0;; esac; return 1; }
# the value of a mode entry NAME=VALUE ('' without one)
val() { echo ",$mode," | sed -n "s/.*,$1=\([^,]*\),.*/\1/p"; }
# disks appear asynchronously (SCSI scans in the background)
for dev in $datadev $swapdev; do
  i=0
  while [ ! -b "/dev/$dev" ] && [ $i -lt 40 ]; do sleep 0.25; i=$((i + 1)); done
done
if ! has noacpi; then
  printf '#!/bin/sh\necho "dom0test power button: powering off" > /dev/console\nsync\npoweroff -f\n' \
    > /etc/acpi/PWRF/00000080
  chmod +x /etc/acpi/PWRF/00000080
  acpid -c /etc/acpi -l /tmp/acpid.log
fi
if has swap && [ -n "$swapdev" ]; then
  # fill a tmpfs beyond RAM only once swap is on: without it the OOM killer would have nothing to free
  if swapon "/dev/$swapdev"; then
    echo "dom0test swap on /dev/$swapdev"
    mount -t tmpfs -o size=100% fill /mnt
    mem=$(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo)
    (
      dd if=/dev/zero of=/mnt/fill bs=1024 count=$((mem + mem / 4)) 2>/dev/null
      while :; do cat /mnt/fill > /dev/null; done
    ) &
  else
    echo "dom0test swap FAILED on /dev/$swapdev"
  fi
fi
if has diskio && [ -b "/dev/$datadev" ]; then
  (
    while :; do
      dd if=/dev/zero of="/dev/$datadev" bs=65536 count=64 conv=fsync 2>/dev/null
      echo 3 > /proc/sys/vm/drop_caches
      dd if="/dev/$datadev" of=/dev/null bs=65536 count=64 2>/dev/null
      sleep 1
    done
  ) &
fi
if has diskping && [ -b "/dev/$datadev" ]; then
  ( while :; do dd if=/dev/zero of="/dev/$datadev" bs=4096 count=1 conv=fsync 2>/dev/null; sleep 1; done ) &
fi
if has memfill; then
  # the tmpfs copy stays in RAM; dropping the caches frees the block device's page cache so the copy is what's left
  if [ -b "/dev/$datadev" ] && mkdir -p /run/fill && mount -t tmpfs -o size=90% fill /run/fill \
      && cat "/dev/$datadev" > /run/fill/data; then
    sync
    echo 3 > /proc/sys/vm/drop_caches
    echo "dom0test memfill done $(stat -c %s /run/fill/data)"
  else
    echo "dom0test memfill FAILED on /dev/$datadev"
  fi
fi
if has identity && [ -b "/dev/$datadev" ]; then
  # what a real boot of the guest's own configuration would apply: its hostname, its static IP, the NIC's MAC
  mkdir -p /root && mount -t ext4 -o ro "/dev/$datadev" /root
  hostname "$(cat /root/etc/hostname)"
  addr=$(sed -n 's/^[[:space:]]*address[[:space:]]*\([^[:space:]]*\).*/\1/p' /root/etc/network/interfaces | head -n 1)
  [ -n "$addr" ] && ip addr add "$addr" dev eth0 2>/dev/null
  ip link set eth0 up 2>/dev/null
  echo "dom0test identity hostname=$(hostname) ip=$(ip -o -4 addr show dev eth0 | awk '{print $4}') \
mac=$(cat /sys/class/net/eth0/address) machine-id=$(cat /root/etc/machine-id)"
  umount /root
fi
if has rootrw && [ -b "/dev/$datadev" ]; then
  # a guest at work on its own filesystem: mounted read-write, a file rewritten every second, so the journal is
  # never quiet and the on-disk state is whatever the guest kernel last wrote back
  mkdir -p /root && mount -t ext4 "/dev/$datadev" /root && echo "dom0test rootrw mounted"
  ( n=0; while :; do n=$((n + 1)); echo "$n" > /root/var/tmp/dom0test-beat; sleep 1; done ) &
fi
hog=$(val hog)
if [ -n "$hog" ]; then
  # tmpfs pages stay put without swap: neither reclaim nor the balloon can take them back
  mkdir -p /run/hog && mount -t tmpfs -o size=$((hog + 1))m hog /run/hog \
    && dd if=/dev/zero of=/run/hog/data bs=1048576 count="$hog" 2>/dev/null \
    && echo "dom0test hog $hog MiB"
fi
if has meminfo; then
  ( while :; do
      echo "dom0test meminfo $(sed -n 's/^MemTotal: *\([0-9]*\).*/MemTotal=\1/p' /proc/meminfo)"
      sleep 2
    done ) &
fi
if has net; then
  # busybox nc hands each accepted connection to this script as its stdin; the client's address is found by the
  # socket's inode in the kernel's TCP tables (nc listens on IPv6's any address, so IPv4 clients are in tcp6 as
  # ::ffff:a.b.c.d, whose last 8 hex digits are the IPv4 address as /proc/net/tcp prints it: little-endian)
  cat > /bin/dom0test-answer <<'EOF'
#!/bin/busybox sh
ino=$(readlink /proc/self/fd/0 | sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p')
rem=$(awk -v i="$ino" '$10 == i { print $3; exit }' /proc/net/tcp /proc/net/tcp6)
h=${rem%:*}
h=${h:$((${#h} - 8))}
echo "$DOM0TEST_NAME $DOM0TEST_PORT $((0x${h:6:2})).$((0x${h:4:2})).$((0x${h:2:2})).$((0x${h:0:2}))"
EOF
  chmod +x /bin/dom0test-answer
  (
    addr=$(arg ip)
    gw=$(arg gw)
    export DOM0TEST_NAME="$(arg name)" DOM0TEST_PORT="$(arg port)"
    [ -n "$DOM0TEST_NAME" ] && hostname "$DOM0TEST_NAME"
    ip link set lo up
    ip link set eth0 up && ip addr add "$addr" dev eth0 && ip route add default via "$gw" \
      || echo "dom0test net FAILED to configure eth0 with $addr via $gw"
    # the test moves the host end of the NIC into its namespace only once the guest runs: ask until it is there
    i=0
    until ping -c 1 -W 1 "$gw" > /dev/null 2>&1; do
      i=$((i + 1))
      [ $i -ge 90 ] && { echo "dom0test net FAILED: no answer from $gw"; exit 1; }
      sleep 0.5
    done
    nc -ll -p "$DOM0TEST_PORT" -e /bin/dom0test-answer &
    echo "dom0test net up ${addr%/*}"
  ) &
fi
( while :; do setsid cttyhack sh -l; sleep 1; done ) &
echo "dom0test ready mode=$mode"
if has oom; then
  # Always overcommit, so tail's growing buffer is granted and the OOM killer (not a failed malloc) ends it;
  # everything else inherits /init's -1000, the growing tail asks to be the one killed.
  echo 1 > /proc/sys/vm/overcommit_memory
  ( sh -c 'echo 1000 > /proc/self/oom_score_adj; cat /dev/zero | tail > /dev/null'; echo "dom0test oom hog ended" ) &
fi
n=0
while :; do
  sleep 5
  n=$((n + 1))
  echo "tick $n"
done
"""


@dataclass(frozen=True, slots=True)
class Kit:
    """What every test guest boots: a kernel and an initramfs, readable by the libvirt-qemu user."""

    kernel: Path
    initramfs: Path
    work_dir: Path


def host_kernel() -> tuple[Path, str]:
    """The newest Debian kernel in /boot and its version (the host itself may run another kernel)."""
    kernels = sorted(Path("/boot").glob("vmlinuz-*"))
    if not kernels:
        raise RuntimeError("no /boot/vmlinuz-*: install linux-image-amd64 (make setup does)")
    kernel = kernels[-1]
    return kernel, kernel.name.removeprefix("vmlinuz-")


def module_closure(moddir: Path, names: tuple[str, ...]) -> list[str]:
    """The modules `names` need, dependencies first, as paths relative to `moddir` (from its modules.dep)."""
    deps: dict[str, list[str]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    by_name = {Path(m).name.removesuffix(".ko").replace("-", "_"): m for m in deps}
    order: list[str] = []

    def visit(mod: str) -> None:
        if mod in order:
            return
        for dep in reversed(deps.get(mod, [])):
            visit(dep)
        order.append(mod)

    for name in names:
        if name in by_name:  # built into this kernel otherwise
            visit(by_name[name])
    return order


def _newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio archive in the 'newc' format: (path, mode, data) per entry; dev/console becomes the device 5:1."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        rdev = (5, 1) if name == "dev/console" else (0, 0)
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, *rdev, len(encoded), 0)
        out.extend(b"070701" + b"".join(b"%08x" % f for f in fields) + encoded)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))
    return bytes(out)


def build_kit(
    work_dir: Path = WORK_DIR,
    *,
    modules: tuple[str, ...] = MODULES,
    extra: Sequence[tuple[str, int, bytes]] = (),
) -> Kit:
    """Copy the kernel and build the initramfs into `work_dir`, reusing earlier builds with the same inputs.

    `modules` are the kernel modules the guest loads (QEMU's virtio ones by default; Xen guests want
    xen_blkfront and xen_netfront); `extra` adds (path, mode, data) entries to the initramfs.
    """
    kernel_src, version = host_kernel()
    work_dir.mkdir(parents=True, exist_ok=True)
    work_dir.chmod(0o755)
    moddir = Path("/lib/modules") / version
    module_paths = [moddir / m for m in module_closure(moddir, modules)]
    key = hashlib.sha256()
    key.update(INIT.encode())
    key.update(version.encode())
    key.update(BUSYBOX.read_bytes())
    for m in module_paths:
        key.update(m.read_bytes())
    for path, mode, data in extra:
        key.update(f"{path}:{mode}:".encode() + data)
    digest = key.hexdigest()[:16]

    # libvirt relabels the kernel it boots; a private copy keeps /boot untouched.
    kernel = work_dir / f"vmlinuz-{version}"
    if not kernel.exists() or kernel.stat().st_size != kernel_src.stat().st_size:
        _atomic_write(kernel, kernel_src.read_bytes())
    initramfs = work_dir / f"initramfs-{digest}.cpio.gz"
    if not initramfs.exists():
        entries: list[tuple[str, int, bytes]] = [
            (d, 0o040755, b"") for d in ("bin", "dev", "proc", "sys", "tmp", "mnt", "etc", "lib", "lib/modules")
        ]
        entries.append(("bin/busybox", 0o100755, BUSYBOX.read_bytes()))
        entries.append(("init", 0o100755, INIT.encode()))
        entries.append(("modules.order", 0o100644, "".join(f"{m.name}\n" for m in module_paths).encode()))
        entries += [(f"lib/modules/{m.name}", 0o100644, m.read_bytes()) for m in module_paths]
        entries += list(extra)
        # /dev/console must exist before devtmpfs is mounted, or init starts without stdout.
        entries.append(("dev/console", 0o020600, b""))
        _atomic_write(initramfs, gzip.compress(_newc(entries), compresslevel=6))
    for p in (kernel, initramfs):
        p.chmod(0o644)
    return Kit(kernel=kernel, initramfs=initramfs, work_dir=work_dir)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def make_disk(path: Path, size_mib: int, *, swap: bool = False) -> Path:
    """A sparse raw disk image; with `swap`, it carries a swap signature."""
    with path.open("wb") as f:
        f.truncate(size_mib * 1024 * 1024)
    path.chmod(0o666)
    if swap:
        mkswap = shutil.which("mkswap") or "/usr/sbin/mkswap"
        if not Path(mkswap).exists():
            mkswap = str(BUSYBOX)
            run.run([mkswap, "mkswap", str(path)])
        else:
            run.run([mkswap, str(path)])
    return path


# What build_data_disk() packs, in MiB per source: the host's own files, so the bytes are as compressible as a
# real guest's memory (gzip -3 takes this mix to about a third; doc text alone goes to a fifth, binaries to a half).
DATA_SOURCES: tuple[tuple[str, int], ...] = (
    ("/usr/lib/x86_64-linux-gnu", 60),
    (str(Path(os.__file__).parent), 25),
    ("/usr/share/locale", 30),
    ("/usr/share/doc", 15),
    ("/usr/bin", 10),
)
# Already compressed: they would make the data look less compressible than memory is.
_PACKED = frozenset({".gz", ".xz", ".bz2", ".zst", ".lz4", ".zip", ".whl", ".png", ".jpg", ".jpeg", ".gif", ".svgz"})


def _data_files(sources: Sequence[tuple[str, int]]) -> list[Path]:
    """Regular files (no symlinks, no compressed ones) from each source, in sorted order, up to its budget."""
    chosen: list[Path] = []
    for root, budget_mib in sources:
        left = budget_mib * 1024 * 1024
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path.suffix in _PACKED or path.is_symlink() or not path.is_file():
                    continue
                size = path.stat().st_size
                if 0 < size <= left and os.access(path, os.R_OK):
                    chosen.append(path)
                    left -= size
            if left < 64 * 1024:
                break
    return chosen


def build_data_disk(work_dir: Path = WORK_DIR, sources: Sequence[tuple[str, int]] = DATA_SOURCES) -> Path:
    """A raw disk holding an uncompressed tar of real host files (~140 MiB by default), for the `memfill` mode.

    Built once and reused while the files are the same (named by the hash of their names and bytes). Meant to be
    attached read-only, so several guests can share it.
    """
    files = _data_files(sources)
    key = hashlib.sha256()
    for path in files:
        key.update(f"{path}\0".encode())
        key.update(path.read_bytes())
    disk = work_dir / f"memfill-{key.hexdigest()[:16]}.img"
    if disk.exists():
        return disk
    work_dir.mkdir(parents=True, exist_ok=True)
    work_dir.chmod(0o755)
    fd, tmp = tempfile.mkstemp(dir=work_dir, prefix=f".{disk.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            # fixed owner, mode and time: the same files give the same bytes
            with tarfile.open(fileobj=f, mode="w", format=tarfile.GNU_FORMAT) as tar:
                for path in files:
                    data = path.read_bytes()
                    info = tarfile.TarInfo(str(path).lstrip("/"))
                    info.size = len(data)
                    info.mode = 0o644
                    tar.addfile(info, io.BytesIO(data))
            f.truncate(-(-f.tell() // (1 << 20)) << 20)  # whole MiB for the block device
        Path(tmp).chmod(0o644)
        os.replace(tmp, disk)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return disk


@dataclass(frozen=True, slots=True)
class GuestNet:
    """A guest's NIC for mode net: the tap libvirt creates for it on the host (`tap`, at most 15 characters, which
    the test then moves where it wants), its MAC, its address with prefix, its gateway and the TCP port it serves."""

    tap: str
    mac: str
    address: str  # 10.0.0.5/24
    gateway: str
    port: int = 8080

    @property
    def ip(self) -> str:
        """The address without its prefix."""
        return self.address.partition("/")[0]


def disk_targets(count: int, *, xen_names: bool = False) -> list[str]:
    """The libvirt target names of `count` disks: vda, vdb, ... (or xvda, xvdb, ... with Xen names)."""
    prefix = "xvd" if xen_names else "vd"
    return [prefix + "abcdefghijklmnopqrstuvwxyz"[i] for i in range(count)]


def domain_xml(
    *,
    name: str,
    uuid: str,
    kit: Kit,
    guest_dir: Path,
    disks: list[Path],
    memory_mib: int = 128,
    vcpus: int = 1,
    mode: str = "idle",
    swap: bool = False,
    nic: bool = True,
    xen_names: bool = False,
    readonly: Collection[Path] = (),
    balloon: bool = True,
    stats_period_s: int = 0,
    net: GuestNet | None = None,
) -> str:
    """libvirt XML for a direct-kernel-boot guest with a serial console logged to guest_dir/console.log.

    With `swap`, the last disk is the guest's swap disk. With `xen_names`, the disks' libvirt targets are xvda,
    xvdb... on a virtio-scsi bus (QEMU has no Xen bus), so Xen-style names can be tested; the guest sees sda, sdb...
    The disks in `readonly` are attached read-only and shareable, so several guests can use the same file.
    The guest gets a virtio balloon (`balloon`), polled for its statistics every `stats_period_s` seconds when
    that is not 0; without `balloon`, it has none (<memballoon model='none'/>).
    With `net` (for mode net), the NIC is a tap of that name with that MAC, and the guest's command line carries
    its name, address, gateway and port.
    """
    targets = disk_targets(len(disks), xen_names=xen_names)
    # What the guest kernel calls the disks: virtio-blk names them vd*, the SCSI disks behind xvd* are sd*.
    inside = [("sd" + t[3:]) if xen_names else t for t in targets]
    cmdline = f"console=ttyS0 loglevel=4 panic=-1 dom0test.mode={mode}"
    if disks and not (swap and len(disks) == 1):
        cmdline += f" dom0test.data={inside[0]}"
    if swap and disks:
        cmdline += f" dom0test.swap={inside[-1]}"
    if net:
        cmdline += f" dom0test.name={name} dom0test.ip={net.address} dom0test.gw={net.gateway} dom0test.port={net.port}"
    disk_xml = []
    for path, target in zip(disks, targets, strict=True):
        bus = "scsi" if xen_names else "virtio"
        shared = "\n      <readonly/>\n      <shareable/>" if path in readonly else ""
        disk_xml.append(
            f"""    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{escape(str(path))}'/>
      <target dev='{target}' bus='{bus}'/>{shared}
    </disk>"""
        )
    if xen_names:
        disk_xml.append("    <controller type='scsi' model='virtio-scsi'/>")
    # With `net`, libvirt creates the tap under that name (up, in its own namespace, attached to nothing).
    tap_xml = f"\n      <mac address='{escape(net.mac)}'/>\n      <target dev='{escape(net.tap)}'/>" if net else ""
    nic_xml = (
        f"""    <interface type='ethernet'>{tap_xml}
      <model type='virtio'/>
      <rom enabled='no'/>
    </interface>"""
        if nic or net
        else ""
    )
    if not balloon:
        balloon_xml = "    <memballoon model='none'/>"
    elif stats_period_s:
        balloon_xml = f"    <memballoon model='virtio'>\n      <stats period='{stats_period_s}'/>\n    </memballoon>"
    else:
        balloon_xml = "    <memballoon model='virtio'/>"
    console_log = guest_dir / "console.log"
    return f"""<domain type='qemu'>
  <name>{escape(name)}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>{memory_mib}</memory>
  <currentMemory unit='MiB'>{memory_mib}</currentMemory>
  <vcpu>{vcpus}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(str(kit.kernel))}</kernel>
    <initrd>{escape(str(kit.initramfs))}</initrd>
    <cmdline>{escape(cmdline)}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
{chr(10).join(disk_xml)}
{nic_xml}
    <serial type='pty'>
      <log file='{escape(str(console_log))}' append='off'/>
      <target port='0'/>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
{balloon_xml}
  </devices>
</domain>
"""


def console_has(log: Path, text: str) -> bool:
    """Whether the console log contains `text` (the log may not exist yet)."""
    try:
        return text in log.read_text(errors="replace")
    except OSError:
        return False


def ready_count(log: Path) -> int:
    """How many times the guest reported ready (a reboot makes it report again)."""
    try:
        return len(re.findall(re.escape(READY), log.read_text(errors="replace")))
    except OSError:
        return 0


def identity_tree(tree: Path) -> Path:
    """Make a built OS tree the root a `identity` guest reads: hostname source-vm, static 10.0.0.2/24 on eth0,
    a machine-id and an SSH host key (which a clone must not keep)."""
    (tree / "etc/hostname").write_text("source-vm\n")
    (tree / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 source-vm\n")
    (tree / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (tree / "etc/network").mkdir(parents=True, exist_ok=True)
    (tree / "etc/network/interfaces").write_text(
        "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet static\n    address 10.0.0.2/24\n"
        "    gateway 10.0.0.1\n"
    )
    (tree / "etc/ssh").mkdir(parents=True, exist_ok=True)
    (tree / "etc/ssh/ssh_host_ed25519_key").write_text("secret of the source\n")
    return tree
