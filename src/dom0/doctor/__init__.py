"""`dom0 doctor`: what is wrong on this host, or about to be, each finding with its evidence and a hint.

Every finding comes from a measurement or a file read now (states, balloon statistics, the guests' logs, their
own configuration, the host kernel's counters); nothing is keyed on a guest's name. Checks that need no
hypervisor run first: a libvirtd left waiting on a dom0 FIFO makes calls about guests wait, and a daemon that
does not answer at all is itself the finding, so the guests are not asked then.

    diagnose(hv, refs=(), *, config, config_source, save_dir, sample_s=1.0, paths=HostPaths()) -> Diagnosis
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dom0.doctor import guests as guestchecks
from dom0.doctor import hostchecks
from dom0.doctor.findings import HOST, Diagnosis, Finding, Severity, worst_first
from dom0.doctor.hostchecks import ANSWER_S, HostPaths
from dom0.hypervisor import Hypervisor
from dom0.memory.reading import MemoryReport, is_local, read_memory
from dom0.saves.hostconfig import HostConfig

__all__ = ["HOST", "Diagnosis", "Finding", "HostPaths", "Severity", "diagnose"]


def _chosen(hv: Hypervisor, refs: Sequence[str]) -> list[str]:
    """The names of the guests `refs` name (GuestNotFound for one that does not exist)."""
    return list(dict.fromkeys(hv.guest(ref).name for ref in refs))


def _host_first(
    hv: Hypervisor, save_dir: Path, paths: HostPaths, answer_s: float, *, local: bool
) -> tuple[list[Finding], list[str], bool]:
    """The checks that need no answer about guests: a save waiting on a FIFO, pressure, the daemons."""
    findings: list[Finding] = []
    checked: list[str] = []
    found, what = hostchecks.waiting_saves(save_dir, paths.proc)
    findings += found
    checked.append(what)
    if local:
        found, what = hostchecks.pressure(paths.pressure)
        findings += found
        checked.append(what)
    found, answered, what = hostchecks.answers(hv, answer_s)
    findings += found
    checked.append(what)
    if local and paths.xen.exists():
        found, what = hostchecks.xenstore(answer_s)
        findings += found
        checked.append(what)
    return findings, checked, answered


def diagnose(
    hv: Hypervisor,
    refs: Sequence[str] = (),
    *,
    config: HostConfig,
    config_source: str,
    save_dir: Path,
    sample_s: float = 1.0,
    paths: HostPaths = HostPaths(),  # noqa: B008  (frozen, so one shared default is safe)
    answer_s: float = ANSWER_S,
) -> Diagnosis:
    """Every check on the host and on the guests `refs` names (all guests when empty)."""
    local = is_local(hv.uri)
    findings, checked, answered = _host_first(hv, save_dir, paths, answer_s, local=local)
    if not answered:
        checked.append("guests: not checked, the hypervisor did not answer")
        return Diagnosis(worst_first(findings), tuple(checked))

    only = _chosen(hv, refs)
    xen = hv.host().hypervisor.lower() == "xen"
    every = [g for g in hv.guests(include_inactive=True) if not (xen and g.id == 0)]  # Domain-0 is the host
    shown = [g for g in every if not only or g.name in only]
    active = [g for g in shown if g.state.is_active]
    checked.append(f"{len(shown)} guests ({len(active)} active)")
    findings += guestchecks.states(shown)
    findings += guestchecks.meant_to_run(every, hv.autostart_guests(), config, config_source, only)
    findings += guestchecks.saved_images(save_dir, every, only)

    report: MemoryReport | None = None
    if active:
        report = read_memory(hv, [g.uuid for g in active], sample_s=sample_s)
        findings += guestchecks.memory(report)
        findings += [Finding(Severity.NOTE, HOST, "memory", note) for note in report.notes]
        checked.append(f"memory of {len(report.guests)} active guests over {report.sample_s:g} s")
        if local:
            findings += hostchecks.swapping(report.host)
            checked.append("dom0's own swap traffic")
    found, logs = guestchecks.oom_kills(hv, active)
    findings += found
    checked.append(f"{logs} logs of {len(active)} active guests read for OOM kills")
    if local:
        found, disks, files = guestchecks.worker_pools(hv, active, report)
        findings += found
        checked.append(f"worker pools: {disks} guest disks read ({files} config files)")
    else:
        checked.append("worker pools: not checked (the guests' disks are not on this machine)")

    running = [g for g in every if g.state.is_active]
    found, what = hostchecks.save_room(save_dir, sum(g.memory_kib for g in running), len(running))
    findings += found
    checked.append(what)
    return Diagnosis(worst_first(findings), tuple(checked))
