"""The support bundle: everything an administrator will want to see later, gathered before a reboot or destroy.

`collect` reads the host and hypervisor into memory (partial failures are recorded, not raised); `write` then
stores that as one tar.gz, written beside its final name and renamed, so no half-written bundle is left behind.
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import socket
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec
from urllib.parse import urlparse

from dom0 import __version__, run
from dom0.errors import Dom0Error, GuestNotFound
from dom0.hypervisor import Hypervisor, LogText
from dom0.observe import jsonview

P = ParamSpec("P")

README_NAME = "README.txt"
ERRORS_NAME = "errors.txt"


@dataclass
class Bundle:
    """A bundle in memory: its files in the order they are written, what each is, and what could not be read."""

    taken_at: datetime
    uri: str
    hostname: str
    files: dict[str, bytes] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, name: str, data: str | bytes, description: str) -> None:
        """Add one file; `description` goes into README.txt."""
        self.files[name] = data.encode() if isinstance(data, str) else data
        self.descriptions[name] = description

    def attempt(self, what: str, func: Callable[P, None], *args: P.args, **kwargs: P.kwargs) -> None:
        """Run one collection step; its failure becomes a line of errors.txt instead of ending the bundle."""
        try:
            func(*args, **kwargs)
        except Dom0Error as exc:
            self.errors.append(f"{what}: {exc.message}")
        except OSError as exc:
            self.errors.append(f"{what}: {exc.strerror or exc}")


def safe_name(name: str) -> str:
    """A guest or host name usable as one path component inside the archive and in a file name."""
    cleaned = re.sub(r"[^A-Za-z0-9._+-]", "_", name).lstrip(".")
    return cleaned or "_"


def default_path(hostname: str, taken_at: datetime, directory: Path | None = None) -> Path:
    """dom0-support-HOST-YYYYmmdd-HHMMSS.tar.gz in `directory` (the current one by default)."""
    name = f"dom0-support-{safe_name(hostname)}-{taken_at:%Y%m%d-%H%M%S}.tar.gz"
    return (directory or Path()) / name


def _read(path: str) -> str:
    return Path(path).read_text(errors="replace")


def _cpu_summary(cpuinfo: str) -> dict[str, Any]:
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    processors = sum(1 for line in cpuinfo.splitlines() if line.startswith("processor"))
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    virt = "vmx (Intel VT-x)" if "vmx" in flags else "svm (AMD-V)" if "svm" in flags else "none visible"
    return {
        "processors": processors,
        "model": models[0] if models else platform.processor(),
        "hardware_virtualization": virt,
        # A host that is itself a guest (nested) explains slow or missing KVM.
        "runs_under_a_hypervisor": "hypervisor" in flags,
    }


def _meminfo(text: str) -> dict[str, int]:
    wanted = ("MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapTotal", "SwapFree", "Committed_AS")
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in wanted and rest.split():
            values[f"{key}_kib"] = int(rest.split()[0])
    return values


def _os_release(text: str) -> dict[str, str]:
    pairs = (line.partition("=") for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return {k: v.strip().strip('"') for k, _, v in pairs}


def _host_facts(bundle: Bundle, hv: Hypervisor) -> None:
    facts: dict[str, Any] = {
        "taken_at": bundle.taken_at.isoformat(timespec="seconds"),
        "dom0_version": __version__,
        "uri": hv.uri,
    }
    try:
        facts["hypervisor"] = jsonview.host(hv.host())
    except Dom0Error as exc:
        bundle.errors.append(f"hypervisor host facts: {exc.message}")
    uname = os.uname()
    facts["hostname"] = socket.gethostname()
    facts["uname"] = {
        "sysname": uname.sysname,
        "release": uname.release,
        "version": uname.version,
        "machine": uname.machine,
    }
    readers: list[tuple[str, str, Callable[[str], object]]] = [
        ("cpu", "/proc/cpuinfo", _cpu_summary),
        ("memory", "/proc/meminfo", _meminfo),
        ("os_release", "/etc/os-release", _os_release),
        ("uptime_s", "/proc/uptime", lambda t: float(t.split()[0])),
        ("loadavg", "/proc/loadavg", lambda t: [float(x) for x in t.split()[:3]]),
    ]
    for key, path, parse in readers:
        try:
            facts[key] = parse(_read(path))
        except (OSError, ValueError, IndexError) as exc:
            bundle.errors.append(f"host facts: cannot read {path}: {exc}")
    bundle.add("host/facts.json", json.dumps(facts, indent=2) + "\n", "host facts: uname, CPU, memory, OS, load")
    for name, path, what in (
        ("host/meminfo.txt", "/proc/meminfo", "the host's /proc/meminfo"),
        ("host/os-release.txt", "/etc/os-release", "the host's /etc/os-release"),
    ):
        bundle.attempt(f"host {path}", _add_file, bundle, name, path, what)


def _add_file(bundle: Bundle, name: str, path: str, description: str) -> None:
    bundle.add(name, _read(path), description)


def _definition(bundle: Bundle, hv: Hypervisor, uuid: str, name: str, guest_name: str) -> None:
    bundle.add(f"guests/{name}.xml", hv.definition(uuid), f"the definition of {guest_name} (libvirt XML)")


def _host_dmesg(bundle: Bundle) -> None:
    bundle.add("host/dmesg.txt", run.output(["dmesg"], timeout=30), "the host kernel's log (dmesg)")


def _hypervisor_log(bundle: Bundle, hv: Hypervisor) -> None:
    log = hv.hypervisor_log()
    bundle.add("hypervisor.log", f"# {log.source}\n{log.text}", f"the hypervisor's log: {log.source}")


def _log_file_name(log: LogText, index: int) -> str:
    if log.source.startswith("console log"):
        return "console.log"
    if log.source.startswith("libvirt's log"):
        return "libvirt.log"
    return f"log-{index}.txt"


def _guests(bundle: Bundle, hv: Hypervisor) -> None:
    listed = hv.guests(include_inactive=True)
    long_view = []
    for g in listed:
        name = safe_name(g.name)
        try:
            long_view.append(jsonview.details(hv.details(g.uuid)))
        except GuestNotFound:
            bundle.errors.append(f"guest {g.name}: it went away while the bundle was being taken")
            continue
        except Dom0Error as exc:
            bundle.errors.append(f"guest {g.name}: {exc.message}")
        bundle.attempt(f"definition of {g.name}", _definition, bundle, hv, g.uuid, name, g.name)
        bundle.attempt(f"logs of {g.name}", _guest_logs, bundle, hv, g.uuid, name, g.name)
    bundle.add(
        "guests.json",
        json.dumps(long_view, indent=2) + "\n",
        "every guest, running or not: the same as `dom0 list --all --long --json`",
    )


def _guest_logs(bundle: Bundle, hv: Hypervisor, uuid: str, name: str, guest_name: str) -> None:
    logs = hv.guest_logs(uuid)
    kinds = set()
    for i, log in enumerate(logs):
        file_name = _log_file_name(log, i)
        kinds.add(file_name)
        bundle.add(f"logs/{name}/{file_name}", f"# {log.source}\n{log.text}", log.source)
    if "console.log" not in kinds:
        bundle.errors.append(
            f"guest {guest_name}: no console log (its serial console has no <log file=...>, or it is not readable)"
        )


def _is_local(uri: str) -> bool:
    return not urlparse(uri).hostname


def collect(hv: Hypervisor, *, now: datetime | None = None) -> Bundle:
    """Read everything the bundle holds into memory; what fails is listed in the bundle's errors."""
    taken_at = now or datetime.now().astimezone()
    hostname = socket.gethostname()
    if not _is_local(hv.uri):
        hostname = urlparse(hv.uri).hostname or hostname
    bundle = Bundle(taken_at=taken_at, uri=hv.uri, hostname=hostname)
    if _is_local(hv.uri):
        _host_facts(bundle, hv)
        bundle.attempt("host kernel log (dmesg)", _host_dmesg, bundle)
    else:
        bundle.errors.append(f"host facts and the host's dmesg were skipped: {hv.uri} is a remote host")
    bundle.attempt("hypervisor log", _hypervisor_log, bundle, hv)
    bundle.attempt("guest list", _guests, bundle, hv)
    return bundle


