"""Tab completion: the committed bash and zsh scripts are what the parser generates, and bash's (and zsh's) own
completion machinery, run in a subprocess, offers commands, verbs, options, choices, paths and guest names from the
hypervisor named on the line (libvirt's test:///default, whose one guest is "test")."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import pytest
from unitkit import DOM0, dom0

REPO = Path(__file__).resolve().parents[3]
BASH_SCRIPT = REPO / "contrib" / "completion" / "dom0.bash"
ZSH_SCRIPT = REPO / "contrib" / "completion" / "_dom0"
TEST_URI = "test:///default"


def _env(runtime: Path) -> dict[str, str]:
    """The venv's dom0 first on PATH, and the guest-name cache kept in this test's own runtime directory."""
    env = {k: v for k, v in os.environ.items() if k not in ("DOM0_CONNECT", "LIBVIRT_DEFAULT_URI")}
    return {**env, "PATH": f"{DOM0.parent}:{env.get('PATH', '/usr/bin:/bin')}", "XDG_RUNTIME_DIR": str(runtime)}


def bash_complete(words: list[str], runtime: Path, cwd: Path | None = None) -> list[str]:
    """What bash offers for the last of `words`, through the installed script's completion function, as bash
    splits the line (at COMP_WORDBREAKS: `--connect=test:///default` is five words there)."""
    script = 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _dom0; printf "%s\\n" "${COMPREPLY[@]}"'
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script, "bash", str(BASH_SCRIPT), *words],
        capture_output=True,
        text=True,
        env=_env(runtime),
        cwd=cwd,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return [line for line in proc.stdout.splitlines() if line]


def test_committed_scripts_are_what_the_parser_generates() -> None:
    for shell, path in (("bash", BASH_SCRIPT), ("zsh", ZSH_SCRIPT)):
        r = dom0("completion", shell)
        assert r.rc == 0, r.err
        assert r.out == path.read_text(), f"{path} is out of date: run `make completion`"


def test_a_command_completes_from_its_first_letters(tmp_path: Path) -> None:
    assert bash_complete(["dom0", "sa"], tmp_path) == ["save"]
    assert bash_complete(["dom0", "-c", TEST_URI, "--debug", "shut"], tmp_path) == ["shutdown"]


def test_verbs_of_a_command_group(tmp_path: Path) -> None:
    assert bash_complete(["dom0", "image", ""], tmp_path) == ["inspect", "extract", "wrap", "adapt", "hints", "kernel"]
    assert bash_complete(["dom0", "host", "st"], tmp_path) == ["stop", "start"]
    assert "apply" in bash_complete(["dom0", "publish", ""], tmp_path)


def test_options_are_those_of_the_command_being_typed(tmp_path: Path) -> None:
    offered = bash_complete(["dom0", "save", "--"], tmp_path)
    assert {"--all", "--dir", "--compress", "--level", "--jobs", "--dry-run", "--json"} <= set(offered)
    assert "--partition" not in offered  # image extract's
    assert bash_complete(["dom0", "image", "extract", "disk.img", "--par"], tmp_path) == ["--partition"]


def test_option_values_from_argparse_choices(tmp_path: Path) -> None:
    assert bash_complete(["dom0", "save", "--compress", ""], tmp_path) == ["zstd", "lz4", "gzip", "none"]
    assert bash_complete(["dom0", "image", "adapt", "x.img", "--for", "xen-p"], tmp_path) == ["xen-pv", "xen-pvh"]
    assert bash_complete(["dom0", "image", "inspect", "--format", "=", "q"], tmp_path) == ["qcow2"]
    assert bash_complete(["dom0", "completion", ""], tmp_path) == ["bash", "zsh"]


def test_guest_names_from_the_hypervisor_on_the_line(tmp_path: Path) -> None:
    assert bash_complete(["dom0", "-c", TEST_URI, "save", ""], tmp_path) == ["test"]
    # as bash splits --connect=test:///default at its word breaks
    assert bash_complete(["dom0", "--connect", "=", "test", ":", "///default", "start", "t"], tmp_path) == ["test"]
    # the option before the guest takes no value; -c after the command is memlock's --config, not a URI
    assert bash_complete(["dom0", "-c", TEST_URI, "shutdown", "--wait", ""], tmp_path) == ["test"]
    assert bash_complete(["dom0", "-c", TEST_URI, "mem", ""], tmp_path) == ["test", "set"]
    assert bash_complete(["dom0", "-c", TEST_URI, "clone", "test", ""], tmp_path) == []  # NEW: a name to invent


def test_image_arguments_complete_paths(tmp_path: Path) -> None:
    (tmp_path / "web.img").write_bytes(b"")
    (tmp_path / "old web.img").write_bytes(b"")
    (tmp_path / "disks").mkdir()
    runtime = tmp_path / "run"
    runtime.mkdir()
    offered = bash_complete(["dom0", "-c", TEST_URI, "image", "inspect", "./"], runtime, cwd=tmp_path)
    assert {"./web.img", "./old web.img", "./disks", "./run"} <= set(offered)
    assert bash_complete(["dom0", "image", "kernel", "./w"], runtime, cwd=tmp_path) == ["./web.img"]
    assert bash_complete(["dom0", "export", "test", "./"], runtime, cwd=tmp_path) == ["./disks", "./run"]


def test_an_unreachable_hypervisor_offers_nothing_at_once(tmp_path: Path) -> None:
    start = time.perf_counter()
    assert bash_complete(["dom0", "-c", "bogus:///nowhere", "save", ""], tmp_path) == []
    assert time.perf_counter() - start < 5
    r = dom0("__complete-guests", "bogus:///nowhere")
    assert (r.rc, r.out) == (1, "")
    assert "Traceback" not in r.err


def _complete_guests(runtime: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DOM0), "__complete-guests", TEST_URI],
        capture_output=True,
        text=True,
        env=_env(runtime),
        timeout=30,
        check=False,
    )


def test_guest_names_are_cached_briefly_in_the_users_runtime_directory(tmp_path: Path) -> None:
    assert _complete_guests(tmp_path).stdout == "test\n"
    [cache] = (tmp_path / "dom0" / "completion").iterdir()
    assert cache.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "dom0" / "completion").stat().st_mode & 0o777 == 0o700
    # a fresh cache answers without asking the hypervisor: what it says is what Tab offers
    cache.write_text(f"-c {TEST_URI}\nfrom-the-cache\n")
    assert _complete_guests(tmp_path).stdout == "from-the-cache\n"
    old = time.time() - 60
    os.utime(cache, (old, old))
    assert _complete_guests(tmp_path).stdout == "test\n"

    times = []
    for _ in range(5):
        start = time.perf_counter()
        _complete_guests(tmp_path)
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.3, f"a cached answer took {sorted(times)} s"


def test_a_cache_someone_else_could_have_written_is_not_believed(tmp_path: Path) -> None:
    _complete_guests(tmp_path)
    directory = tmp_path / "dom0" / "completion"
    [cache] = directory.iterdir()
    cache.write_text(f"-c {TEST_URI}\nplanted\n")
    cache.chmod(0o666)
    assert _complete_guests(tmp_path).stdout == "test\n"

    # a symlink where the cache goes is neither read nor written through
    target = tmp_path / "elsewhere"
    target.write_text(f"-c {TEST_URI}\nplanted\n")
    target.chmod(0o600)  # as the cache itself would be: only the link gives it away
    cache.unlink()
    cache.symlink_to(target)
    assert _complete_guests(tmp_path).stdout == "test\n"
    assert target.read_text() == f"-c {TEST_URI}\nplanted\n"

    # a directory others may write to is not used at all
    shutil.rmtree(directory)
    directory.mkdir()
    directory.chmod(0o777)
    assert _complete_guests(tmp_path).stdout == "test\n"
    assert list(directory.iterdir()) == []


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed (scripts/setup-host.sh installs it)")
def test_zsh_loads_the_function_and_completes(tmp_path: Path) -> None:
    load = 'autoload -U compinit; compinit -u -d "$1/zcompdump"; source "$2"; print ${_comps[dom0]}'
    proc = subprocess.run(
        ["zsh", "-fc", load, "zsh", str(tmp_path), str(ZSH_SCRIPT)],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=30,
        check=False,
    )
    assert (proc.returncode, proc.stderr, proc.stdout) == (0, "", "_dom0\n")

    # zsh's compadd, _files and _describe only run inside a real completion; stand-ins print what they were given
    stubs = (
        'compadd() { while [[ $1 != -- ]]; do shift; done; shift; print -l -- "$@"; }; '
        '_files() { print "<files $*>"; }; _describe() { print -l -- "${(@P)4}"; }; compset() { :; }; '
    )

    def zsh_complete(*words: str) -> list[str]:
        script = f'compdef() {{ :; }}; source "$1"; shift; {stubs} words=("$@"); CURRENT=$#; _dom0'
        proc = subprocess.run(
            ["zsh", "-fc", script, "zsh", str(ZSH_SCRIPT), *words],
            capture_output=True,
            text=True,
            env=_env(tmp_path),
            timeout=30,
            check=False,
        )
        assert (proc.returncode, proc.stderr) == (0, "")
        return proc.stdout.splitlines()

    assert "save:save guests' memory to compressed images, in parallel" in zsh_complete("dom0", "sa")
    assert zsh_complete("dom0", "-c", TEST_URI, "save", "") == ["test"]
    assert zsh_complete("dom0", "save", "--compress", "") == ["zstd", "lz4", "gzip", "none"]
    assert zsh_complete("dom0", "-c", TEST_URI, "image", "inspect", "x") == ["<files >", "test"]
