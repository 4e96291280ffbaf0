"""The Xen stage on the host: build (or reuse) the lab image, boot Xen under QEMU, bring the inner results back.

indom0/ is the suite that runs inside the lab's dom0; the host never collects it.

Fixtures:
  xen_stage  (session) the lab.StageResult of one boot, shared by the tests that read it
"""

from __future__ import annotations

import os
import sys
import time

import pytest

from .lab import StageResult, merged, rerun_plan, run_stage, second_boot_timeout

collect_ignore = ["indom0"]
# CI stops `make test` at 90 minutes, its setup included: the stage's boots fit in what is left of this much of the
# pytest run (counted from collection, when this file is imported), so a slow day ends in a report, not a kill.
RUN_BUDGET = float(os.environ.get("DOM0_TEST_BUDGET", str(80 * 60)))
_STARTED = time.monotonic()


def _budget_left() -> float:
    return RUN_BUDGET - (time.monotonic() - _STARTED)


@pytest.fixture(scope="session")
def xen_stage(pytestconfig: pytest.Config) -> StageResult:
    """Run the whole stage once (minutes: see lab.py)."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def progress(line: str) -> None:
        # straight to the terminal: a long build or boot shows what it is doing even while pytest captures
        with capture.global_and_fixture_disabled():
            print(line, file=sys.stderr, flush=True)

    result = run_stage(log=progress, deadline=_STARTED + RUN_BUDGET)
    plan = rerun_plan(result)
    if not result.passed and result.crashes and plan:
        # Segfaults of xl, oxenstored or python inside dom0 are a known hazard of Xen under software emulation,
        # not of dom0's code; one more boot of the halves that failed, running only their failed tests, tells the
        # two apart. A failure without crashes is never retried.
        timeout = second_boot_timeout(plan, _budget_left())
        if timeout is None:
            progress("xenlab: dom0 processes crashed under emulation, but the run's budget has no room to boot again")
            return result
        progress(
            f"xenlab: dom0 processes crashed under emulation ({len(result.crashes)} signs); booting again for "
            + "; ".join(f"{tag}: {tests}" for tag, (tests, _) in plan.items())
            + f" (hard timeout {timeout:.0f} s)"
        )
        again = run_stage(log=progress, timeout=timeout, tests={tag: tests for tag, (tests, _) in plan.items()})
        result = merged(result, again)
    return result
