"""How the lab reads back what dom0init left in /outputs: a test failing once under emulation, then again or not."""

from __future__ import annotations

from pathlib import Path

from .lab import RERUN_TIMEOUT, _result, merged, rerun_plan, second_boot_timeout


def _junit(path: Path, **cases: str) -> None:
    body = {
        "passed": "",
        "failed": '<failure message="boom">boom</failure>',
        "skipped": '<skipped message="later" />',
    }
    rows = "".join(f'<testcase classname="test_guests" name="{n}">{body[how]}</testcase>' for n, how in cases.items())
    path.write_text(f'<testsuites><testsuite name="pytest">{rows}</testsuite></testsuites>')


def _outputs(tmp_path: Path, again: str | None) -> Path:
    out = tmp_path / "xl"
    out.mkdir()
    (out / "pytest-xl.txt").write_text("FAILED test_guests.py::test_save[xl] - TimeoutExpired\n")
    _junit(out / "junit-xl.xml", **{"test_list[xl]": "passed", "test_save[xl]": "failed"})
    if again is not None:
        (out / "pytest-xl-again.txt").write_text(f"test_guests.py::test_save[xl] {again.upper()}\n")
        _junit(out / "junit-xl-again.xml", **{"test_save[xl]": again})
    (out / "rc-xl").write_text("0\n" if again == "passed" else "1\n")
    return out


def test_a_test_that_passes_when_run_again_is_reported_flaky_not_failed(tmp_path: Path) -> None:
    r = _result({"xl": _outputs(tmp_path, "passed")}, [], {})
    assert (r.failed, r.flaky, r.tests, r.passed) == ([], ["test_guests::test_save[xl]"], 2, True)
    assert "the failed tests run again" in r.output


def test_a_test_that_fails_twice_fails_the_stage(tmp_path: Path) -> None:
    r = _result({"xl": _outputs(tmp_path, "failed")}, [], {})
    assert (r.failed, r.flaky, r.passed) == (["test_guests::test_save[xl]"], [], False)


def test_a_failure_without_a_second_run_stays_a_failure(tmp_path: Path) -> None:
    r = _result({"xl": _outputs(tmp_path, None)}, [], {})
    assert (r.failed, r.flaky, r.passed) == (["test_guests::test_save[xl]"], [], False)


def test_a_skipped_second_run_is_no_pass(tmp_path: Path) -> None:
    r = _result({"xl": _outputs(tmp_path, "skipped")}, [], {})
    assert r.failed == ["test_guests::test_save[xl]"]


def test_a_dynamic_loader_assertion_counts_as_a_crash_under_emulation(tmp_path: Path) -> None:
    out = _outputs(tmp_path, None)
    (out / "pytest-xl.txt").write_text(
        "E   dom0: error: cannot list guests: Inconsistency detected by ld.so: dl-version.c: 204: "
        "_dl_check_map_versions: Assertion `needed != NULL' failed!\n"
    )
    r = _result({"xl": out}, [], {})
    assert len(r.crashes) == 1
    assert r.crashes[0].startswith("xl: E   dom0: error: cannot list guests: Inconsistency detected by ld.so")


def test_a_heap_check_abort_of_xl_counts_as_a_crash_under_emulation(tmp_path: Path) -> None:
    out = _outputs(tmp_path, None)
    (out / "pytest-xl.txt").write_text(
        "E           dom0: error: cannot create guest 'dom0test-xl-pvh': corrupted double-linked list\n"
    )
    r = _result({"xl": out}, [], {})
    assert [c.split(": ", 1)[0] for c in r.crashes] == ["xl"]


def test_an_ordinary_failure_is_no_crash(tmp_path: Path) -> None:
    r = _result({"xl": _outputs(tmp_path, None)}, [], {})
    assert r.crashes == []


def test_the_summary_lists_each_procedure_with_its_outcome_and_time(tmp_path: Path) -> None:
    out = tmp_path / "xl"
    out.mkdir()
    (out / "junit-xl.xml").write_text(
        "<testsuites><testsuite>"
        '<testcase classname="test_procedure_clone" name="test_clone_boots[xl://]" time="212.4" />'
        '<testcase classname="test_guests" name="test_list[xl://]" time="3.0" />'
        '<testcase classname="test_procedure_console" name="test_console[xl://]" time="20.6">'
        '<failure message="no prompt" /></testcase>'
        "</testsuite></testsuites>"
    )
    (out / "rc-xl").write_text("1\n")
    r = _result({"xl": out}, [], {})
    assert r.procedures == [
        "xl: test_procedure_clone::test_clone_boots[xl://] passed 212 s",
        "xl: test_procedure_console::test_console[xl://] failed 21 s",
    ]


