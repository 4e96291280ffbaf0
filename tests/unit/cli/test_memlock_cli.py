"""`dom0 memlock status` read by anyone from the daemon's state file: when no daemon runs, or it died."""

from __future__ import annotations

import json
import os
from pathlib import Path

import unitkit

from dom0 import run


def test_status_when_not_running_says_so_in_one_line_with_a_hint(tmp_path: Path) -> None:
    state = tmp_path / "memlock.json"
    result = unitkit.dom0("memlock", "status", "--state", str(state))
    assert result.rc == 1
    assert result.out == ""
    assert result.err.splitlines() == [
        f"dom0: error: dom0 memlock is not running (no {state})",
        "  hint: start it: systemctl start dom0-memlock (contrib/systemd/dom0-memlock.service), or dom0 memlock run",
    ]


def test_status_of_a_dead_daemon_says_nothing_is_locked(tmp_path: Path) -> None:
    gone = run.run(["sh", "-c", "echo $$"]).stdout.decode().strip()  # a pid that has exited
    kept = tmp_path / "sshd"
    kept.write_bytes(os.urandom(8192))
    doc = {
        "pid": int(gone),
        "started": "2026-01-01T00:00:00+00:00",
        "sources": ["/etc/memlockd.cfg"],
        "budget_bytes": 1 << 20,
        "budget": "5% of RAM = 1.0 MiB",
        "files": [
            {
                "path": str(kept),
                "reason": "config",
                "size": 8192,
                "locked_bytes": 8192,
                "inode": kept.stat().st_ino,
                "left_out_reason": None,
            },
            {
                "path": str(tmp_path / "gone"),
                "reason": "config",
                "size": 10,
                "locked_bytes": 10,
                "inode": 1,
                "left_out_reason": None,
            },
        ],
        "problems": [],
        "totals": {"files": 2, "locked_files": 2, "locked_bytes": 8202, "left_out": 0},
    }
    state = tmp_path / "memlock.json"
    state.write_text(json.dumps(doc))
    result = unitkit.dom0("memlock", "status", "--state", str(state))
    assert result.rc == 1
    assert f"dom0: error: dom0 memlock is not running: process {gone} that wrote {state} is gone" in result.err
    stale = [line.split()[0] for line in result.out.splitlines() if line.rstrip().endswith("stale")]
    assert stale == [str(tmp_path / "gone")]  # deleted on disk while it was held
    as_json = unitkit.dom0("memlock", "status", "--state", str(state), "--json")
    rows = json.loads(as_json.out)["files"]
    assert [(r["stale"], r["resident"]) for r in rows] == [(False, 8192), (True, 0)]
    assert set(rows[0]) >= {"path", "size", "locked_bytes", "resident", "stale"}


def test_status_of_a_file_that_is_not_a_state_file_is_one_line(tmp_path: Path) -> None:
    state = tmp_path / "memlock.json"
    state.write_text('["not", "ours"]')
    result = unitkit.dom0("memlock", "status", "--state", str(state))
    assert result.rc == 1
    assert "Traceback" not in result.err
    assert result.err.splitlines()[0] == f"dom0: error: {state} is not a dom0 memlock state file"
