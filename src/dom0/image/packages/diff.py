"""What changed between two systems' package lists (a clone against its source, a guest before and after an
upgrade): packages added, removed and changed in version, and the OS facts that moved. Pure: data in, data out."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dom0.image.packages import Application, Applications

if TYPE_CHECKING:
    from dom0.image.osinspect import OperatingSystem

__all__ = ["Change", "FactChange", "PackageDiff", "diff_applications", "diff_facts", "full_version"]


@dataclass(frozen=True, slots=True)
class Change:
    """One package in both lists at another version (or built for another architecture)."""

    name: str
    old: Application
    new: Application


@dataclass(frozen=True, slots=True)
class FactChange:
    """One fact of the operating system that differs: "version", "kernel", "hostname", ..."""

    fact: str
    old: str | None
    new: str | None


@dataclass(frozen=True, slots=True)
class PackageDiff:
    """Packages only in the new list, only in the old one, in both at other versions; how many are the same."""

    added: tuple[Application, ...]
    removed: tuple[Application, ...]
    changed: tuple[Change, ...]
    unchanged: int

    def to_json(self) -> dict[str, Any]:
        """JSON view: each package with its full version ("epoch:version-release", as dpkg and rpm print it)."""
        return {
            "added": [_entry(a) for a in self.added],
            "removed": [_entry(a) for a in self.removed],
            "changed": [
                {
                    "name": c.name,
                    "arch": c.new.arch,
                    "old": full_version(c.old),
                    "new": full_version(c.new),
                    "old_arch": c.old.arch,
                }
                for c in self.changed
            ],
            "unchanged": self.unchanged,
        }


def _entry(a: Application) -> dict[str, Any]:
    return {"name": a.name, "arch": a.arch, "version": full_version(a)}


def full_version(a: Application) -> str:
    """The version as the package tools print it: "1:2.36.1-8+deb12u1", "5.2.15-2+b13", "3.134"."""
    epoch = f"{a.epoch}:" if a.epoch else ""
    release = f"-{a.release}" if a.release else ""
    return f"{epoch}{a.version}{release}"


def _same(a: Application, b: Application) -> bool:
    return (a.epoch, a.version, a.release, a.arch) == (b.epoch, b.version, b.release, b.arch)


def diff_applications(old: Applications, new: Applications) -> PackageDiff:
    """Packages of `new` against `old`, matched by name and architecture; a name with one package on each side
    under two architectures (moved from "all" to "amd64" between versions) is the same package changed."""
    before: dict[tuple[str, str], Application] = {(a.name, a.arch): a for a in old.apps}
    after: dict[tuple[str, str], Application] = {(a.name, a.arch): a for a in new.apps}
    changed: list[Change] = []
    unchanged = 0
    for key in before.keys() & after.keys():
        a, b = before[key], after[key]
        if _same(a, b):
            unchanged += 1
        else:
            changed.append(Change(key[0], a, b))
    gone: defaultdict[str, list[Application]] = defaultdict(list)
    came: defaultdict[str, list[Application]] = defaultdict(list)
    for key in before.keys() - after.keys():
        gone[key[0]].append(before[key])
    for key in after.keys() - before.keys():
        came[key[0]].append(after[key])
    # Only a name with one package on each side in all is the same package; with multiarch (libc6:amd64 beside
    # libc6:i386) an architecture that went and one that came are two packages.
    old_names = Counter(a.name for a in old.apps)
    new_names = Counter(a.name for a in new.apps)
    for name in gone.keys() & came.keys():
        if old_names[name] == 1 and new_names[name] == 1:
            changed.append(Change(name, gone.pop(name)[0], came.pop(name)[0]))
    order = _order
    return PackageDiff(
        added=tuple(sorted((a for apps in came.values() for a in apps), key=order)),
        removed=tuple(sorted((a for apps in gone.values() for a in apps), key=order)),
        changed=tuple(sorted(changed, key=lambda c: (c.name, c.new.arch))),
        unchanged=unchanged,
    )


def _order(a: Application) -> tuple[str, str]:
    return (a.name, a.arch)


def _release(system: OperatingSystem) -> str | None:
    """The fullest version the system states: the point release ("12.15") where it is known."""
    return system.point_release or system.version


def diff_facts(old: OperatingSystem, new: OperatingSystem) -> tuple[FactChange, ...]:
    """The facts an administrator checks after a clone or an upgrade, where they differ: the distribution, its
    version, the newest kernel installed, the hostname."""
    pairs = (
        ("distribution", old.distro, new.distro),
        ("version", _release(old), _release(new)),
        ("kernel", old.kernels[0].version if old.kernels else None, new.kernels[0].version if new.kernels else None),
        ("hostname", old.hostname, new.hostname),
    )
    return tuple(FactChange(fact, a, b) for fact, a, b in pairs if a != b)
