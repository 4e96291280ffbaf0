"""Many guests saved or restored at once: a bounded pool, one outcome per guest, no failure stopping the rest.

`dom0 save`, `dom0 restore`, `dom0 host stop` and `dom0 host start` all run their guests through `run_each`, each
guest's lock held (`Locks`) from before its save or restore is planned until the run ends.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from dom0.errors import Dom0Error, GuestNotFound
from dom0.filedata import open_regular
from dom0.hypervisor import Hypervisor, PerThread
from dom0.locks import GuestBusy, Held, Holder, LockKey, hold, hold_available
from dom0.model import BarFactory, Guest, no_bar
from dom0.saves import codec, manifest, stream
from dom0.saves.codec import Compression
from dom0.saves.manifest import Manifest
from dom0.saves.stream import RestorePlan, SaveOptions, SavePlan

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Outcome(Generic[R]):
    """What became of one guest: its result, or the error that stopped it."""

    name: str
    value: R | None
    error: str = ""
    hint: str = ""
    skipped: str = ""  # another dom0 run holds the guest: who ("being saved by dom0 pid 4242 since 20:20:13")

    @property
    def ok(self) -> bool:
        """Whether this guest's operation succeeded."""
        return not self.error


SKIPPED_HINT = "another dom0 run is changing it: this run left it alone; run again for it once that run has ended"


def skipped(name: str, holder: Holder) -> Outcome[Any]:
    """The outcome of a guest a host-wide run left alone because another run holds its lock."""
    words = holder.words()
    return Outcome(name, None, f"{name} skipped: {words}", SKIPPED_HINT, words)


class Locks:
    """The guests' locks one run holds, taken before anything is planned or touched and let go together at its end.

    Named guests are all or nothing (GuestBusy naming the holder: exit 1, nothing done); a host-wide run (`every`)
    acts on the guests that are free and reports the others as skipped instead of failing everything. `wait`
    (seconds, math.inf for ever) waits for busy guests first: a host-wide run then waits for all of them together,
    holding none while it waits (so two such runs never wait on each other), and skips those still busy after it.
    """

    def __init__(
        self,
        action: str,
        *,
        every: bool,
        wait: float | None = None,
        waiting: Callable[[LockKey, Holder], None] | None = None,
    ) -> None:
        self.action = action
        self.every = every
        self.wait = wait
        self.waiting = waiting
        self._held: list[Held] = []

    def take(
        self, items: Sequence[T], name_of: Callable[[T], str], key_of: Callable[[T], LockKey | None]
    ) -> tuple[list[T], list[Outcome[Any]]]:
        """The items to act on (their guests' locks now held), and outcomes for the rest: skipped (held by another
        run) or refused (`key_of` said why no guest could be told from it). An item whose key is None names no guest
        the hypervisor knows and is acted on unlocked: its own checks refuse it."""
        keyed: list[tuple[T, LockKey | None]] = []
        left: list[Outcome[Any]] = []
        for item in items:
            try:
                keyed.append((item, key_of(item)))
            except Dom0Error as exc:
                left.append(Outcome(name_of(item), None, exc.message, exc.hint))
        keys = [key for _, key in keyed if key is not None]
        busy: dict[str, Holder] = {}
        if not self.every:
            self._held.append(hold(keys, self.action, wait=self.wait, waiting=self.waiting))
        elif self.wait is None:
            held, taken = hold_available(keys, self.action)
            self._held.append(held)
            busy = {key.file_name: holder for key, holder in taken}
        else:
            try:
                self._held.append(hold(keys, self.action, wait=self.wait, waiting=self.waiting))
            except GuestBusy:
                held, taken = hold_available(keys, self.action)
                self._held.append(held)
                busy = {key.file_name: holder for key, holder in taken}
        acting: list[T] = []
        for item, key in keyed:
            holder = busy.get(key.file_name) if key is not None else None
            if holder is None:
                acting.append(item)
            else:
                left.append(skipped(name_of(item), holder))
        return acting, left

    def release(self) -> None:
        """Let every lock go (the kernel would at exit; a long-lived caller should not wait for that)."""
        while self._held:
            self._held.pop().release()

    def __enter__(self) -> Locks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def rotational(directory: Path) -> bool:
    """Whether `directory` lies on a spinning disk (parallel writes then seek against each other)."""
    try:
        dev = os.stat(directory).st_dev
        sys_dev = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
        queue = sys_dev / "queue" if (sys_dev / "queue").exists() else sys_dev.resolve().parent / "queue"
        return (queue / "rotational").read_text().strip() == "1"
    except OSError:
        return False  # not a block device (tmpfs, overlay, NFS): nothing to seek


