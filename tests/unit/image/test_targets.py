"""What TARGET names for the image verbs: a path, or a guest's disks with the facts inspect needs; adapt refuses a
running guest, inspect reads it as it is."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

import guestnode
import pytest

from dom0.errors import Dom0Error
from dom0.hypervisor import Hypervisor, choose_uri, connect
from dom0.image.targets import hypervisor_target, resolve_target
from dom0.model import GuestDetails


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> guestnode.Node:
    return guestnode.standard_node(tmp_path_factory.mktemp("node"))


def _hv(node: guestnode.Node) -> Hypervisor:
    return connect(choose_uri(node.uri))


def test_a_running_guest_is_refused_for_adapt_and_read_as_it_is_for_inspect(node: guestnode.Node) -> None:
    hv = _hv(node)
    with pytest.raises(Dom0Error, match="web is running: shut it down first"):
        resolve_target("web", hv=lambda: hv)
    target = resolve_target("web", hv=lambda: hv, live=True)
    assert [(d.path, d.format, d.name) for d in target.disks] == [(str(node.debian), "raw", "vda")]
    assert target.guest is not None
    assert (target.guest.name, str(target.guest.state), target.guest.hypervisor) == ("web", "running", "kvm")
    assert target.guest.kernel == str(node.kernels / "vmlinuz-6.1.0-9-amd64")
    assert target.description == "guest web (running), disks vda"


def test_a_shut_off_guest_by_uuid_boots_from_its_disk(node: guestnode.Node) -> None:
    hv = _hv(node)
    uuid = hv.guest("centos5").uuid
    target = resolve_target(uuid, hv=lambda: hv, live=True)
    assert target.guest is not None
    assert target.guest.name == "centos5"
    assert target.guest.kernel == ""


def test_a_path_wins_over_a_guest_of_the_same_name(
    node: guestnode.Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hv = _hv(node)
    monkeypatch.chdir(tmp_path)
    Path("web").write_bytes(node.centos.read_bytes())
    target = resolve_target("web", hv=lambda: hv, live=True)
    assert target.guest is None
    assert target.disks[0].path == "web"
    assert target.notes == (
        "web is both a file here and a guest (web): the file is inspected; give the guest's UUID to inspect the guest",
    )


def test_a_name_that_is_neither_is_one_line(node: guestnode.Node) -> None:
    hv = _hv(node)
    with pytest.raises(Dom0Error, match=r"^nosuch is neither an image file nor a guest$"):
        resolve_target("nosuch", hv=lambda: hv, live=True)


@pytest.mark.parametrize(
    ("hypervisor_type", "os_type", "expected"),
    [
        ("xen", "linux", "xen-pv"),
        ("xen", "xen", "xen-pv"),
        ("xen", "xenpvh", "xen-pvh"),
        ("xen", "hvm", "xen-hvm"),
        ("kvm", "hvm", "kvm"),
        ("qemu", "hvm", "kvm"),
        ("test", "xen", "kvm"),
    ],
)
def test_the_hypervisor_a_definition_means(hypervisor_type: str, os_type: str, expected: str) -> None:
    details = cast(GuestDetails, SimpleNamespace(hypervisor_type=hypervisor_type, os_type=os_type))
    assert hypervisor_target(details) == expected
