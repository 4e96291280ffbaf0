"""`dom0 mem`, `dom0 mem set` and `dom0 plan` as a user runs them, on libvirt's test:// driver."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest
from unitkit import DOM0, dom0

TEST = ("-c", "test:///default")
GUEST_KEYS = {
    "name",
    "max_mib",
    "current_mib",
    "used_mib",
    "usable_mib",
    "swap_in_kib_s",
    "swap_out_kib_s",
    "major_faults_s",
    "host_rss_mib",
    "host_pss_mib",
    "verdict",
}
HOST_KEYS = {"total_mib", "available_mib", "committed_max_mib", "committed_current_mib"}


def test_mem_json_has_the_documented_keys_and_null_for_what_is_unknown() -> None:
    r = dom0(*TEST, "mem", "--json", "--sample", "0")
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    assert set(doc["host"]) >= HOST_KEYS
    (g,) = doc["guests"]
    assert set(g) >= GUEST_KEYS
    assert (g["name"], g["current_mib"], g["max_mib"]) == ("test", 2048, 8192)
    # the test driver's guests report nothing from inside: null, never a made-up 0
    assert (g["used_mib"], g["usable_mib"], g["swap_in_kib_s"]) == (None, None, None)
    assert g["verdict"] == "no stats"
    assert doc["host"]["committed_max_mib"] == 8192
    assert any("turned on memory statistics" in n for n in doc["notes"])


def test_mem_table_explains_a_guest_without_statistics() -> None:
    r = dom0(*TEST, "mem", "--sample", "0")
    assert r.rc == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].split() == [
        "Name", "Max", "Now", "Used", "Usable", "SwapIn", "SwapOut", "MajFlt", "HostRSS", "HostPSS", "Verdict"
    ]  # fmt: skip
    assert lines[1].split()[:3] == ["test", "8192", "2048"]
    assert lines[1].endswith("no stats")
    assert "test: no stats: statistics were just turned on" in r.out
    assert "dom0: turned on memory statistics" in r.err


def test_mem_set_moves_the_balloon_and_refuses_more_than_the_maximum() -> None:
    r = dom0(*TEST, "mem", "set", "test", "1G")
    assert r.rc == 0, r.err
    assert re.fullmatch(r"test: 2048 -> 1024 MiB in [\d.]+ s \(at most 8192 MiB\)", r.out.strip())
    r = dom0(*TEST, "mem", "set", "test", "9G")
    assert r.rc == 1
    assert r.err.splitlines()[0] == "dom0: error: test can have at most 8192 MiB now (its maximum); 9216 MiB is more"
    assert "hint: the maximum changes only with a restart" in r.err


@pytest.mark.parametrize(
    ("args", "rc", "words"),
    [
        (("mem", "set", "test"), 2, "usage: dom0 mem set GUEST SIZE"),
        (("mem", "set", "test", "lots"), 2, "'lots' is not a size"),
        (("mem", "set", "nosuch", "1G"), 1, "no guest named 'nosuch'"),
        (("mem", "nosuch"), 1, "no guest named 'nosuch'"),
        (("mem", "--sample", "-1"), 2, "--sample must be between 0"),
        (("plan", "--guest-memory", "0"), 2, "--guest-memory must be at least 1 MiB"),
        (("plan", "--reserve", "x"), 2, "'x' is not a size"),
    ],
)
def test_bad_input_gets_one_line_and_a_hint(args: tuple[str, ...], rc: int, words: str) -> None:
    r = dom0(*TEST, *args)
    assert r.rc == rc
    assert words in r.err.splitlines()[0]
    assert "hint:" in r.err
    assert "Traceback" not in r.err


def test_a_hypervisor_that_does_not_answer_is_one_line_and_a_hint() -> None:
    r = dom0("-c", "qemu+unix:///system?socket=/nonexistent/libvirt-sock", "mem")
    assert r.rc == 1
    assert r.err.startswith("dom0: error: cannot connect to qemu+unix:///system")
    assert "hint:" in r.err


def test_plan_json_counts_both_ways() -> None:
    r = dom0(*TEST, "plan", "--guest-memory", "512M", "--reserve", "1G", "--json")
    assert r.rc == 0, r.err
    plan = json.loads(r.out)
    assert {"fits_by_free", "fits_by_committed", "reserve_mib", "give_back", "needs_more"} <= set(plan)
    assert (plan["guest_memory_mib"], plan["reserve_mib"]) == (512, 1024)
    # the test driver's node: 3072 MiB in all, 8192 promised to its one guest
    assert plan["fits_by_committed"] == 0
    assert plan["give_back"] == []


def test_watch_prints_one_json_document_per_reading_until_interrupted() -> None:
    # SIGINT as from a terminal: a test run started in the background (nohup, `&`) hands its children SIGINT
    # ignored, and an ignored SIGINT stays ignored across exec
    unignore = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", unignore, str(DOM0), *TEST, "mem", "--watch", "0.5", "--sample", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = [proc.stdout.readline(), proc.stdout.readline()]  # two readings, 0.5 s apart, then Ctrl-C
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    readings = [json.loads(line) for line in [*first, *out.splitlines()]]
    assert len(readings) >= 2
    assert all([g["name"] for g in r["guests"]] == ["test"] for r in readings)
