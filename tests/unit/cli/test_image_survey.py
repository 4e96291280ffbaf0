"""`dom0 image inspect` over guests through the console script: --all as one table, names and paths mixed, --json's
per-guest reports, a guest that does not exist, and `dom0 list --long`'s os line from the same survey."""

from __future__ import annotations

import json
from pathlib import Path

import guestnode
import pytest
from unitkit import dom0


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> guestnode.Node:
    return guestnode.standard_node(tmp_path_factory.mktemp("node"))


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.split("  ") if c.strip()]


def test_all_is_one_row_per_guest_and_exits_1_for_the_unreadable(node: guestnode.Node) -> None:
    done = dom0("-c", node.uri, "image", "inspect", "--all")
    assert done.rc == 1, done.err
    lines = done.out.splitlines()
    assert _cells(lines[0]) == ["GUEST", "STATE", "OS", "PACKAGES", "KERNEL", "BOOTS", "CONSOLE", "HOSTNAME"]
    rows = {_cells(line)[0].strip(): [c.strip() for c in _cells(line)] for line in lines[1:6]}
    assert rows["web"] == [
        "web", "running", "Debian 12 (bookworm)", "apt", "6.1.0-10-amd64", "6.1.0-9-amd64", "yes",
        "bookworm-vm (differs)",
    ]  # fmt: skip
    assert rows["alpine-guest"][2:6] == ["Alpine Linux 3.19.1", "apk", "6.6.14-0-virt", "6.6.14-0-virt"]
    assert rows["centos5"][2:6] == ["CentOS 5.3 (Final)", "yum", "2.6.18-128.el5xen", "its disk"]
    assert rows["gone"][2] == "not read"
    assert rows["junk"][2] == "not read"
    assert f"gone: not read: disk vda: {node.missing}: no such file" in lines
    assert any(line.startswith("junk: not read: no operating system found") for line in lines)
    assert (
        f"web: boots 6.1.0-9-amd64, but 6.1.0-10-amd64 is installed inside: `dom0 image kernel {node.debian} -o "
        f"{node.kernels} --sync` copies it out to boot"
    ) in lines
    assert "web: hostname inside is bookworm-vm, not its guest name" in lines
    assert "Traceback" not in done.err


def test_a_guest_name_and_a_path_in_one_call(node: guestnode.Node) -> None:
    done = dom0("-c", node.uri, "image", "inspect", "centos5", str(node.alpine))
    assert done.rc == 0, done.err
    rows = [[c.strip() for c in _cells(line)] for line in done.out.splitlines()[1:3]]
    assert rows[0][:3] == ["centos5", "shutoff", "CentOS 5.3 (Final)"]
    assert rows[1][:3] == [str(node.alpine), "-", "Alpine Linux 3.19.1"]


def test_json_is_the_full_report_per_guest(node: guestnode.Node) -> None:
    done = dom0("-c", node.uri, "image", "inspect", "--all", "--json")
    assert done.rc == 1
    docs = {d["guest"]: d for d in json.loads(done.out)}
    web = docs["web"]
    assert (web["state"], web["error"], web["hypervisor"]) == ("running", None, "kvm")
    assert web["row"] == {
        "os": "Debian 12 (bookworm)", "distro": "debian", "version": "12", "packages": "apt",
        "kernel": "6.1.0-10-amd64", "boots": "6.1.0-9-amd64", "console": "yes", "hostname": "bookworm-vm",
        "hostname_matches": False,
    }  # fmt: skip
    single = json.loads(dom0("image", "inspect", str(node.debian), "--json").out)
    (disk,) = web["disks"]
    assert disk == {"disk": "vda", **single, "error": None}
    assert docs["gone"]["row"] is None
    assert docs["gone"]["error"] == f"disk vda: {node.missing}: no such file"


def test_one_guest_is_the_detailed_report_under_a_header(node: guestnode.Node) -> None:
    done = dom0("-c", node.uri, "image", "inspect", "centos5")
    assert done.rc == 0, done.err
    lines = done.out.splitlines()
    assert lines[0] == f"guest centos5 (shutoff), disk vda: {node.centos}"
    path_alone = dom0("image", "inspect", str(node.centos)).out.splitlines()
    assert lines[1 : 1 + len(path_alone)] == path_alone


def test_a_guest_that_does_not_exist_is_one_line(node: guestnode.Node) -> None:
    done = dom0("-c", node.uri, "image", "inspect", "nosuch")
    assert (done.rc, done.out) == (1, "")
    assert done.err.splitlines() == [
        "dom0: error: nosuch is neither an image file nor a guest",
        "  hint: give an image, a block device (an LV) or a guest name",
    ]


def test_all_with_no_guests(tmp_path: Path) -> None:
    uri = guestnode.write_node(tmp_path / "empty.xml", [])
    done = dom0("-c", uri, "image", "inspect", "--all")
    assert (done.rc, done.out.splitlines()[-1]) == (0, "(no guests)")


def test_nothing_to_inspect_is_a_usage_error() -> None:
    assert dom0("image", "inspect").rc == 2


def test_list_long_shows_each_guests_os_line(node: guestnode.Node) -> None:
    done = dom0("-c", node.uri, "list", "--long", "web", "gone")
    assert done.rc == 0, done.err
    os_lines = [line for line in done.out.splitlines() if line.startswith("  os ")]
    assert os_lines == [
        "  os          Debian 12 (bookworm), apt, kernel 6.1.0-10-amd64, boots 6.1.0-9-amd64, hostname bookworm-vm",
        f"  os          not read: disk vda: {node.missing}: no such file",
    ]
    docs = json.loads(dom0("-c", node.uri, "list", "--long", "--json", "centos5").out)
    assert docs[0]["os"]["os"] == "CentOS 5.3 (Final)"
    assert docs[0]["os"]["error"] is None
