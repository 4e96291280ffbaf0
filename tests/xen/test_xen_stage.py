"""The Xen stage of `make test`: dom0's Xen suite, run inside a real Xen 4.17 dom0 under QEMU (see lab.py).

A failure inside dom0 fails this test; its output is always printed, so the CI log shows the inner run.
"""

from __future__ import annotations

import pytest

from .lab import StageResult


# a boot (lab.BOOT_TIMEOUT) and at most a short second one (conftest.RERUN_TIMEOUT); a cold cache adds the debootstrap
@pytest.mark.timeout(4800)
def test_the_xen_suite_passes_inside_a_real_xen_dom0(
    xen_stage: StageResult, capsys: pytest.CaptureFixture[str]
) -> None:
    r = xen_stage
    with capsys.disabled():
        logs = " ".join(str(p) for p in r.serial_logs)
        print(f"\n===== Xen suite inside dom0 (outputs under {r.outputs}; serial logs {logs}) =====")
        print(r.output or "(no output from the inner pytest)")
        for line in r.crashes:
            print(f"dom0 crash: {line}")
        for name in r.flaky:
            print(f"flaky under emulation (failed, then passed when run again): {name}")
        for line in r.procedures:
            print(f"procedure on Xen: {line}")
        timings = ", ".join(f"{k} {v:.0f} s" for k, v in r.timings.items())
        print(f"===== inner exit code {r.rc}, {r.tests} tests, {len(r.failed)} failed; {timings} =====")
    assert not r.qemu_timed_out, f"QEMU hit its hard timeout; see {logs}"
    assert r.rc is not None, f"dom0 never reported an exit code; see {logs}"
    assert r.tests > 0, "the inner run ran no tests"
    assert not r.failed, "failed inside dom0: " + ", ".join(r.failed)
    assert r.rc == 0, f"the inner pytest exited {r.rc}"
