"""The storage lab stage of `make test`: tests/storagelab run inside a QEMU guest with Debian's kernel (see vm.py).

A failure, or a skip, inside the VM fails this test; the inner output is always printed, so the CI log shows it.
"""

from __future__ import annotations

import os
import sys

import pytest

from .conftest import DISK_ENV
from .vm import run_stage


@pytest.mark.timeout(2400)  # a cold cache adds the debootstrap; the boot itself has its own hard timeout
def test_the_lvm_lab_passes_inside_a_vm_with_device_mapper(
    pytestconfig: pytest.Config, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.environ.get(DISK_ENV):
        pytest.skip(f"{DISK_ENV} is set: the LVM tests run here directly, not in a VM")
    if os.geteuid() != 0:
        pytest.skip("the storage lab VM needs root (debootstrap, device nodes in its image)")
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def progress(line: str) -> None:
        # straight to the terminal: a long build or boot shows what it is doing even while pytest captures
        with capture.global_and_fixture_disabled():
            print(line, file=sys.stderr, flush=True)

    r, skipped = run_stage(log=progress)
    with capsys.disabled():
        serial = r.serial_logs[0]
        print(f"\n===== tests/storagelab inside the VM (outputs under {r.outputs}; serial log {serial}) =====")
        print(r.output or "(no output from the inner pytest)")
        timings = ", ".join(f"{k} {v:.0f} s" for k, v in r.timings.items())
        counts = f"{r.tests} tests, {len(r.failed)} failed, {len(skipped)} skipped"
        print(f"===== inner exit code {r.rc}, {counts}; {timings} =====")
    assert not r.qemu_timed_out, f"QEMU hit its hard timeout; see {r.serial_logs[0]}"
    assert r.rc is not None, f"the VM never reported an exit code; see {r.serial_logs[0]}"
    assert r.tests > 0, "the inner run ran no tests"
    assert not r.failed, "failed inside the VM: " + ", ".join(r.failed)
    assert not skipped, "skipped inside the VM (the lab must run them all): " + ", ".join(skipped)
    assert r.rc == 0, f"the inner pytest exited {r.rc}"
