"""dom0 installed the ways an administrator installs it, for real. Needs root, debootstrap, a Debian mirror (the
host's apt sources, or $DOM0_DEBIAN_MIRROR) and PyPI; `make test` runs it (marker: package).

- The Debian package `make deb` builds (built here: it is the thing under test) goes into a clean Debian 12: a
  debootstrap minbase root, built once and cached in /var/cache/dom0-tests (tests/data/ostrees.py), copied per run
  and used as a chroot, where apt resolves its dependencies from Debian. Then `apt-get remove` must leave nothing of
  it but its conffiles.
- The wheel `make dist` builds goes in with pipx (from PyPI, in a throwaway venv) under a temporary PIPX_HOME.

Every chroot command runs in a mount namespace of its own (unshare), so the /proc, /dev and .deb cache mounted into
the root go away with that command, whatever happens to the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import imagebuild
import ostrees
import pytest

REPO = Path(__file__).resolve().parents[2]
# .debs apt fetched for earlier runs, kept so a second run downloads nothing (apt checks their hashes).
ARCHIVES = ostrees.DEBOOTSTRAP_CACHE / "apt-archives"
DEBIAN_DEPENDS = {
    "python3-libvirt", "python3-rich", "python3-zstandard", "python3-lz4", "python3-psutil", "python3-tomlkit",
    "python3-yaml", "python3-pyelftools", "python3-defusedxml",
}  # fmt: skip

pytestmark = [pytest.mark.package, pytest.mark.timeout(2400)]


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _run(cmd: list[str], *, timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{_tail(proc.stdout + proc.stderr)}")
    return proc.stdout


@dataclass(frozen=True)
class Built:
    version: str
    deb: Path
    wheel: Path
    sdist: Path


@pytest.fixture(scope="module")
def built() -> Built:
    """`make deb` (and so `make dist`) run now, from this checkout."""
    if os.geteuid() != 0:
        pytest.fail("the packaging tests need root (apt-get, debootstrap, chroot): run `make test` as root")
    _run(["make", "deb"], cwd=REPO, timeout=1800)
    with (REPO / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    dist = REPO / "dist"
    found = Built(
        version,
        dist / f"dom0_{version}_all.deb",
        dist / f"dom0-{version}-py3-none-any.whl",
        dist / f"dom0-{version}.tar.gz",
    )
    for path in (found.deb, found.wheel, found.sdist):
        assert path.is_file(), f"make deb left no {path}"
    return found


class Chroot:
    """A copied Debian root, entered with chroot(8) in a private mount namespace."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, *cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        script = (
            'mount -t proc proc "$0/proc" && mount --bind /dev "$0/dev" && '
            'mount --bind "$1" "$0/var/cache/apt/archives" && shift && exec chroot "$0" "$@"'
        )
        # the C locale: man renders plain ASCII hyphens there
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LC_ALL": "C", "TERM": "dumb"}
        env["DEBIAN_FRONTEND"] = "noninteractive"
        full = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, str(self.root)]
        proc = subprocess.run(
            [*full, str(ARCHIVES), *cmd], capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            pytest.fail(f"in the chroot, {' '.join(cmd)} exited {proc.returncode}:\n{_tail(proc.stdout + proc.stderr)}")
        return proc

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")


def _mounts_below(directory: Path) -> list[str]:
    prefix = f"{directory}/"
    with open("/proc/self/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]


def _replace_file(path: Path, text: str) -> None:
    """Write `path` inside the root afresh: a symlink there is removed, never followed to the host's file."""
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_text(text)


def _apt_sources(root: Path) -> None:
    """The host's Debian mirror (its apt sources and Acquire settings), or $DOM0_DEBIAN_MIRROR."""
    etc_apt = root / "etc" / "apt"
    for old in [etc_apt / "sources.list", *(etc_apt / "sources.list.d").glob("*")]:
        old.unlink(missing_ok=True)
    mirror = os.environ.get("DOM0_DEBIAN_MIRROR")
    if mirror:
        _replace_file(etc_apt / "sources.list", f"deb {mirror} bookworm main\n")
        return
    host = Path("/etc/apt")
    if (host / "sources.list").is_file():
        _replace_file(etc_apt / "sources.list", (host / "sources.list").read_text())
    for source in sorted((host / "sources.list.d").glob("*")):
        if source.suffix in (".list", ".sources") and source.is_file():
            _replace_file(etc_apt / "sources.list.d" / source.name, source.read_text())
    for conf in sorted((host / "apt.conf.d").glob("*")):
        if conf.is_file() and "Acquire::" in conf.read_text(errors="replace"):
            _replace_file(etc_apt / "apt.conf.d" / conf.name, conf.read_text())


@pytest.fixture(scope="module")
def debian(built: Built) -> Iterator[Chroot]:
    """A clean Debian 12 with the built .deb installed by apt, removed with everything in it afterwards."""
    pristine = ostrees.debootstrap_tree()
    if pristine is None:
        pytest.fail("debootstrap could not build a Debian 12 root (is debootstrap installed, the mirror reachable?)")
    (ARCHIVES / "partial").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dom0-package-", dir="/var/tmp"))
    try:
        root = work / "root"
        subprocess.run(["cp", "-a", str(pristine), str(root)], check=True, timeout=600)
        _replace_file(root / "etc" / "resolv.conf", Path("/etc/resolv.conf").read_text())
        _apt_sources(root)
        # nothing installed here may start a daemon
        _replace_file(root / "usr" / "sbin" / "policy-rc.d", "#!/bin/sh\nexit 101\n")
        (root / "usr" / "sbin" / "policy-rc.d").chmod(0o755)
        shutil.copyfile(built.deb, root / "tmp" / built.deb.name)
        chroot = Chroot(root)
        chroot.run("apt-get", "update", "-q", timeout=600)
        chroot.run("apt-get", "install", "-y", "-q", f"/tmp/{built.deb.name}", timeout=1200)
        yield chroot
    finally:
        # the namespaces took their mounts with them; should one be left, nothing below it is deleted
        for point in sorted(_mounts_below(work), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=60, check=False)
        left = _mounts_below(work)
        assert not left, f"still mounted, so {work} was kept: {left}"
        shutil.rmtree(work)


def test_the_deb_depends_on_debians_packages_not_on_dissect(built: Built) -> None:
    fields = _run(["dpkg-deb", "-f", str(built.deb), "Package", "Version", "Architecture", "Depends"], timeout=60)
    info = dict(line.split(": ", 1) for line in fields.splitlines())
    assert (info["Package"], info["Version"], info["Architecture"]) == ("dom0", built.version, "all")
    depends = {alt.split()[0] for alt in info["Depends"].replace("|", ",").split(",")}
    assert depends >= DEBIAN_DEPENDS
    assert not [d for d in depends if "dissect" in d], info["Depends"]


def test_the_sdist_holds_what_builds_the_wheel_and_the_deb(built: Built) -> None:
    names = set(_run(["tar", "-tzf", str(built.sdist)], timeout=60).split())
    top = f"dom0-{built.version}/"
    for needed in (
        "setup.py", "pyproject.toml", "MANIFEST.in", "Makefile", "scripts/manpages.py", "scripts/build-deb.sh",
        "debian/rules", "debian/control", "debian/copyright", "debian/changelog", "man/dom0-host.toml.5",
        "contrib/host.toml", "contrib/systemd/dom0-guests.service", "contrib/completion/dom0.bash",
        "src/dom0/cli/main.py", "tests/unit/test_dom0_init.py", "tests/integration/test_package.py",
    ):  # fmt: skip
        assert top + needed in names
    assert not [n for n in names if "__pycache__" in n or n.startswith(f"{top}debian/dom0/")]


def test_lintian_finds_no_error(built: Built) -> None:
    if shutil.which("lintian") is None:
        pytest.fail("lintian is not installed: run `make setup` (scripts/setup-host.sh installs it)")
    proc = subprocess.run(
        ["lintian", "--fail-on", "error", str(built.deb)], capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not [line for line in proc.stdout.splitlines() if line.startswith("E:")]


def test_the_installed_command_runs(debian: Chroot, built: Built) -> None:
    version = debian.run("dom0", "--version")
    assert version.stdout == f"dom0 {built.version}\n"
    listing = debian.run("dom0", "-c", "test:///default", "list").stdout.splitlines()
    assert listing[0].split()[:2] == ["Name", "ID"]
    assert [row.split()[0] for row in listing[1:]] == ["test"]  # the test driver's one guest
    assert "running" in listing[1]
    assert debian.run("which", "dom0").stdout.strip() == "/usr/bin/dom0"


def test_the_disk_image_readers_are_dom0s_private_copies(debian: Chroot, tmp_path: Path) -> None:
    # the system's Python has no dissect: the private copy in /usr/share/dom0/vendor is dom0's alone
    assert debian.run("python3", "-c", "import dissect.volume", check=False).returncode != 0
    tree = ostrees.debian12().build(tmp_path / "tree")
    uuid = "0d0e0000-0000-4000-8000-0000000000d0"
    image = debian.path("/tmp/root.img")
    imagebuild.mkfs("ext4", image, 16 * imagebuild.MiB, uuid, "pkgtest", tree=tree)
    shown = debian.run("dom0", "image", "inspect", "/tmp/root.img").stdout
    assert uuid in shown
    assert "pkgtest" in shown
    assert "hostname bookworm-vm" in shown  # /etc/hostname read from inside the ext4 filesystem: dissect.extfs
    where = debian.run("python3", "-c", "import dom0, dissect.extfs; print(dissect.extfs.__file__)").stdout
    assert where.startswith("/usr/share/dom0/vendor/dissect/extfs/")


def test_manual_pages_render(debian: Chroot) -> None:
    page = debian.run("man", "-P", "cat", "dom0").stdout
    assert "dom0 - See and control the guests" in page
    assert "dom0-list(1)" in page
    assert "SYNOPSIS" in debian.run("man", "-P", "cat", "dom0-image").stdout
    config = debian.run("man", "-P", "cat", "5", "dom0-host.toml").stdout
    assert "/etc/dom0/host.toml" in config


def test_the_units_are_installed_and_not_enabled(debian: Chroot) -> None:
    for unit, exec_start in (
        ("dom0-guests", "/usr/bin/dom0 host start"),
        ("dom0-memlock", "/usr/bin/dom0 memlock run"),
    ):
        text = debian.path(f"/lib/systemd/system/{unit}.service").read_text()
        assert f"\nExecStart={exec_start}\n" in text
        state = debian.run("systemctl", "is-enabled", f"{unit}.service", check=False)
        assert state.stdout.strip() == "disabled"
    assert not list(debian.path("/etc/systemd/system").rglob("dom0*"))


def test_completion_files_are_where_the_shells_look(debian: Chroot) -> None:
    bash = debian.path("/usr/share/bash-completion/completions/dom0").read_text()
    assert bash == (REPO / "contrib" / "completion" / "dom0.bash").read_text()
    zsh = debian.path("/usr/share/zsh/vendor-completions/_dom0").read_text()
    assert zsh == (REPO / "contrib" / "completion" / "_dom0").read_text()


def _conffiles(debian: Chroot) -> list[str]:
    """dpkg's conffile lines of dom0: `PATH MD5SUM`."""
    return [line for line in debian.run("dpkg-query", "-W", "-f", "${Conffiles}", "dom0").stdout.splitlines() if line]


def test_host_toml_is_a_conffile_dom0_reads(debian: Chroot) -> None:
    assert [line.split()[0] for line in _conffiles(debian)] == ["/etc/dom0/host.toml"]
    config = debian.path("/etc/dom0/host.toml")
    assert config.read_text() == (REPO / "contrib" / "host.toml").read_text()
    plan = debian.run("dom0", "-c", "test:///default", "host", "stop", "--dry-run").stdout
    assert "images into /var/lib/dom0/save" in plan
    # the administrator's edit is what dom0 reads, and what apt keeps
    config.write_text(config.read_text().replace('"/var/lib/dom0/save"', '"/srv/dom0-saves"'))
    plan = debian.run("dom0", "-c", "test:///default", "host", "stop", "--dry-run").stdout
    assert "images into /srv/dom0-saves" in plan


def test_apt_remove_leaves_only_the_conffiles(debian: Chroot, built: Built) -> None:
    """Last in this module: it removes the package the tests above use."""
    listed = [name for name in debian.run("dpkg", "-L", "dom0").stdout.split() if name != "/."]
    conffiles = {line.split()[0] for line in _conffiles(debian)}
    assert len(listed) > 100
    debian.run("apt-get", "remove", "-y", "-q", "dom0", timeout=300)
    left = []
    for name in listed:
        path = debian.path(name)
        if not (path.exists() or path.is_symlink()) or name in conffiles:
            continue
        # a directory other packages' files (or a kept conffile) still live in is theirs too
        owners = debian.run("dpkg-query", "-S", name, check=False)
        if path.is_dir() and (owners.returncode == 0 or any(c.startswith(name + "/") for c in conffiles)):
            continue
        left.append(name)
    assert not left, f"apt-get remove left these files of dom0: {left}"
    assert not debian.path("/usr/lib/python3/dist-packages/dom0").exists()
    assert not debian.path("/usr/share/dom0").exists()  # the private copies and their byte code too
    assert debian.path("/etc/dom0/host.toml").is_file()
    status = debian.run("dpkg", "-l", "dom0").stdout.splitlines()[-1].split()
    assert status[:3] == ["rc", "dom0", built.version]


def test_pipx_installs_the_wheel(built: Built, tmp_path: Path) -> None:
    tool = tmp_path / "pipx-tool"
    _run([sys.executable, "-m", "venv", str(tool)], timeout=300)
    _run([str(tool / "bin" / "pip"), "install", "-q", "pipx"], timeout=600)
    env = {k: v for k, v in os.environ.items() if k not in ("DOM0_CONNECT", "LIBVIRT_DEFAULT_URI", "VIRTUAL_ENV")}
    env.update(PIPX_HOME=str(tmp_path / "pipx"), PIPX_BIN_DIR=str(tmp_path / "bin"), PIPX_MAN_DIR=str(tmp_path / "man"))
    env["LC_ALL"] = "C"
    _run([str(tool / "bin" / "pipx"), "install", str(built.wheel)], env=env, timeout=900)
    dom0 = tmp_path / "bin" / "dom0"
    assert _run([str(dom0), "--version"], env=env, timeout=60) == f"dom0 {built.version}\n"
    listing = _run([str(dom0), "-c", "test:///default", "list"], env=env, timeout=60).splitlines()
    assert [row.split()[0] for row in listing[1:]] == ["test"]
    share = tmp_path / "pipx" / "venvs" / "dom0" / "share"
    assert (share / "bash-completion/completions/dom0.bash").read_text() == (
        REPO / "contrib/completion/dom0.bash"
    ).read_text()
    assert (share / "zsh/site-functions/_dom0").read_text() == (REPO / "contrib/completion/_dom0").read_text()
    assert (share / "dom0/examples/host.toml").read_text() == (REPO / "contrib/host.toml").read_text()
    unit = (share / "dom0/systemd/dom0-guests.service").read_text()
    assert "\nExecStart=/usr/local/bin/dom0 host start\n" in unit
    assert (share / "dom0/systemd/dom0-memlock.service").is_file()
    for page in ("man1/dom0.1", "man1/dom0-list.1", "man5/dom0-host.toml.5"):
        assert (share / "man" / page).is_file()
    # pipx offers the pages where man finds them (PIPX_MAN_DIR, ~/.local/share/man by default)
    page = _run(["man", "-M", str(tmp_path / "man"), "-P", "cat", "dom0-list"], env=env, timeout=60)
    assert "dom0 list" in page
