"""`dom0 memlock check` as an administrator runs it: the table, the totals, problems as dom0: lines, the JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

from unitkit import dom0


def _config(tmp_path: Path, *extra: str) -> tuple[Path, Path]:
    tool = tmp_path / "tool.txt"
    tool.write_bytes(b"x" * 3000)
    cfg = tmp_path / "memlockd.cfg"
    cfg.write_text("\n".join(["# support session", "+/bin/bash", str(tool), *extra]) + "\n")
    return cfg, tool


def _loop_config(tmp_path: Path) -> Path:
    loop = tmp_path / "loop.cfg"
    loop.write_text(f"%{loop}\n")
    return loop


def test_check_prints_each_file_why_and_totals_against_the_budget(tmp_path: Path) -> None:
    cfg, tool = _config(tmp_path)
    r = dom0("memlock", "check", "-c", str(cfg))
    assert r.rc == 0, r.err
    assert r.err == ""
    lines = r.out.splitlines()
    assert lines[0].split() == ["PATH", "SIZE", "WHY"]
    bash = os.path.realpath("/bin/bash")
    assert any(line.startswith(bash) and line.endswith(f"config {cfg}:2") for line in lines)
    assert any(line.endswith("library of /bin/bash") and "libc.so.6" in line for line in lines)
    assert any(line.startswith(str(tool)) and "2.9 KiB" in line for line in lines)
    # root holds CAP_IPC_LOCK, with which its 8 MiB RLIMIT_MEMLOCK does not bind: the share of RAM is the budget
    assert any(line.startswith("budget (5% of RAM = ") and line.endswith("): fits") for line in lines)
    assert f"read from: {cfg}" in lines


def test_check_lists_every_problem_and_exits_1_after_printing_everything(tmp_path: Path) -> None:
    cfg, tool = _config(tmp_path, f"{tmp_path / 'gone'}", f"%{_loop_config(tmp_path)}")
    r = dom0("memlock", "check", "-c", str(cfg))
    assert r.rc == 1
    assert str(tool) in r.out  # the rest is still shown
    problems = [line for line in r.err.splitlines() if line.startswith("dom0: ")]
    assert problems[0] == f"dom0: {cfg}:4: {tmp_path / 'gone'} does not exist (prefix the line with ? if that is fine)"
    assert "include loop" in problems[1]
    assert len(problems) == 2
    assert "Traceback" not in r.err


def test_check_json_has_files_total_problems_and_sources(tmp_path: Path) -> None:
    cfg, tool = _config(tmp_path, "?/nonexistent/tool")
    r = dom0("memlock", "check", "-c", str(cfg), "--json")
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    assert {"path": str(tool), "size": 3000, "reason": f"config {cfg}:3"} in doc["files"]
    assert doc["total_bytes"] == sum(f["size"] for f in doc["files"])
    assert doc["problems"] == []
    assert doc["sources"] == [str(cfg)]
