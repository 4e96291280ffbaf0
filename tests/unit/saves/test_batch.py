"""Many guests at once: one guest's failure is reported beside the others' results, never stops them."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from dom0.errors import Dom0Error
from dom0.hypervisor import Hypervisor, UriChoice, connect
from dom0.model import SaveFormat
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


def test_each_worker_has_its_own_connection_closed_afterwards() -> None:
    hv = connect(UriChoice("test:///default", "the test driver"))
    barrier = threading.Barrier(3, timeout=5)
    used: list[Hypervisor] = []

    def work(worker: Hypervisor, name: str) -> str:
        barrier.wait()  # all three in flight together
        used.append(worker)
        return worker.guest("test").name

    outcomes = batch.run_each(hv, ["a", "b", "c"], lambda n: n, work, 3)
    assert [(o.name, o.value) for o in outcomes] == [("a", "test"), ("b", "test"), ("c", "test")]
    assert len({id(w) for w in used}) == 3
    assert any(w is hv for w in used)
    assert hv.guest("test").name == "test"  # the given connection stays open for the caller
    for worker in (w for w in used if w is not hv):
        with pytest.raises(Dom0Error):
            worker.guests()  # the ones opened for the workers are closed


def test_restore_all_reports_each_refused_image_under_its_guest(tmp_path: Path) -> None:
    hv = connect(UriChoice("test:///default", "the test driver"))
    (tmp_path / "web1").write_bytes(b"not a saved guest")
    images = [tmp_path / "db1.manifest.json", tmp_path / "web1"]
    outcomes = batch.restore_all(hv, images, 2)
    assert [o.name for o in outcomes] == ["db1", "web1"]
    assert not any(o.ok for o in outcomes)
    assert "db1.manifest.json" in outcomes[0].error
    assert hv.guest("test").state.is_active  # nothing else touched


def test_only_libvirts_xen_driver_saves_one_guest_at_a_time() -> None:
    # libvirtd's libxl driver died under two saves at once; xl and QEMU guests keep their parallel saves
    assert [f for f in SaveFormat if f.one_at_a_time] == [SaveFormat.LIBXL]
    hv = connect(UriChoice("test:///default", "the test driver"))
    assert (batch.at_once(hv, 4), batch.one_at_a_time(hv), batch.serial_notes(hv, 2)) == (4, "", [])
