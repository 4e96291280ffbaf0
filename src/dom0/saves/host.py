"""`dom0 host stop` and `dom0 host start`: what xendomains and libvirt-guests do at host shutdown and boot, in parallel.

Stop saves every running guest (a guest whose save fails gets an orderly shutdown instead) and shuts down the
guests configured so; a guest still running after the timeout is reported, never destroyed. Start restores every
saved guest, then starts the guests marked to start at boot that are not running yet. A guest another dom0 run is
changing (its lock held) is skipped and reported: neither run undoes the other's work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from dom0.errors import Dom0Error, GuestNotFound
from dom0.hypervisor import Hypervisor
from dom0.hypervisor.control import wait_for_stop
from dom0.locks import LockKey
from dom0.model import BarFactory, Guest, no_bar
from dom0.saves import batch, manifest, stream
from dom0.saves.batch import Locks, Outcome
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
    SKIPPED = "skipped"  # another dom0 run holds the guest: this run did not touch it


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
        return self.result not in (Result.FAILED, Result.STILL_RUNNING, Result.SKIPPED)


def _left_step(o: Outcome[Any], action: str) -> Step:
    """The step of a guest the locks left out: skipped (with the holder's words) or refused."""
    if o.skipped:
        return Step(o.name, action, o.skipped, Result.SKIPPED, o.error)  # "web skipped: being saved by ..."
    return Step(o.name, action, "", Result.FAILED, o.error)


def _is_dom0(g: Guest) -> bool:
    return g.id == 0 or g.name == "Domain-0"


def plan_stop(
    hv: Hypervisor, config: HostConfig, only: Sequence[str] = (), locks: Locks | None = None
) -> tuple[list[SavePlan], list[Step]]:
    """The guests to save (their plans) and every guest's step, without changing anything.

    With `locks`, the lock of every guest to save or shut down is taken first: one another run holds becomes a
    skipped step (its save left to that run), the others are looked at again under their locks."""
    options = _save_options(config, 1)  # only checked here: threads do not matter for a plan
    guests = [g for g in hv.guests() if g.state.is_active and not _is_dom0(g)]
    if only:
        wanted = set(only)
        guests = [g for g in guests if wanted & {g.name, g.uuid, str(g.id)}]
    saves: list[SavePlan] = []
    steps: list[Step] = []
    if locks is not None:
        changing = [g for g in guests if config.action(g.name) is not OnStop.LEAVE]
        acting, left = locks.take(changing, lambda g: g.name, lambda g: LockKey(g.uuid, g.name))
        steps += [_left_step(o, "save" if config.action(o.name) is OnStop.SAVE else "shutdown") for o in left]
        taken = {g.uuid for g in acting}
        guests = [g for g in guests if g.uuid in taken or config.action(g.name) is OnStop.LEAVE]
        guests = [now for now in (_still_running(hv, g) for g in guests) if now is not None]
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


def _still_running(hv: Hypervisor, guest: Guest) -> Guest | None:
    """`guest` as it is now, or None once it stopped (another run saved or shut it down before its lock was ours)."""
    try:
        now = hv.guest(guest.uuid)
    except GuestNotFound:
        return None
    return now if now.state.is_active else None


def _jobs(hv: Hypervisor, config: HostConfig, count: int) -> int:
    compressed = config.compression is not Compression.NONE
    return batch.at_once(hv, config.jobs or batch.default_jobs(config.directory, max(1, count), compressed=compressed))


def _save_options(config: HostConfig, jobs: int) -> SaveOptions:
    # At shutdown an older image of a running guest is stale: the new one replaces it once complete.
    return SaveOptions(config.directory, config.compression, config.level, batch.compressor_threads(jobs), True)


def apply_stop(
    hv: Hypervisor, config: HostConfig, saves: list[SavePlan], steps: list[Step], bar: BarFactory = no_bar
) -> list[Step]:
    """Save in parallel, shut down the rest (and any guest whose save failed), wait; every guest's result."""
    jobs = _jobs(hv, config, len(saves))
    options = _save_options(config, jobs)
    outcomes = {o.name: o for o in batch.save_all(hv, saves, options, jobs, bar)}
    done: list[Step] = []
    to_shut: list[Step] = []
    for step in steps:
        if step.result is not None:
            done.append(step)  # skipped: another run holds it
        elif step.action == "save":
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


def plan_start(
    hv: Hypervisor, config: HostConfig, only: Sequence[str] = (), locks: Locks | None = None
) -> tuple[list[RestorePlan], list[Step]]:
    """The images to restore (checked) and the autostart guests to start; refused images become failed steps.

    With `locks`, the locks of the saved guests (by the UUID each manifest records) and of the autostart guests are
    taken first, all in one go: a guest another run holds becomes a skipped step."""
    steps: list[Step] = []
    plans: list[RestorePlan] = []
    metas = manifest.find(config.directory) if config.directory.is_dir() else []
    autostart = hv.autostart_guests() if config.autostart else []
    if locks is not None:
        items = [("restore", str(meta)) for meta in metas] + [("start", name) for name in autostart]
        items = [item for item in items if not only or _start_name(item) in only]  # only the asked-for: locked
        acting, left = locks.take(items, _start_name, lambda item: _start_key(hv, item))
        kinds = {_start_name(item): item[0] for item in reversed(items)}  # a restore before a start
        for o in left:
            if o.name not in {s.name for s in steps}:  # a guest both saved and marked to start: one step
                steps.append(_left_step(o, kinds[o.name]))
        metas = [Path(where) for kind, where in acting if kind == "restore"]
        autostart = [name for kind, name in acting if kind == "start"]
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
    if autostart:
        restoring = {p.name for p in plans}
        for name in autostart:
            if name in restoring or (only and name not in only):
                continue
            try:
                if hv.guest(name).state.is_active:
                    continue
            except GuestNotFound:
                pass  # xl:// knows stopped guests only by their config file
            steps.append(Step(name, "start", "marked to start at boot"))
    return plans, steps


def _start_name(item: tuple[str, str]) -> str:
    kind, where = item
    return Path(where).name.removesuffix(manifest.SUFFIX) if kind == "restore" else where


def _start_key(hv: Hypervisor, item: tuple[str, str]) -> LockKey | None:
    """A saved guest's lock is the UUID its manifest records; an autostart guest's, the one the hypervisor knows."""
    kind, where = item
    if kind == "restore":
        return stream.restore_key(Path(where))
    try:
        guest = hv.guest(where)
    except GuestNotFound:
        return None  # xl:// knows a stopped guest only by its config file: started unlocked, as xl would
    return LockKey(guest.uuid, guest.name)


def apply_start(
    hv: Hypervisor, config: HostConfig, plans: list[RestorePlan], steps: list[Step], bar: BarFactory = no_bar
) -> list[Step]:
    """Restore in parallel, then start the autostart guests; every guest's result."""
    jobs = _jobs(hv, config, len(plans))
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
