"""memlockd's config format expanded: which files `dom0 memlock` would lock, and one problem line per bad line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from dom0.memlock import config
from dom0.memlock.config import expand


def _file(path: Path, data: bytes = b"x" * 100, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _paths(config: Path) -> list[Path]:
    return [f.path for f in expand(config).files]


def test_plus_question_include_bang_and_comments_expand_to_exactly_these_files(tmp_path: Path) -> None:
    a = _file(tmp_path / "a.txt")
    b = _file(tmp_path / "b.txt")
    script = _file(tmp_path / "tool.sh", b"#!/bin/sh\necho hi\n")
    shared = _file(tmp_path / "shared.txt", mode=0o666)
    _file(tmp_path / "others.txt", mode=0o666)
    (tmp_path / "a-link").symlink_to(a)
    inc = tmp_path / "inc.cfg"
    inc.write_text(f"# included\n{b}\n{tmp_path / 'a-link'}\n")
    cfg = tmp_path / "main.cfg"
    cfg.write_text(
        f"# memlockd config\n\n{a}\n?{tmp_path / 'missing'}\n?+{tmp_path / 'missing-too'}\n%{inc}\n"
        f"+{script}\n!{shared}\n{tmp_path / 'others.txt'}\n"
    )
    exp = expand(cfg)
    assert [f.path for f in exp.files] == [a, b, script, shared]
    assert exp.problems == ()
    assert exp.sources == (str(cfg), str(inc))
    reasons = {f.path: f.reason for f in exp.files}
    assert reasons[b] == f"config {inc}:2"
    assert [f.writable_by_others for f in exp.files] == [False, False, False, True]
    assert any("tool.sh is not an ELF file" in n for n in exp.notes)
    assert any("left out" in n and "others.txt" in n for n in exp.notes)


def test_symlink_entry_locks_the_real_file_once(tmp_path: Path) -> None:
    real = _file(tmp_path / "dash")
    (tmp_path / "sh").symlink_to(real)
    cfg = tmp_path / "c.cfg"
    cfg.write_text(f"{tmp_path / 'sh'}\n{real}\n")
    assert _paths(cfg) == [real]


def test_include_loop_is_one_problem_and_the_rest_still_listed(tmp_path: Path) -> None:
    a, b = _file(tmp_path / "a"), _file(tmp_path / "b")
    one, two = tmp_path / "one.cfg", tmp_path / "two.cfg"
    one.write_text(f"{a}\n%{two}\n")
    two.write_text(f"%{one}\n{b}\n")
    exp = expand(one)
    assert [f.path for f in exp.files] == [a, b]
    assert exp.problems == (f"{two}:1: include loop: {one} -> {two} -> {one}; not followed",)


def test_missing_file_without_question_mark_is_one_problem_naming_file_and_line(tmp_path: Path) -> None:
    a = _file(tmp_path / "a")
    cfg = tmp_path / "c.cfg"
    cfg.write_text(f"{tmp_path / 'gone'}\n{a}\n")
    exp = expand(cfg)
    assert [f.path for f in exp.files] == [a]
    assert len(exp.problems) == 1
    assert exp.problems[0].startswith(f"{cfg}:1: {tmp_path / 'gone'} does not exist")


def test_non_regular_file_and_an_include_that_is_a_fifo_are_refused(tmp_path: Path) -> None:
    a = _file(tmp_path / "a")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cfg = tmp_path / "c.cfg"
    cfg.write_text(f"{fifo}\n%{fifo}\n/dev/null\n{a}\n")
    exp = expand(cfg)  # a FIFO opened for reading would hang here
    assert [f.path for f in exp.files] == [a]
    assert len(exp.problems) == 3
    assert exp.problems[0] == f"{cfg}:1: {fifo} is a FIFO; only regular files are locked"
    assert exp.problems[1].startswith(f"{cfg}:2: {fifo} is a FIFO")
    assert exp.problems[2] == f"{cfg}:3: /dev/null is a character device; only regular files are locked"


def test_config_directory_reads_cfg_files_in_name_order_and_refuses_links_outside(tmp_path: Path) -> None:
    a, b, secret = _file(tmp_path / "a"), _file(tmp_path / "b"), _file(tmp_path / "secret.cfg")
    secret.write_text(f"{b}\n")
    d = tmp_path / "memlockd.d"
    d.mkdir()
    (d / "20-b.cfg").write_text(f"{b}\n")
    (d / "10-a.cfg").write_text(f"{a}\n")
    (d / "notes.txt").write_text("/etc/shadow\n")
    (d / "30-out.cfg").symlink_to(secret)
    exp = expand(d)
    assert [f.path for f in exp.files] == [a, b]
    assert exp.sources == (str(d / "10-a.cfg"), str(d / "20-b.cfg"))
    assert exp.problems == (f"{d / '30-out.cfg'} is a symlink to {secret}, outside {d}; not read",)


def test_config_that_is_neither_file_nor_directory_is_one_problem(tmp_path: Path) -> None:
    fifo = tmp_path / "cfg"
    os.mkfifo(fifo)
    exp = expand(fifo)
    assert exp.files == ()
    assert len(exp.problems) == 1
    assert "is a FIFO" in exp.problems[0]


def test_oversize_config_and_deep_includes_are_bounded(tmp_path: Path) -> None:
    big = tmp_path / "big.cfg"
    big.write_bytes(b"#" * ((1 << 20) + 1))
    assert "larger than 1 MiB" in expand(big).problems[0]
    a = _file(tmp_path / "a")
    for i in range(12):
        (tmp_path / f"{i}.cfg").write_text(f"%{tmp_path / f'{i + 1}.cfg'}\n")
    (tmp_path / "12.cfg").write_text(f"{a}\n")
    exp = expand(tmp_path / "0.cfg")
    assert exp.files == ()
    assert len(exp.problems) == 1
    assert "nest deeper than 8" in exp.problems[0]


def test_no_config_uses_dom0_default_which_includes_its_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "SYSTEM_CONFIG", Path("/nonexistent/memlockd.cfg"))
    exp = expand(None)
    assert exp.sources == ("dom0's default config",)
    assert Path(os.path.realpath(sys.executable)) in [f.path for f in exp.files]
