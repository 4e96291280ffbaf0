"""dpkg status files as dpkg writes them, for the package-list tests: a stanza per package, and two lists of one
Debian 12 system before and after an upgrade (one package added, one removed with its configuration kept, one
architecture gone, versions changed, an epoch added, a package moved from "all" to "amd64")."""

from __future__ import annotations

from pathlib import Path

import ostrees


def stanza(name: str, version: str, arch: str = "amd64", status: str = "install ok installed", **more: str) -> str:
    """One package of /var/lib/dpkg/status as dpkg writes it."""
    extra = "".join(f"{k.replace('_', '-')}: {v}\n" for k, v in more.items())
    return (
        f"Package: {name}\nStatus: {status}\nPriority: optional\nSection: misc\nInstalled-Size: 100\n"
        f"Maintainer: Debian <debian@example.org>\nArchitecture: {arch}\n{extra}Version: {version}\n"
        f"Description: the {name} package\n more text\n\n"
    )


BEFORE = (
    stanza("base-files", "12.4+deb12u5")
    + stanza("bash", "5.2.15-2+b2", Source="bash (5.2.15-2)")
    + stanza("libc6", "2.36-9+deb12u3", Multi_Arch="same")
    + stanza("libc6", "2.36-9+deb12u3", arch="i386", Multi_Arch="same")
    + stanza("nano", "7.2-1")
    + stanza("tzdata", "2024a-0+deb12u1", arch="all")
    + stanza("util-linux", "2.38.1-5+b1")
)
AFTER = (
    stanza("base-files", "12.4+deb12u5")
    + stanza("bash", "5.2.15-2+b7", Source="bash (5.2.15-2)")
    + stanza("libc6", "2.36-9+deb12u7", Multi_Arch="same")
    + stanza("hello", "2.10-3")
    + stanza("nano", "7.2-1", status="deinstall ok config-files")  # removed, its configuration kept
    + stanza("tzdata", "2025b-0+deb12u1", arch="amd64")
    + stanza("util-linux", "1:2.38.1-5+deb12u3")
)


def debian_tree(root: Path, status: str | None, hostname: str, kernel: str, release: str = "12.5") -> Path:
    """ostrees' Debian 12 tree with this status file (None: none), hostname, point release and one kernel."""
    tree = ostrees.debian12().build(root)
    (tree / "etc/debian_version").write_text(release + "\n")
    if status is None:
        (tree / "var/lib/dpkg/status").unlink()
    else:
        (tree / "var/lib/dpkg/status").write_text(status)
    (tree / "etc/hostname").write_text(hostname + "\n")
    for old in (tree / "boot").iterdir():
        old.unlink()
    (tree / f"boot/vmlinuz-{kernel}").write_bytes(ostrees.KERNEL_BYTES)
    (tree / f"boot/initrd.img-{kernel}").write_bytes(ostrees.INITRD_BYTES)
    return tree
