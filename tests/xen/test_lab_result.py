"""How the lab reads back what dom0init left in /outputs: a test failing once under emulation, then again or not."""

from __future__ import annotations

from pathlib import Path

from .lab import _result


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
