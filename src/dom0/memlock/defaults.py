"""dom0's own memlock config, for a virtualization host with no /etc/memlockd.cfg: what an administrator needs to
log in and repair a host that pages (sshd and its PAM/NSS modules, a console login, a shell, the process and memory
tools, the journal, the hypervisor's CLI) and dom0 itself (its Python interpreter and the extension modules it
imports, found at run time because they live wherever the venv or the distribution put them)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

# In memlockd's format. Paths are where Debian 12 ships each file; with merged /usr they resolve to the same file.
# Tools not every host has are `?`: sudo, an editor, virsh (KVM hosts) and xl (Xen hosts).
_STATIC = """\
# dom0's default memlock config: the way in for a support session on a virtualization host.
# Getting in: sshd, a console login, their PAM modules and name lookups.
+/usr/sbin/sshd
+/bin/login
+/sbin/agetty
?+/lib/x86_64-linux-gnu/security/pam_unix.so
?+/lib/x86_64-linux-gnu/security/pam_env.so
?+/lib/x86_64-linux-gnu/security/pam_limits.so
?+/lib/x86_64-linux-gnu/security/pam_loginuid.so
?+/lib/x86_64-linux-gnu/security/pam_keyinit.so
?+/lib/x86_64-linux-gnu/security/pam_nologin.so
?+/lib/x86_64-linux-gnu/security/pam_motd.so
?+/lib/x86_64-linux-gnu/security/pam_mail.so
?+/lib/x86_64-linux-gnu/security/pam_permit.so
?+/lib/x86_64-linux-gnu/security/pam_deny.so
?+/lib/x86_64-linux-gnu/security/pam_securetty.so
?+/lib/x86_64-linux-gnu/security/pam_faildelay.so
?+/lib/x86_64-linux-gnu/security/pam_selinux.so
?+/lib/x86_64-linux-gnu/security/pam_systemd.so
?+/lib/x86_64-linux-gnu/libnss_files.so.2
?+/lib/x86_64-linux-gnu/libnss_compat.so.2
?+/lib/x86_64-linux-gnu/libnss_systemd.so.2
# A shell and becoming root.
+/bin/bash
+/bin/sh
+/bin/su
?+/usr/bin/sudo
# Finding and stopping what eats the memory.
+/bin/ps
+/usr/bin/top
+/usr/bin/free
+/bin/kill
+/bin/ls
+/bin/cat
+/bin/less
?+/usr/bin/vim.tiny
?+/usr/bin/vi
+/bin/journalctl
+/bin/systemctl
+/bin/ip
+/bin/ss
# The hypervisor's own tools.
?+/usr/bin/virsh
?+/usr/sbin/xl
"""

# Extension modules dom0 imports on the paths a support session takes (ps-like views, saves, the hypervisor).
# zstandard also ships a cffi backend that dom0 never loads.
_EXTENSION_PACKAGES = (("psutil", "*.so"), ("zstandard", "backend_c*.so"))
_EXTENSION_MODULES = ("libvirtmod",)


def _extension_files() -> list[str]:
    """The .so files of dom0's extension modules, located without importing them (find_spec of a top-level name
    only searches sys.path)."""
    found: list[str] = []
    for name, pattern in _EXTENSION_PACKAGES:
        spec = importlib.util.find_spec(name)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            found.extend(str(p) for p in sorted(Path(folder).glob(pattern)))
    for name in _EXTENSION_MODULES:
        spec = importlib.util.find_spec(name)
        if spec and spec.origin and spec.origin.endswith(".so"):
            found.append(spec.origin)
    return found


def default_config() -> str:
    """The default config text, with this dom0's interpreter and extension modules as `?+` lines."""
    lines = [_STATIC, "# dom0 itself: its Python interpreter (real path) and the extension modules it imports."]
    lines.append(f"+{os.path.realpath(sys.executable)}")
    lines.extend(f"?+{path}" for path in _extension_files())
    return "\n".join(lines) + "\n"
