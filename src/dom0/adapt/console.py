"""A login on the target's console: a getty in /etc/inittab (SysV init), an upstart job, or systemd's
serial-getty@ unit enabled; the device in /etc/securetty; console= on the kernel command line (files.py edits the
boot loader's files with console_args).

Xen PV and PVH guests have no VGA and no UART: gettys on tty1-6 (or ttyS0) there only respawn in a loop, so they
are commented out, with a note, never deleted. A getty on a Xen console the target does not have goes the same way.
mingetty drives virtual consoles only, so a serial or Xen console gets agetty (Red Hat's own xvc0 line).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from dom0.adapt.target import Devices, Target
from dom0.errors import Dom0Error
from dom0.guest.net import names_in
from dom0.image.osinspect import OperatingSystem

if TYPE_CHECKING:
    from dom0.adapt.files import Draft

INITTAB = "/etc/inittab"
SECURETTY = "/etc/securetty"
UPSTART = "/etc/init"
WANTS = "/etc/systemd/system/getty.target.wants"
SERIAL_UNIT_DIRS = ("/lib/systemd/system", "/usr/lib/systemd/system")
MARK = "# dom0 adapt:"

_GETTY = re.compile(r"(\S*/)?((?:a|min|m|f)?getty)\b")
_VT = re.compile(r"^tty\d+$")
_XEN_CONSOLE = re.compile(r"^(hvc|xvc)\d+$")
_SERIAL = re.compile(r"^ttyS\d+$")
_TTY_WORD = re.compile(r"^(tty\w*|hvc\d+|xvc\d+|console)$")


def has_vga(target: Target) -> bool:
    """Whether the target gives the guest a VGA console (tty1..): HVM and KVM do, Xen PV and PVH do not."""
    return target in (Target.KVM, Target.XEN_HVM)


def unreachable(device: str, target: Target, devices: Devices) -> bool:
    """Whether a console device the guest names does not exist on `target`."""
    if device == devices.console:
        return False
    if _VT.match(device):
        return not has_vga(target)
    if _XEN_CONSOLE.match(device):
        # An HVM guest with the PV drivers has hvc0 too; KVM has none, and PV has only the one its kernel names.
        return target is not Target.XEN_HVM
    if _SERIAL.match(device):
        return target in (Target.XEN_PV, Target.XEN_PVH)
    return False


def console_arg(devices: Devices) -> str:
    """The console= the kernel needs on the target: a serial line at the speed the getty uses."""
    if _SERIAL.match(devices.console):
        return f"console={devices.console},115200"
    return f"console={devices.console}"


def console_args(args: list[str], target: Target, devices: Devices, *, add: bool) -> tuple[list[str], list[str]]:
    """Kernel arguments with console= on devices the target lacks dropped and, with `add`, the target's console
    appended (the last console= is /dev/console, where systemd starts its login); and what changed."""
    out: list[str] = []
    why: list[str] = []
    for arg in args:
        if arg.startswith("console=") and unreachable(arg[8:].split(",")[0], target, devices):
            why.append(f"{arg} dropped")
            continue
        out.append(arg)
    if add and not any(a.startswith("console=") and a[8:].split(",")[0] == devices.console for a in out):
        out.append(console_arg(devices))
        why.append(f"{console_arg(devices)} added")
    return out, why


def plan(draft: Draft, system: OperatingSystem, target: Target, devices: Devices) -> None:
    """Plan the getty, securetty and (in files.py) kernel console changes for the guest's init system."""
    init = _init_system(draft)
    if init == "systemd":
        _systemd(draft, devices)
    elif init == "upstart":
        _upstart(draft, target, devices)
    elif init == "sysv":
        _inittab(draft, target, devices)
    else:
        draft.note(
            f"no init system recognised (no inittab gettys, upstart jobs or systemd): no login added on "
            f"{devices.console}"
        )
    _securetty(draft, devices)
    del system  # the init system is read from the files themselves: a release says nothing of what was installed