def default_jobs(directory: Path, count: int, *, compressed: bool = True) -> int:
    """Guests handled at once: two per core, but two for uncompressed images on a spinning disk; never more than
    there are guests.

    Two per core because each save or restore spends much of its time waiting on the hypervisor (starting QEMU,
    reaping it after a save) rather than compressing: one per core left cores idle (bench/save_bench.py). Only raw
    images move fast enough for parallel streams to seek against each other on a spinning disk.
    """
    cores = os.cpu_count() or 1
    jobs = 2 if not compressed and rotational(directory) else 2 * cores
    return max(1, min(jobs, count))


def at_once(hv: Hypervisor, jobs: int) -> int:
    """`jobs`, or 1 where the hypervisor's driver saves and restores only one guest at a time."""
    return 1 if one_at_a_time(hv) else jobs


def one_at_a_time(hv: Hypervisor) -> str:
    """Why this hypervisor saves and restores one guest at a time, in words; "" where it may run several."""
    form = hv.save_format
    if form is None or not form.one_at_a_time:
        return ""
    return f"{form.description} saves and restores one guest at a time"


def serial_notes(hv: Hypervisor, count: int) -> list[str]:
    """The note to print before saving or restoring `count` guests one after another on this hypervisor, if any."""
    why = one_at_a_time(hv) if count > 1 else ""
    return [why] if why else []


def compressor_threads(jobs: int) -> int:
    """zstd worker threads per guest, so that all guests together use every core once."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def run_all(items: Sequence[T], name_of: Callable[[T], str], work: Callable[[T], R], jobs: int) -> list[Outcome[R]]:
    """Run `work` on every item, `jobs` at a time; outcomes in the items' order."""

    def one(item: T) -> Outcome[R]:
        try:
            return Outcome(name_of(item), work(item))
        except Dom0Error as exc:
            return Outcome(name_of(item), None, exc.message, exc.hint)

    if jobs <= 1 or len(items) <= 1:
        return [one(item) for item in items]
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="dom0-job") as pool:
        return list(pool.map(one, items))


@dataclass(frozen=True, slots=True)
class SaveBatch:
    """The guests `save_all` would save, planned and checked, and how many at a time; `left` holds the guests
    another run holds (skipped), which are not saved."""

    plans: tuple[SavePlan, ...]
    options: SaveOptions
    jobs: int
    left: tuple[Outcome[Any], ...] = ()
    serial: str = ""  # why `jobs` is 1 whatever was asked (`one_at_a_time`)


def plan_saves(
    hv: Hypervisor,
    refs: Sequence[str] | None,
    directory: Path,
    compression: Compression,
    level: int,
    *,
    jobs: int | None = None,
    replace: bool = False,
    locks: Locks | None = None,
) -> SaveBatch:
    """Plan saving the guests `refs` names (every running guest when None) into `directory`, changing nothing.

    Every guest is planned before anything is created, so a guest or driver that cannot be saved is refused
    first (Dom0Error). `jobs` None chooses `default_jobs`. With `locks`, each guest's lock is taken first and the
    guest looked at again under it: another run may have saved or stopped it meanwhile.
    """
    guests = [g for g in hv.guests() if g.state.is_active] if refs is None else [hv.guest(ref) for ref in refs]
    left: list[Outcome[Any]] = []
    if locks is not None:
        guests, left = locks.take(guests, lambda g: g.name, lambda g: LockKey(g.uuid, g.name))
        guests = [now for now in (_again(hv, g, every=refs is None) for g in guests) if now is not None]
    target = directory if directory.is_dir() else directory.parent
    jobs = at_once(hv, jobs or default_jobs(target, len(guests), compressed=compression is not Compression.NONE))
    options = SaveOptions(directory, compression, level, compressor_threads(jobs), replace)
    plans = tuple(stream.plan_save(hv, g, options) for g in guests)
    return SaveBatch(plans, options, jobs, tuple(left), one_at_a_time(hv))