def test_a_general_protection_fault_in_dom0s_kernel_log_counts_as_a_crash(tmp_path: Path) -> None:
    out = _outputs(tmp_path, None)
    (out / "logs").mkdir()
    (out / "logs" / "dom0-dmesg.txt").write_text(
        "[  12.5] xen-blkback: backend/vbd/1/51712: using 1 queues, protocol 1 (x86_64-abi)\n"
        "[  539.734129] traps: python3[1200] general protection fault ip:52bd80 sp:7ffc72122b70 error:0 in "
        "python3.11[41f000+2b4000]\n"
    )
    r = _result({"xl": out}, [], {})
    assert [c.split("] ", 1)[1][:25] for c in r.crashes] == ["traps: python3[1200] gene"]


def _half_outputs(tmp_path: Path, tag: str, cases: dict[str, tuple[str, str]], rc: int) -> Path:
    """An /outputs of one VM whose junit holds `cases`: classname::name -> (outcome, seconds)."""
    out = tmp_path / tag
    out.mkdir(parents=True)
    body = {"passed": "", "failed": '<failure message="boom" />', "skipped": '<skipped message="later" />'}
    rows = ""
    for key, (how, seconds) in cases.items():
        module, _, name = key.partition("::")
        rows += f'<testcase classname="{module}" name="{name}" time="{seconds}">{body[how]}</testcase>'
    (out / f"junit-{tag}.xml").write_text(f"<testsuites><testsuite>{rows}</testsuite></testsuites>")
    (out / f"rc-{tag}").write_text(f"{rc}\n")
    return out


def test_a_second_boot_runs_a_failed_test_alone_and_a_failed_procedure_whole(tmp_path: Path) -> None:
    first = _result(
        {
            "xl": _half_outputs(
                tmp_path / "1",
                "xl",
                {
                    "test_guests::test_list[xl]": ("passed", "10"),
                    "test_guests::test_save[xl]": ("failed", "50"),
                    "test_procedure_host::test_stop[xl]": ("failed", "90"),
                    "test_procedure_host::test_start[xl]": ("skipped", "1"),
                },
                1,
            ),
            "libvirt": _half_outputs(tmp_path / "1", "libvirt", {"test_guests::test_list[lv]": ("passed", "9")}, 0),
        },
        [],
        {},
    )
    assert rerun_plan(first) == {"xl": ("test_guests.py::test_save[xl],test_procedure_host.py", 141.0)}


def test_a_half_that_reported_nothing_is_not_booted_again(tmp_path: Path) -> None:
    (tmp_path / "xl").mkdir()
    r = _result({"xl": tmp_path / "xl"}, ["xl"], {})
    assert (r.failed, r.qemu_timed_out, rerun_plan(r)) == (["xl: no tests ran"], True, {})


def test_tests_that_pass_on_the_second_boot_are_flaky_and_the_stage_passes(tmp_path: Path) -> None:
    cases = {"test_guests::test_list[xl]": ("passed", "10"), "test_guests::test_save[xl]": ("failed", "50")}
    first = _result({"xl": _half_outputs(tmp_path / "1", "xl", cases, 1)}, [], {"boot": 900.0})
    again = {"test_guests::test_save[xl]": ("passed", "48")}
    second = _result({"xl": _half_outputs(tmp_path / "2", "xl", again, 0)}, [], {"boot": 200.0})
    r = merged(first, second)
    assert (r.failed, r.flaky, r.tests, r.rc, r.passed) == ([], ["test_guests::test_save[xl]"], 2, 0, True)
    assert r.timings == {"boot": 900.0, "second boot": 200.0}
    assert "a second boot ran the failed tests again" in r.output


def test_a_test_that_fails_on_the_second_boot_too_fails_the_stage(tmp_path: Path) -> None:
    cases = {
        "test_procedure_host::test_stop[xl]": ("failed", "90"),
        "test_procedure_host::test_start[xl]": ("skipped", "1"),
    }
    first = _result({"xl": _half_outputs(tmp_path / "1", "xl", cases, 1)}, [], {})
    again = {
        "test_procedure_host::test_stop[xl]": ("passed", "80"),
        "test_procedure_host::test_start[xl]": ("failed", "9"),
    }
    r = merged(first, _result({"xl": _half_outputs(tmp_path / "2", "xl", again, 1)}, [], {}))
    assert (r.failed, r.flaky, r.passed) == (
        ["test_procedure_host::test_start[xl]"],
        ["test_procedure_host::test_stop[xl]"],
        False,
    )
    assert r.procedures == [
        "xl: test_procedure_host::test_stop[xl] passed on a second boot 80 s",
        "xl: test_procedure_host::test_start[xl] failed on a second boot 9 s",
    ]


def test_a_second_boot_gets_twice_its_tests_time_within_the_runs_budget() -> None:
    plan = {"xl": ("test_procedure_host.py", 141.0), "libvirt": ("test_guests.py::test_list[lv]", 20.0)}
    assert second_boot_timeout(plan, 3000.0) == 180 + 2 * 141 + 120
    assert second_boot_timeout(plan, 500.0) == 500.0  # what is left of the run's budget
    assert second_boot_timeout({"xl": ("test_procedure_clone.py", 900.0)}, 3000.0) == RERUN_TIMEOUT
    assert second_boot_timeout(plan, 400.0) is None  # no room for a boot, its tests and the logs
