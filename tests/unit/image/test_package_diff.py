"""What changed between two systems' package lists: two Debian 12 trees whose dpkg status files the test writes (one
upgraded and changed by hand), read as `dom0 image inspect` reads them, then diffed."""

from __future__ import annotations

from pathlib import Path

from dpkgstatus import AFTER, BEFORE, debian_tree

from dom0.image.osinspect import OperatingSystem, inspect_tree
from dom0.image.packages import Application, Applications, read_applications
from dom0.image.packages.diff import diff_applications, diff_facts, full_version
from dom0.image.tree import DirectoryTree


def _system(
    root: Path, status: str, hostname: str, kernel: str, release: str = "12.5"
) -> tuple[OperatingSystem, Applications]:
    tree = debian_tree(root, status, hostname, kernel, release)
    directory = DirectoryTree(tree)
    system = inspect_tree(directory)
    assert system is not None
    return system, read_applications(directory, system)


def test_upgraded_tree_against_its_original(tmp_path: Path) -> None:
    old, old_apps = _system(tmp_path / "a", BEFORE, "web1", "6.1.0-9-amd64")
    new, new_apps = _system(tmp_path / "b", AFTER, "web2", "6.1.0-10-amd64", "12.9")
    diff = diff_applications(old_apps, new_apps)
    assert [(a.name, full_version(a)) for a in diff.added] == [("hello", "2.10-3")]
    assert [(a.name, a.arch, full_version(a)) for a in diff.removed] == [
        ("libc6", "i386", "2.36-9+deb12u3"),
        ("nano", "amd64", "7.2-1"),
    ]
    assert [(c.name, full_version(c.old), full_version(c.new), c.old.arch, c.new.arch) for c in diff.changed] == [
        ("bash", "5.2.15-2+b2", "5.2.15-2+b7", "amd64", "amd64"),
        ("libc6", "2.36-9+deb12u3", "2.36-9+deb12u7", "amd64", "amd64"),
        # one name left on each side, another architecture: the same package, changed
        ("tzdata", "2024a-0+deb12u1", "2025b-0+deb12u1", "all", "amd64"),
        ("util-linux", "2.38.1-5+b1", "1:2.38.1-5+deb12u3", "amd64", "amd64"),
    ]
    assert diff.unchanged == 1  # base-files
    facts = {f.fact: (f.old, f.new) for f in diff_facts(old, new)}
    assert facts["kernel"] == ("6.1.0-9-amd64", "6.1.0-10-amd64")
    assert facts["hostname"] == ("web1", "web2")
    assert facts["version"] == ("12.5", "12.9")  # the point release, not os-release's "12"
    assert "distribution" not in facts


def test_same_lists_have_nothing_to_say(tmp_path: Path) -> None:
    old, apps = _system(tmp_path / "a", BEFORE, "web1", "6.1.0-9-amd64")
    diff = diff_applications(apps, apps)
    assert (diff.added, diff.removed, diff.changed, diff.unchanged) == ((), (), (), 7)
    assert diff_facts(old, old) == ()


def _app(name: str, version: str, arch: str, epoch: int = 0, release: str = "") -> Application:
    return Application(name, version, release, epoch, arch, "", "")


def test_two_architectures_of_one_name_are_kept_apart() -> None:
    """libc6:amd64 and libc6:i386 before, libc6:amd64 and libc6:arm64 after: i386 went and arm64 came (not a
    change of i386 into arm64, which only a name left alone on each side is)."""
    before = Applications("dpkg", (_app("libc6", "2.36", "amd64"), _app("libc6", "2.36", "i386")))
    after = Applications("dpkg", (_app("libc6", "2.36", "amd64"), _app("libc6", "2.36", "arm64")))
    diff = diff_applications(before, after)
    assert [a.arch for a in diff.added] == ["arm64"]
    assert [a.arch for a in diff.removed] == ["i386"]
    assert (diff.changed, diff.unchanged) == ((), 1)


def test_full_version_is_what_the_package_tools_print() -> None:
    assert full_version(_app("util-linux", "2.38.1", "amd64", 1, "5+b1")) == "1:2.38.1-5+b1"
    assert full_version(_app("adduser", "3.134", "all")) == "3.134"
    assert full_version(_app("bash", "5.2.15", "x86_64", 0, "1.el9")) == "5.2.15-1.el9"