def _init_system(draft: Draft) -> str:
    tree = draft.tree
    try:
        real = tree.realpath("/sbin/init")
    except Dom0Error:
        real = None  # a link loop: not an init at all
    if real is not None and real.rsplit("/", 1)[-1] == "systemd":
        return "systemd"
    inittab = draft.read(INITTAB)
    if inittab is not None and _getty_lines(inittab):
        return "sysv"
    if _upstart_jobs(draft):
        return "upstart"
    if draft.is_dir("/etc/systemd/system") or any(
        tree.exists(f"{d}/systemd") for d in ("/lib/systemd", "/usr/lib/systemd")
    ):
        return "systemd"
    return "sysv" if inittab is not None else ""


# --- SysV init: /etc/inittab --------------------------------------------------------------------------------------


def _getty_lines(text: str) -> list[tuple[int, str, list[str]]]:
    """(line number, device, fields) of each active respawning getty."""
    found = []
    for n, raw in enumerate(text.splitlines()):
        line = raw.strip()
        fields = line.split(":", 3)
        if line.startswith("#") or len(fields) < 4 or "respawn" not in fields[2] or not _GETTY.search(fields[3]):
            continue
        words = [w for w in fields[3].split()[1:] if _TTY_WORD.match(w)]
        if words:
            found.append((n, words[0], fields))
    return found


def _inittab(draft: Draft, target: Target, devices: Devices) -> None:
    text = draft.read(INITTAB)
    if text is None:
        return
    lines = text.splitlines(keepends=True)
    gettys = _getty_lines(text)
    dev = devices.console
    whys: list[str] = []
    if not any(device == dev for _, device, _ in gettys):
        revived = _uncomment(lines, dev)
        if revived is not None:
            whys.append(f"the commented-out getty on {dev} enabled")
        else:
            lines = _append(lines, _new_getty(gettys, lines, dev))
            whys.append(f"a login on {dev}, the {target} console")
    offset = 0
    for n, device, _ in gettys:
        if unreachable(device, target, devices):
            at = n + offset
            reason = "no VGA console" if _VT.match(device) else "no such console"
            lines[at : at + 1] = [f"{MARK} {device} does not exist on {target} ({reason})\n", "#" + lines[at]]
            offset += 1
            whys.append(f"getty on {device} commented out")
    if whys:
        draft.update(INITTAB, "".join(lines), "console: " + ", ".join(_squeeze(whys)))


def _squeeze(whys: list[str]) -> list[str]:
    gone = [w.split()[2] for w in whys if w.endswith("commented out")]
    rest = [w for w in whys if not w.endswith("commented out")]
    return rest + ([f"gettys on {', '.join(gone)} commented out"] if gone else [])


def _uncomment(lines: list[str], dev: str) -> int | None:
    for i, line in enumerate(lines):
        body = line.lstrip("#").lstrip()
        if line.startswith("#") and not line.startswith(MARK) and [d for _, d, _ in _getty_lines(body)] == [dev]:
            lines[i] = body if body.endswith("\n") else body + "\n"
            return i
    return None


def _append(lines: list[str], new: list[str]) -> list[str]:
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return lines + new


def _program(paths: list[str]) -> tuple[str, bool]:
    """The getty to run on a serial or Xen console, from those the guest already uses; and whether it is
    util-linux's agetty under that name (Red Hat's line) rather than a Debian or busybox getty."""
    for path in paths:
        m = _GETTY.search(path)
        if m:
            directory = m.group(1) or "/sbin/"
            if m.group(2) in ("mingetty", "agetty"):
                return directory + "agetty", True
            return directory + m.group(2), False
    return "/sbin/agetty", True


