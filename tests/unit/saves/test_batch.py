"""Many guests at once: one guest's failure is reported beside the others' results, never stops them."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from dom0.errors import Dom0Error
from dom0.saves import batch


def _work(name: str) -> str:
    if name.startswith("bad"):
        raise Dom0Error(f"cannot save {name}", "free some space")
    return name.upper()


@pytest.mark.parametrize("jobs", [1, 3])
def test_one_failure_does_not_stop_the_rest(jobs: int) -> None:
    names = ["a", "bad1", "b", "c", "bad2"]
    outcomes = batch.run_all(names, lambda n: n, _work, jobs)
    assert [o.name for o in outcomes] == names  # in the order asked, whatever finished first
    assert [o.ok for o in outcomes] == [True, False, True, True, False]
    assert [o.value for o in outcomes if o.ok] == ["A", "B", "C"]
    assert (outcomes[1].error, outcomes[1].hint) == ("cannot save bad1", "free some space")


def test_jobs_run_at_once() -> None:
    # Three guests with jobs=3 must all be in flight together: each waits for the other two.
    barrier = threading.Barrier(3, timeout=5)
    outcomes = batch.run_all(["a", "b", "c"], lambda n: n, lambda n: barrier.wait() >= 0, 3)
    assert all(o.ok and o.value for o in outcomes)


def test_default_jobs_never_exceed_the_guests(tmp_path: Path) -> None:
    assert batch.default_jobs(tmp_path, 1) == 1
    assert batch.default_jobs(tmp_path, 0) == 1
    # with guests to spare: two per core, or two for raw images on a spinning disk
    cores = os.cpu_count() or 1
    assert batch.default_jobs(tmp_path, 100) == 2 * cores
    raw = 2 if batch.rotational(tmp_path) else 2 * cores
    assert batch.default_jobs(tmp_path, 100, compressed=False) == raw
    assert batch.compressor_threads(1000) == 1