def _readme(bundle: Bundle) -> str:
    width = max((len(n) for n in bundle.descriptions), default=10)
    lines = [
        "dom0 support bundle",
        "",
        f"taken at   {bundle.taken_at.isoformat(timespec='seconds')}",
        f"host       {bundle.hostname}",
        f"hypervisor {bundle.uri}",
        f"by         dom0 {__version__} (`dom0 support-bundle`)",
        "",
        "Files:",
        f"  {README_NAME:<{width}}  this file",
        f"  {ERRORS_NAME:<{width}}  what could not be collected, and why (partial failures)",
    ]
    lines += [f"  {name:<{width}}  {what}" for name, what in bundle.descriptions.items()]
    lines += ["", "Logs are their last MiB at most. Every file was read at the time above, within a few seconds.", ""]
    return "\n".join(lines)


def archive_members(bundle: Bundle) -> dict[str, bytes]:
    """The files of the archive, README.txt and errors.txt first."""
    errors = "\n".join(bundle.errors) + "\n" if bundle.errors else "nothing failed: every file was collected\n"
    return {README_NAME: _readme(bundle).encode(), ERRORS_NAME: errors.encode(), **bundle.files}


def top_directory(path: Path) -> str:
    """The directory the archive unpacks into: the file's name without .tar.gz."""
    name = path.name
    for suffix in (".tar.gz", ".tgz"):
        if name.endswith(suffix):
            return name[: -len(suffix)] or "dom0-support"
    return name


def write(bundle: Bundle, path: Path) -> list[str]:
    """Write the bundle as `path` (a tar.gz readable only by its owner); refuses to replace an existing file.

    Returns the member names. Written as PATH.partial first, so a failure leaves nothing half-written.
    """
    if path.exists():
        raise Dom0Error(f"{path} already exists; not overwriting it", "pick another name with -o FILE")
    partial = path.with_name(path.name + ".partial")
    top = top_directory(path)
    members = archive_members(bundle)
    mtime = bundle.taken_at.timestamp()
    names = []
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            directories = {top} | {str(parent) for n in members for parent in Path(top, n).parents if parent.parts}
            for directory in sorted(directories):
                info = tarfile.TarInfo(directory)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(mtime)
                tar.addfile(info)
            for name, data in members.items():
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size, info.mode, info.mtime = len(data), 0o644, int(mtime)
                tar.addfile(info, io.BytesIO(data))
                names.append(info.name)
        _publish(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if isinstance(exc, FileExistsError):
            raise Dom0Error(f"{path} already exists; not overwriting it", "pick another name with -o FILE") from exc
        raise Dom0Error(
            f"cannot write {path}: {exc.strerror or exc}", "pick a writable place with room for it: -o FILE"
        ) from exc
    return names


def _publish(partial: Path, path: Path) -> None:
    """Move the finished file to its name without replacing a file that appeared meanwhile."""
    try:
        os.link(partial, path)
    except FileExistsError:
        raise
    except OSError:
        # Some file systems have no hard links; the existence check before writing has to do.
        if path.exists():
            raise FileExistsError(path) from None
        os.rename(partial, path)
        return
    partial.unlink()
