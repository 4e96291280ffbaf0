"""The host's network configuration as one model: ifupdown, systemd-networkd and netplan read under one root."""

from __future__ import annotations

from dom0.hostnet import ifupdown, netplan, networkd
from dom0.hostnet.model import HostConfig
from dom0.hostnet.rootfiles import HostFiles


def read_config(root: str = "/") -> HostConfig:
    """Every bond, bridge and link the files under `root` configure, with the file and line of each.

    A host normally uses one of the three; when several configure the same name, each is listed (the checks
    judge each), since which one wins depends on which service runs.
    """
    files = HostFiles(root)
    parts = (ifupdown.read(files), networkd.read(files), netplan.read(files))
    return HostConfig(
        root=root,
        sources=tuple(s for p in parts for s in p.sources),
        bonds=tuple(b for p in parts for b in p.bonds),
        bridges=tuple(b for p in parts for b in p.bridges),
        links=tuple(x for p in parts for x in p.links),
        notes=tuple(files.notes),
    )
