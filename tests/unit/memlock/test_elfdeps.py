"""ELF dependencies read from the files, checked against the dynamic loader's own answer (`ldd`, in the test only)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dom0 import run
from dom0.memlock.config import expand
from dom0.memlock.elfdeps import needed_libraries, resolve


def _ldd(binary: str) -> set[Path]:
    """What the loader maps for `binary`, as real paths (linux-vdso has no file)."""
    out = run.run(["ldd", binary], check=True).stdout.decode()
    found = set()
    for line in out.splitlines():
        words = line.split()
        path = words[2] if "=>" in words else words[0]
        if path.startswith("/"):
            found.add(Path(os.path.realpath(path)))
    return found


@pytest.mark.parametrize("binary", ["/bin/bash", "/usr/bin/virsh", "/bin/systemctl"])
def test_libraries_are_those_ldd_finds(binary: str) -> None:
    if not os.path.exists(binary):
        pytest.skip(f"{binary} is not installed here")
    assert set(needed_libraries(Path(binary))) == _ldd(binary)


def test_plus_bin_bash_locks_bash_and_exactly_the_libraries_ldd_finds(tmp_path: Path) -> None:
    cfg = tmp_path / "c.cfg"
    cfg.write_text("+/bin/bash\n")
    exp = expand(cfg)
    bash = Path(os.path.realpath("/bin/bash"))
    assert exp.problems == ()
    assert exp.files[0].path == bash
    assert {f.path for f in exp.files[1:]} == _ldd("/bin/bash")
    assert {f.reason for f in exp.files[1:]} == {"library of /bin/bash"}


def test_truncated_elf_gives_a_note_and_is_locked_alone(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_bytes(Path("/bin/bash").read_bytes()[:100])
    deps = resolve(broken)
    assert deps.libraries == ()
    assert deps.problems == ()
    assert len(deps.notes) == 1
    assert "malformed ELF" in deps.notes[0]
    cfg = tmp_path / "c.cfg"
    cfg.write_text(f"+{broken}\n")
    exp = expand(cfg)
    assert [f.path for f in exp.files] == [broken]
    assert exp.problems == ()
    assert exp.notes[0].startswith(f"{cfg}:1: {broken} is a malformed ELF")


def test_library_not_found_is_a_problem_line_and_the_rest_still_found(tmp_path: Path) -> None:
    data = Path("/bin/bash").read_bytes()
    if b"libtinfo.so.6\0" not in data:
        pytest.skip("this bash does not link libtinfo")
    crafted = tmp_path / "bash"
    crafted.write_bytes(data.replace(b"libtinfo.so.6\0", b"libzzzzz.so.6\0"))
    deps = resolve(crafted)
    assert deps.problems == (f"libzzzzz.so.6, needed by {crafted}, is not found in its search path",)
    assert set(deps.libraries) == _ldd("/bin/bash") - {Path(os.path.realpath(p)) for p in _tinfo()}


def _tinfo() -> list[str]:
    return [str(p) for p in _ldd("/bin/bash") if "libtinfo" in p.name]


def test_origin_runpath_finds_a_library_next_to_the_binary(tmp_path: Path) -> None:
    """An ELF whose DT_NEEDED names a bundled library beside it via $ORIGIN: copy bash and a libtinfo renamed."""
    data = Path("/bin/bash").read_bytes()
    tinfo = _tinfo()
    if b"libtinfo.so.6\0" not in data or not tinfo:
        pytest.skip("this bash does not link libtinfo")
    (tmp_path / "bin").mkdir()
    crafted = tmp_path / "bin" / "bash"
    # A DT_NEEDED with a slash is taken as a path, $ORIGIN expanded: same length as the name it replaces.
    crafted.write_bytes(data.replace(b"libtinfo.so.6\0", b"$ORIGIN/t.so6\0"))
    shutil.copy(tinfo[0], tmp_path / "bin" / "t.so6")
    assert (tmp_path / "bin" / "t.so6") in resolve(crafted).libraries


def test_non_elf_plus_file_is_a_note(tmp_path: Path) -> None:
    script = tmp_path / "s"
    script.write_text("#!/bin/sh\n")
    deps = resolve(script)
    assert deps.libraries == ()
    assert deps.problems == ()
    assert deps.notes == (f"{script} is not an ELF file: locked alone, without libraries",)
