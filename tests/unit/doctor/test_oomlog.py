"""OOM kills read from crafted guest console text: several kernels' formats, hostile bytes, huge lines."""

from __future__ import annotations

import os
from pathlib import Path

from dom0.doctor import oomlog
from dom0.doctor.findings import Severity
from dom0.hypervisor.protocol import LogText

MODERN = """\
[  812.104511] stress invoked oom-killer: gfp_mask=0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO), order=0
[  812.104600] Mem-Info:
[  812.104911] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),global_oom,task=stress,pid=1234,uid=0
[  812.104950] Out of memory: Killed process 1234 (stress) total-vm:530000kB, anon-rss:200000kB, file-rss:4kB
[  812.110000] oom_reaper: reaped process 1234 (stress), now anon-rss:0kB
"""

OLD = """\
Mar  3 04:10:01 web kernel: spf-policy.pl invoked oom-killer: gfp_mask=0x201d2, order=0, oomkilladj=0
Mar  3 04:10:01 web kernel: Out of memory: Kill process 2211 (apache2) score 87 or sacrifice child
Mar  3 04:10:01 web kernel: Killed process 2213 (apache2) total-vm:41000kB, anon-rss:21000kB
Mar  3 04:12:44 web kernel: Out of memory: Killed process 2301 (spf-policy.pl).
"""

CGROUP = "2024-05-01T10:00:00.123+0000 db kernel: Memory cgroup out of memory: Killed process 77 (mysqld) x\n"


def test_modern_kernel_kill_is_one_kill_with_name_pid_and_boot_seconds() -> None:
    kills = oomlog.scan(MODERN)
    assert kills == (oomlog.OomKill("stress", 1234, "812.1 s after the guest booted"),)


def test_old_kernels_candidate_then_victim_and_syslog_time() -> None:
    kills = oomlog.scan(OLD)
    assert [(k.process, k.pid) for k in kills] == [("apache2", 2213), ("spf-policy.pl", 2301)]
    assert kills[0].when == "Mar  3 04:10:01"


def test_cgroup_kill_with_iso_time_and_finding_counts_the_kills(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_text(OLD + CGROUP)
    found = oomlog.read_log("web", LogText(f"console log of web ({log})", log.read_text()))
    finding = oomlog.finding(found)
    assert finding is not None
    assert finding.severity is Severity.WARNING
    assert finding.subject == "web"
    assert finding.evidence.startswith("3 OOM kills in console log of web")
    assert "last killed mysqld (pid 77) at 2024-05-01T10:00:00" in finding.evidence
    assert "apache2" in finding.evidence
    assert "spf-policy.pl" in finding.evidence


def test_kill_without_timestamp_gives_the_files_time(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_text("Out of memory: Killed process 9 (php-fpm)\n")
    os.utime(log, (1_700_000_000, 1_700_000_000))
    finding = oomlog.finding(oomlog.read_log("g", LogText(f"console log of g ({log})", log.read_text())))
    assert finding is not None
    assert "time unknown (the log was last written 2023-11-" in finding.evidence


def test_hostile_control_characters_stay_in_the_name_and_huge_lines_are_cut() -> None:
    evil = "Out of memory: Killed process 66 (\x1b]0;pwned\x07x)\n"
    huge = "A" * (3 << 20) + " Out of memory: Killed process 5 (hidden)\n"
    kills = oomlog.scan(evil + huge)
    assert [k.pid for k in kills] == [66]  # the marker past MAX_LINE in the 3 MiB line is not read
    assert kills[0].process == "\x1b]0;pwned\x07x"  # kept as written: the CLI escapes it when printing


def test_no_kills_no_finding() -> None:
    assert oomlog.finding(oomlog.read_log("g", LogText("log", "[ 1.0] Linux version 6.1\nlogin:\n"))) is None
