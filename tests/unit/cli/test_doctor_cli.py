"""`dom0 doctor` as a user runs it: exit codes, the table, the JSON keys scripts rely on."""

from __future__ import annotations

import json
from pathlib import Path

from nodegen import write_node
from unitkit import dom0


def test_quiet_host_exits_0_with_no_problems_found(tmp_path: Path) -> None:
    r = dom0("-c", "test:///default", "doctor", "--save-dir", str(tmp_path))
    assert r.rc == 0, r.out + r.err
    assert "no problems found" in r.out
    assert r.out.splitlines()[-1].startswith("checked: ")


def test_paused_and_crashed_guests_exit_1_worst_first(tmp_path: Path) -> None:
    node = tmp_path / "node.xml"
    specs = write_node(node, 7)  # blocked, running, blocked, shutoff, paused, running, crashed
    r = dom0("-c", f"test://{node}", "doctor", "--save-dir", str(tmp_path))
    assert r.rc == 1, r.out + r.err
    paused = next(s.name for s in specs if s.state == "paused")
    crashed = next(s.name for s in specs if s.state == "crashed")
    lines = r.out.splitlines()
    first_crashed = next(i for i, line in enumerate(lines) if line.startswith("critical") and crashed in line)
    first_paused = next(i for i, line in enumerate(lines) if line.startswith("warning") and paused in line)
    assert first_crashed < first_paused
    assert "no problems found" not in r.out


def test_json_keys(tmp_path: Path) -> None:
    node = tmp_path / "node.xml"
    specs = write_node(node, 5)
    r = dom0("-c", f"test://{node}", "doctor", "--json", "--save-dir", str(tmp_path))
    assert r.rc == 1, r.err
    doc = json.loads(r.out)
    assert set(doc) == {"findings", "checked"}
    assert all(set(f) == {"severity", "subject", "check", "evidence", "hint"} for f in doc["findings"])
    paused = next(s.name for s in specs if s.state == "paused")
    assert {"severity": "warning", "subject": paused, "check": "state"}.items() <= doc["findings"][0].items()


def test_unknown_guest_is_one_line_and_exit_1(tmp_path: Path) -> None:
    r = dom0("-c", "test:///default", "doctor", "no-such-guest", "--save-dir", str(tmp_path))
    assert r.rc == 1
    assert "Traceback" not in r.err
    assert "no-such-guest" in r.err