def _again(hv: Hypervisor, guest: Guest, *, every: bool) -> Guest | None:
    """`guest` as it is now; for a host-wide run None once it no longer runs (a named guest's plan says why)."""
    try:
        now = hv.guest(guest.uuid)
    except GuestNotFound:
        if every:
            return None  # a transient guest another run saved: nothing of it is left to save
        raise
    return now if now.state.is_active or not every else None


def restore_jobs(images: Sequence[Path]) -> int:
    """`default_jobs` for restoring `images` (raw ones when none is compressed); at least one image."""
    return default_jobs(images[0].parent, len(images), compressed=not any(map(_raw, images)))


def _raw(path: Path) -> bool:
    """Whether `path` names an uncompressed image (a bare hypervisor image, or a manifest of one)."""
    try:
        if path.name.endswith(manifest.SUFFIX):
            return manifest.read(path).compression is Compression.NONE
        with os.fdopen(open_regular(path), "rb") as f:  # a FIFO or device given as an image hangs nothing
            return codec.detect(f.read(8)) is Compression.NONE
    except (Dom0Error, OSError):
        return False  # its check refuses it, with the reason


def make_directory(directory: Path) -> None:
    """Create the save directory (only its owner may enter it), or Dom0Error saying why not."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise Dom0Error(f"cannot create {directory}: {exc.strerror}", "give a writable directory with -d") from exc


def run_each(
    hv: Hypervisor, items: Sequence[T], name_of: Callable[[T], str], work: Callable[[Hypervisor, T], R], jobs: int
) -> list[Outcome[R]]:
    """`run_all`, each worker thread talking to the hypervisor through its own connection (`work`'s first argument).

    The one worker loop behind save, restore, host stop and host start; the connections it opened are closed
    however it ends (a failure, Ctrl-C).
    """
    workers = PerThread(hv)
    try:
        return run_all(items, name_of, lambda item: work(workers.get(), item), jobs)
    finally:
        workers.close()


def save_all(
    hv: Hypervisor, plans: Sequence[SavePlan], options: SaveOptions, jobs: int, bar: BarFactory = no_bar
) -> list[Outcome[Manifest]]:
    """Save the planned guests into `options.directory` (created if need be), `jobs` at a time (one where the driver
    allows no more), one progress bar each; one outcome per guest, in the plans' order."""
    make_directory(options.directory)

    def one(worker: Hypervisor, plan: SavePlan) -> Manifest:
        return stream.save_guest(worker, plan, options, bar(plan.guest.name, plan.guest.memory_kib * 1024))

    return run_each(hv, plans, lambda p: p.guest.name, one, at_once(hv, jobs))


def restore_all(
    hv: Hypervisor,
    images: Sequence[Path | RestorePlan],
    jobs: int,
    *,
    paused: bool = False,
    keep: bool = False,
    bar: BarFactory = no_bar,
) -> list[Outcome[Guest]]:
    """Restore images (paths, or plans already checked), `jobs` at a time (one where the driver allows no more), one
    progress bar each; in their order."""

    def one(worker: Hypervisor, image: Path | RestorePlan) -> Guest:
        # A path is checked whole (size, checksum, header) just before its own restore: the checks of the others
        # overlap the hypervisor starting this one, and a refused image stops only itself.
        plan = image if isinstance(image, RestorePlan) else stream.plan_restore(worker, image, paused=paused)
        size = plan.record.stored_bytes if plan.record else plan.image.stat().st_size
        return stream.restore_image(worker, plan, keep=keep, progress=bar(plan.name, size))

    return run_each(hv, images, image_name, one, at_once(hv, jobs))


def check_all(hv: Hypervisor, paths: Sequence[Path], jobs: int, *, paused: bool = False) -> list[Outcome[RestorePlan]]:
    """Check every image as its restore would, `jobs` at a time, restoring nothing."""
    return run_each(hv, paths, image_name, lambda worker, p: stream.plan_restore(worker, p, paused=paused), jobs)


def image_name(image: Path | RestorePlan) -> str:
    """The guest an image, manifest path or restore plan is named after."""
    if isinstance(image, RestorePlan):
        return image.name
    return image.name.removesuffix(manifest.SUFFIX) if image.name.endswith(manifest.SUFFIX) else image.name
