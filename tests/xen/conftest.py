"""The Xen stage on the host: build (or reuse) the lab image, boot Xen under QEMU, bring the inner results back.

indom0/ is the suite that runs inside the lab's dom0; the host never collects it.

Fixtures:
  xen_stage  (session) the lab.StageResult of one boot, shared by the tests that read it
"""

from __future__ import annotations

import sys

import pytest

from .lab import COLLECT_SECONDS, StageResult, merged, rerun_plan, run_stage

collect_ignore = ["indom0"]
# A lab VM's boot to a ready toolstack (~60 s) with room for a slow one; and the most a second boot may take.
BOOT_SECONDS = 180
RERUN_TIMEOUT = 1200


@pytest.fixture(scope="session")
def xen_stage(pytestconfig: pytest.Config) -> StageResult:
    """Run the whole stage once (minutes: see lab.py)."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def progress(line: str) -> None:
        # straight to the terminal: a long build or boot shows what it is doing even while pytest captures
        with capture.global_and_fixture_disabled():
            print(line, file=sys.stderr, flush=True)

    result = run_stage(log=progress)
    plan = rerun_plan(result)
    if not result.passed and result.crashes and plan:
        # Segfaults of xl, oxenstored or python inside dom0 are a known hazard of Xen under software emulation,
        # not of dom0's code; one more boot of the halves that failed, running only their failed tests, tells the
        # two apart. A failure without crashes is never retried.
        seconds = max(took for _, took in plan.values())
        timeout = min(RERUN_TIMEOUT, BOOT_SECONDS + 2 * seconds + COLLECT_SECONDS)
        progress(
            f"xenlab: dom0 processes crashed under emulation ({len(result.crashes)} signs); booting again for "
            + "; ".join(f"{tag}: {tests}" for tag, (tests, _) in plan.items())
            + f" (hard timeout {timeout:.0f} s)"
        )
        again = run_stage(log=progress, timeout=timeout, tests={tag: tests for tag, (tests, _) in plan.items()})
        result = merged(result, again)
    return result
