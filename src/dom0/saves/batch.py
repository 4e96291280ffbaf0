"""Many guests saved or restored at once: a bounded pool, one outcome per guest, no failure stopping the rest."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from dom0.errors import Dom0Error

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Outcome(Generic[R]):
    """What became of one guest: its result, or the error that stopped it."""

    name: str
    value: R | None
    error: str = ""
    hint: str = ""

    @property
    def ok(self) -> bool:
        """Whether this guest's operation succeeded."""
        return not self.error


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
