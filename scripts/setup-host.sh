#!/bin/bash
# Prepares this machine for dom0's demo and tests: Debian packages, the project's venv, and the libvirt daemons.
# Idempotent: a second run installs nothing and starts nothing that already runs.
# Usage: scripts/setup-host.sh        (as root on Debian 12)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config
  qemu-system-x86 qemu-utils linux-image-amd64 busybox-static cpio zstd dnsmasq-base python3-venv
  # disk images (tests/data/imagebuild.py, dom0 image): sfdisk, mkfs.*, mkswap, lvm2 on loop devices, qemu-img
  fdisk btrfs-progs xfsprogs dosfstools mtools lvm2 file
  # bench/image_inspect_bench.py: virt-inspector, the helper-VM tool dom0 image inspect is measured against
  libguestfs-tools
  # bench/clone_bench.py: virt-clone, the libvirt tool dom0 clone is measured against
  virtinst
  # the Xen lab (tests/xen): debootstrap builds dom0's root, mkfs.ext4 -d packs it, debugfs reads results back
  debootstrap e2fsprogs
  # tests/unit/test_confinement.py: every file a run on hostile input opens, traced
  strace
  # dom0 publish: dom0's own nftables table (nft -f); tests load libvirt's NAT rules as libvirt writes them (iptables)
  nftables iptables
  # tests/unit/image/test_packages_rpm.py: rpmbuild and rpm --initdb make a real sqlite rpmdb to read back
  rpm
  # make man, tests/unit/cli/test_manpages.py: the pages are rendered by man -l and groff, warnings counted
  man-db groff-base
  # tests/unit/cli/test_completion.py: the zsh completion script loads in a real zsh
  zsh
  # tests/integration/test_package.py: the .deb make deb builds is checked by lintian (make deb installs the rest)
  lintian
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]}; run as root (or: apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# The venv is rebuilt only when pyproject.toml changed since it was made.
if [ ! -x .venv/bin/dom0 ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setup: building .venv"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  touch .venv/.installed
fi

# libvirt needs virtlogd for QEMU guests' logs; without systemd (containers, CI sandboxes) start both directly.
if [ "$(id -u)" = 0 ]; then
  if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    systemctl start virtlogd.socket libvirtd.service
  else
    pgrep -x virtlogd >/dev/null || virtlogd -d
    pgrep -x libvirtd >/dev/null || libvirtd -d
  fi
  for _ in $(seq 50); do
    [ -S /run/libvirt/libvirt-sock ] && break
    sleep 0.1
  done
  [ -S /run/libvirt/libvirt-sock ] || { echo "setup: libvirtd did not start (see its log)" >&2; exit 1; }
fi
echo "setup: ready"
