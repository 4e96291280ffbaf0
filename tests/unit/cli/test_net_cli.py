"""`dom0 net check` as an administrator runs it: the table, the summary line, --json, exit codes, hostile roots."""

from __future__ import annotations

import json
import os
from pathlib import Path

from unitkit import dom0

SEED = """\
auto bond0
iface bond0 inet manual
    bond-slaves eth0 eth1
    bond-mode active-backup
    bond-arp-interval 2000
    bond-arp-ip-target 10.0.0.1

auto xenbr0
iface xenbr0 inet static
    address 10.0.0.2/24
    bridge_ports bond0
"""

GOOD = SEED.replace("bond-arp-interval 2000", "bond-miimon 100").replace("    bond-arp-ip-target 10.0.0.1\n", "")


def host(tmp_path: Path, interfaces: str) -> str:
    path = tmp_path / "etc/network/interfaces"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(interfaces)
    return str(tmp_path)


def test_the_seeds_bond_is_a_problem_exit_1_with_why_and_fix(tmp_path: Path) -> None:
    r = dom0("net", "check", "--root", host(tmp_path, SEED), "--no-live")
    assert r.rc == 1, r.err
    lines = r.out.splitlines()
    assert lines[0].split() == ["Severity", "Subject", "Finding"]
    assert lines[1].split()[:3] == ["problem", "bond0", "ARP"]
    assert "why: bond0's own address sits on xenbr0" in r.out
    assert "fix: in bond0's stanza: `bond-miimon 100`" in r.out
    assert "at: /etc/network/interfaces:2" in r.out
    assert lines[-1] == f"read under {tmp_path} /etc/network/interfaces (1 bond, 1 bridge); live: not read (--no-live)"
    assert r.err == ""


def test_the_miimon_bond_passes_with_exit_0(tmp_path: Path) -> None:
    r = dom0("net", "check", "--root", host(tmp_path, GOOD), "--no-live")
    assert r.rc == 0, r.out + r.err
    assert "problem" not in r.out
    assert "ok        bond0    nothing known to fail" in r.out


def test_json_has_sources_bonds_bridges_and_findings(tmp_path: Path) -> None:
    r = dom0("net", "check", "--root", host(tmp_path, SEED), "--no-live", "--json")
    assert r.rc == 1
    doc = json.loads(r.out)
    assert {"sources", "bonds", "bridges", "findings"} <= set(doc)
    assert doc["sources"] == [{"path": "/etc/network/interfaces", "format": "ifupdown", "bonds": 1, "bridges": 1}]
    assert doc["bonds"][0]["arp_interval_ms"] == 2000
    assert doc["bridges"][0]["ports"] == ["bond0"]
    assert doc["live"] is None
    first = doc["findings"][0]
    assert set(first) == {"severity", "subject", "what", "why", "fix", "where"}
    assert (first["severity"], first["subject"], first["where"]) == ("problem", "bond0", "/etc/network/interfaces:2")


def test_a_host_with_no_network_files_says_so(tmp_path: Path) -> None:
    r = dom0("net", "check", "--root", str(tmp_path), "--no-live")
    assert r.rc == 0
    assert r.out.splitlines() == [
        "no bonds or bridges found",
        f"read no network configuration under {tmp_path} (ifupdown, networkd, netplan); live: not read (--no-live)",
    ]


def test_hostile_files_are_one_line_each_and_no_traceback(tmp_path: Path) -> None:
    root = host(tmp_path, "source-directory /etc/network/interfaces.d\n")
    d = tmp_path / "etc/network/interfaces.d"
    d.mkdir()
    (d / "loop").write_text("source-directory /etc/network/interfaces.d\n")
    big = d / "big"
    big.write_text("")
    os.truncate(big, 100 << 20)
    (tmp_path / "etc/netplan").mkdir()
    (tmp_path / "etc/netplan/01.yaml").symlink_to("/etc/passwd")
    r = dom0("net", "check", "--root", root, "--no-live")
    assert r.rc == 0
    assert "Traceback" not in r.err
    assert r.err.splitlines() == [
        f"dom0: {d}/big: 100.0 MiB, more than the 1.0 MiB dom0 reads: not read",
        f"dom0: {d}: a source-directory loop: read once",
        f"dom0: {tmp_path}/etc/netplan/01.yaml: a symlink to /etc/passwd, which is not under {tmp_path}: not read",
    ]


def test_a_root_that_is_no_directory_is_one_error_line(tmp_path: Path) -> None:
    r = dom0("net", "check", "--root", str(tmp_path / "nowhere"))
    assert r.rc == 1
    assert r.err.splitlines()[0] == f"dom0: error: --root {tmp_path / 'nowhere'}: not a directory"
    assert "Traceback" not in r.err


def test_the_live_side_runs_in_this_namespace_without_error(tmp_path: Path) -> None:
    # Reads only: /proc/net/bonding, /sys/class/net and `ip -j` lookups of this test's own namespace.
    r = dom0("net", "check", "--root", host(tmp_path, GOOD), "--json")
    assert "Traceback" not in r.err
    assert isinstance(json.loads(r.out)["live"]["bridges"], list)