def _getty_command(programs: list[str], dev: str) -> str:
    program, red_hat = _program(programs)
    speed = "115200" if _SERIAL.match(dev) else "9600"
    if red_hat:
        return f"{program} {dev} {speed} vt100-nav"
    # Speed first: the order busybox's getty requires, and one util-linux's getty accepts as well.
    return f"{program} -L {speed} {dev} vt100"


def _new_getty(gettys: list[tuple[int, str, list[str]]], lines: list[str], dev: str) -> list[str]:
    programs = [fields[3].split()[0] for _, _, fields in gettys if fields[3].split()]
    used = {line.split(":", 1)[0] for line in lines if ":" in line and not line.startswith("#")}
    runlevels = gettys[0][2][1] if gettys else "2345"
    busybox = bool(gettys) and all(fields[1] == "" and _TTY_WORD.match(fields[0]) for _, _, fields in gettys)
    if busybox:
        # busybox init: the first field is the terminal the process runs on, runlevels are not used.
        entry = f"{dev}::respawn:{_getty_command(programs, dev)}\n"
    else:
        ident = next((i for i in ("co", "h0", "s0", "x0", "T9") if i not in used), "dom0")
        entry = f"{ident}:{runlevels}:respawn:{_getty_command(programs, dev)}\n"
    return [f"{MARK} a login on {dev}\n", entry]


# --- upstart ------------------------------------------------------------------------------------------------------


def _upstart_jobs(draft: Draft) -> dict[str, str]:
    """The guest's upstart jobs that run a getty, by path."""
    names = names_in(draft.tree, UPSTART)
    jobs = {}
    for name in names:
        if name.endswith(".conf") and not draft.tree.is_dir(f"{UPSTART}/{name}"):
            text = draft.read(f"{UPSTART}/{name}")
            if text is not None and any(_exec_getty(line) for line in text.splitlines()):
                jobs[f"{UPSTART}/{name}"] = text
    return jobs


def _exec_getty(line: str) -> list[str]:
    words = line.split()
    if not words or words[0] != "exec" or not any(_GETTY.search(w) for w in words[1:2]):
        return []
    return words[1:]


def _upstart(draft: Draft, target: Target, devices: Devices) -> None:
    dev = devices.console
    jobs = _upstart_jobs(draft)
    programs: list[str] = []
    for text in jobs.values():
        for line in text.splitlines():
            words = _exec_getty(line)
            if dev in words:
                return
            programs += words[:1]
    job = (
        f"{MARK} a login on {dev}, the {target} console\n"
        "start on stopped rc RUNLEVEL=[2345]\n"
        "stop on runlevel [!2345]\n\n"
        "respawn\n"
        f"exec {_getty_command(programs, dev)}\n"
    )
    draft.create(f"{UPSTART}/{dev}.conf", job, f"console: an upstart job for a login on {dev}")


# --- systemd ------------------------------------------------------------------------------------------------------


def _systemd(draft: Draft, devices: Devices) -> None:
    dev = devices.console
    link = f"{WANTS}/serial-getty@{dev}.service"
    if draft.lexists(link):
        return
    unit = next(
        (f"{d}/serial-getty@.service" for d in SERIAL_UNIT_DIRS if draft.tree.is_file(f"{d}/serial-getty@.service")),
        None,
    )
    if unit is None:
        draft.note(
            f"no serial-getty@.service in the guest: systemd starts a login on the kernel's console= ({dev}) itself"
        )
        return
    draft.symlink(link, unit, f"console: serial-getty@{dev}.service enabled (a login on {dev})")


# --- /etc/securetty -----------------------------------------------------------------------------------------------


def _securetty(draft: Draft, devices: Devices) -> None:
    text = draft.read(SECURETTY)
    if text is None:
        return
    dev = devices.console
    if dev in (line.strip() for line in text.splitlines()):
        return
    edited = text + ("" if text.endswith("\n") or not text else "\n") + dev + "\n"
    draft.update(SECURETTY, edited, f"console: root may log in on {dev}", 0o600)
