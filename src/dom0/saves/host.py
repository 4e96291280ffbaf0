"""`dom0 host stop` and `dom0 host start`: what xendomains and libvirt-guests do at host shutdown and boot, in parallel.

Stop saves every running guest (a guest whose save fails gets an orderly shutdown instead) and shuts down the
guests configured so; a guest still running after the timeout is reported, never destroyed. Start restores every
saved guest, then starts the guests marked to start at boot that are not running yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from dom0.errors import Dom0Error, GuestNotFound
from dom0.hypervisor import Hypervisor
from dom0.hypervisor.control import wait_for_stop
from dom0.model import BarFactory, Guest, no_bar
from dom0.saves import batch, manifest, stream
from dom0.saves.codec import Compression
from dom0.saves.hostconfig import HostConfig, OnStop
from dom0.saves.stream import RestorePlan, SaveOptions, SavePlan


class Result(StrEnum):
    """What became of one guest."""

    SAVED = "saved"
    SHUT_DOWN = "shut down"
    LEFT = "left running"
    STILL_RUNNING = "still running"  # the orderly shutdown did not finish in time: reported, not destroyed
    FAILED = "failed"
    RESTORED = "restored"
    STARTED = "started"


@dataclass(frozen=True, slots=True)
class Step:
    """One guest's planned action and, once applied, its result."""

    name: str
    action: str  # save | shutdown | leave | restore | start
    detail: str = ""  # e.g. the image path, or why this action
    result: Result | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        """Whether the step left the guest as intended."""
        return self.result not in (Result.FAILED, Result.STILL_RUNNING)


def _is_dom0(g: Guest) -> bool:
    return g.id == 0 or g.name == "Domain-0"


def plan_stop(hv: Hypervisor, config: HostConfig, only: Sequence[str] = ()) -> tuple[list[SavePlan], list[Step]]:
    """The guests to save (their plans) and every guest's step, without changing anything."""
    options = _save_options(config, 1)  # only checked here: threads do not matter for a plan
    guests = [g for g in hv.guests() if g.state.is_active and not _is_dom0(g)]
    if only:
        wanted = set(only)
        guests = [g for g in guests if wanted & {g.name, g.uuid, str(g.id)}]
    saves: list[SavePlan] = []
    steps: list[Step] = []
    for g in guests:
        action = config.action(g.name)
        if action is OnStop.SAVE:
            try:
                plan = stream.plan_save(hv, g, options)
            except Dom0Error as exc:
                steps.append(Step(g.name, "shutdown", f"cannot be saved: {exc.message}"))
                continue
            saves.append(plan)
            steps.append(Step(g.name, "save", str(plan.image)))
        elif action is OnStop.SHUTDOWN:
            steps.append(Step(g.name, "shutdown", "configured: on_stop = shutdown"))
        else:
            steps.append(Step(g.name, "leave", "configured: on_stop = leave"))
    return saves, steps


def _jobs(config: HostConfig, count: int) -> int:
    compressed = config.compression is not Compression.NONE
    return config.jobs or batch.default_jobs(config.directory, max(1, count), compressed=compressed)


def _save_options(config: HostConfig, jobs: int) -> SaveOptions:
    # At shutdown an older image of a running guest is stale: the new one replaces it once complete.
    return SaveOptions(config.directory, config.compression, config.level, batch.compressor_threads(jobs), True)


def apply_stop(
    hv: Hypervisor, config: HostConfig, saves: list[SavePlan], steps: list[Step], bar: BarFactory = no_bar
) -> list[Step]:
    """Save in parallel, shut down the rest (and any guest whose save failed), wait; every guest's result."""
    jobs = _jobs(config, len(saves))
    options = _save_options(config, jobs)
    outcomes = {o.name: o for o in batch.save_all(hv, saves, options, jobs, bar)}
    done: list[Step] = []
    to_shut: list[Step] = []
    for step in steps:
        if step.action == "save":
            o = outcomes[step.name]
            if o.ok:
                done.append(Step(step.name, "save", step.detail, Result.SAVED))
            else:
                to_shut.append(Step(step.name, "shutdown", f"save failed: {o.error}"))
        elif step.action == "shutdown":
            to_shut.append(step)
        else:
            done.append(Step(step.name, step.action, step.detail, Result.LEFT))
    return done + _shutdown_all(hv, to_shut, config.shutdown_timeout)


def _shutdown_all(hv: Hypervisor, steps: list[Step], timeout: float) -> list[Step]:
    """Ask all at once, then wait for all together: N slow guests cost one timeout, not N."""
    asked: list[Step] = []
    results: list[Step] = []
    for step in steps:
        try:
            hv.shutdown(step.name)
            asked.append(step)
        except GuestNotFound:
            results.append(Step(step.name, "shutdown", step.detail, Result.SHUT_DOWN))
        except Dom0Error as exc:
            results.append(Step(step.name, "shutdown", step.detail, Result.FAILED, exc.message))
    stopped, running = wait_for_stop(hv, [step.name for step in asked], timeout)
    by_name = {step.name: step for step in asked}
    for name in stopped:
        step = by_name[name]
        results.append(Step(step.name, "shutdown", step.detail, Result.SHUT_DOWN))
    for name in running:
        step = by_name[name]
        message = f"{step.name} did not stop within {timeout:g} s; it is still running (not destroyed)"
        results.append(Step(step.name, "shutdown", step.detail, Result.STILL_RUNNING, message))
    return results


def plan_start(hv: Hypervisor, config: HostConfig, only: Sequence[str] = ()) -> tuple[list[RestorePlan], list[Step]]:
    """The images to restore (checked) and the autostart guests to start; refused images become failed steps."""
    steps: list[Step] = []
    plans: list[RestorePlan] = []
    metas = manifest.find(config.directory) if config.directory.is_dir() else []
    for meta in metas:
        try:
            plan = stream.plan_restore(hv, meta)
        except Dom0Error as exc:
            steps.append(
                Step(meta.name.removesuffix(manifest.SUFFIX), "restore", str(meta), Result.FAILED, exc.message)
            )
            continue
        if only and plan.name not in only:
            continue
        plans.append(plan)
        steps.append(Step(plan.name, "restore", str(plan.image)))
    if config.autostart:
        restoring = {p.name for p in plans}
        for name in hv.autostart_guests():
            if name in restoring or (only and name not in only):
                continue
            try:
                if hv.guest(name).state.is_active:
                    continue
            except GuestNotFound:
                pass  # xl:// knows stopped guests only by their config file
            steps.append(Step(name, "start", "marked to start at boot"))
    return plans, steps


def apply_start(
    hv: Hypervisor, config: HostConfig, plans: list[RestorePlan], steps: list[Step], bar: BarFactory = no_bar
) -> list[Step]:
    """Restore in parallel, then start the autostart guests; every guest's result."""
    jobs = _jobs(config, len(plans))
    outcomes = {o.name: o for o in batch.restore_all(hv, plans, jobs, bar=bar)}
    results: list[Step] = []
    for step in steps:
        if step.result is not None:
            results.append(step)
        elif step.action == "restore":
            o = outcomes[step.name]
            results.append(Step(step.name, "restore", step.detail, Result.RESTORED if o.ok else Result.FAILED, o.error))
        else:
            try:
                hv.start(step.name)
                results.append(Step(step.name, "start", step.detail, Result.STARTED))
            except Dom0Error as exc:
                results.append(Step(step.name, "start", step.detail, Result.FAILED, exc.message))
    return results
