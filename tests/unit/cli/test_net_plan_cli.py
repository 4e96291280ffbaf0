"""`dom0 net plan` as an administrator runs it: the files on stdout, --json, --write with backups, bad input."""

from __future__ import annotations

import json
from pathlib import Path

from unitkit import dom0

PLAN = ("net", "plan", "--bridge", "xenbr0", "--uplink", "eno1,eno2")


def test_plan_prints_each_file_under_its_path_and_writes_nothing(tmp_path: Path) -> None:
    r = dom0(*PLAN, "--root", str(tmp_path), "--address", "192.0.2.10/24", "--gateway", "192.0.2.1")
    assert r.rc == 0, r.err
    assert "===== /etc/network/interfaces.d/xenbr0 (new) =====" in r.out
    assert "    bond-miimon 100\n" in r.out
    assert "    bridge_ports bond0\n" in r.out
    assert "bond-arp" not in r.out
    assert "note: format: ifupdown" in r.out
    assert "note: active-backup needs nothing from the switch" in r.out
    assert "`ifup bond0 xenbr0` from the console" in r.out
    assert "nothing written" in r.out
    assert list(tmp_path.iterdir()) == []


def test_plan_takes_the_hosts_format_from_the_files_under_root(tmp_path: Path) -> None:
    (tmp_path / "etc/netplan").mkdir(parents=True)
    (tmp_path / "etc/netplan/50-cloud-init.yaml").write_text("network: {version: 2}\n")
    r = dom0(*PLAN, "--root", str(tmp_path), "--json")
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    assert doc["format"] == "netplan"
    assert [f["path"] for f in doc["files"]] == ["/etc/netplan/60-xenbr0.yaml"]
    assert "mii-monitor-interval: 100" in doc["files"][0]["content"]
    assert doc["files"][0]["replaces"] is None
    assert any("50-cloud-init.yaml" in n for n in doc["notes"])


def test_json_says_which_files_it_would_replace(tmp_path: Path) -> None:
    (tmp_path / "etc/systemd/network").mkdir(parents=True)
    (tmp_path / "etc/systemd/network/10-dom0-bond0.netdev").write_text("[NetDev]\n")
    r = dom0(*PLAN, "--bond-mode", "802.3ad", "--root", str(tmp_path), "--json")
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    assert set(doc) >= {"format", "files", "notes"}
    assert doc["format"] == "networkd"
    replaces = {f["path"]: f["replaces"] for f in doc["files"]}
    assert replaces["/etc/systemd/network/10-dom0-bond0.netdev"] == "/etc/systemd/network/10-dom0-bond0.netdev"
    assert replaces["/etc/systemd/network/10-dom0-xenbr0.netdev"] is None
    assert any("LACP on the switch" in n for n in doc["notes"])


def test_write_installs_keeps_a_backup_and_prints_the_command_to_run_from_the_console(tmp_path: Path) -> None:
    target = tmp_path / "etc/network/interfaces.d/xenbr0"
    target.parent.mkdir(parents=True)
    target.write_text("iface xenbr0 inet dhcp\n")
    r = dom0(*PLAN, "--root", str(tmp_path), "--write")
    assert r.rc == 0, r.err
    assert f"wrote {target}\n" in r.out
    (backup,) = [p for p in target.parent.iterdir() if ".dom0-bak-" in p.name]
    assert f"kept the previous xenbr0 as {backup}\n" in r.out
    assert backup.read_text() == "iface xenbr0 inet dhcp\n"
    assert "bond-miimon 100" in target.read_text()
    assert "ifup bond0 xenbr0" in r.out
    assert "can cut you off" in r.out
    again = dom0(*PLAN, "--root", str(tmp_path), "--write", "--json")
    assert again.rc == 0, again.err
    doc = json.loads(again.out)
    assert (doc["written"], doc["unchanged"], doc["backups"]) == ([], [str(target)], [])


def test_bad_names_and_addresses_are_one_line_and_exit_2(tmp_path: Path) -> None:
    cases = [
        (("--uplink", "eno1,en/o2"), "not a valid interface name"),
        (("--uplink", "eno1,eno1"), "more than once"),
        (("--uplink", ","), "names no NIC"),
        (("--uplink", "eno1,eno2", "--bond", "a-bond-name-too-long"), "1 to 15 characters"),
        (("--uplink", "eno1", "--address", "192.0.2.10"), "no prefix length"),
        (("--uplink", "eno1", "--gateway", "192.0.2.1"), "needs --address"),
        (("--uplink", "eno1", "--address", "192.0.2.10/24", "--gateway", "gw"), "not an IP address"),
    ]
    for args, message in cases:
        r = dom0("net", "plan", "--bridge", "xenbr0", *args, "--root", str(tmp_path), "--write")
        assert r.rc == 2, (args, r.err)
        first, *rest = r.err.splitlines()
        assert first.startswith("dom0: error: ")
        assert message in first
        assert len(rest) == 1
        assert rest[0].startswith("  hint: ")
        assert "Traceback" not in r.err
    assert list(tmp_path.iterdir()) == []


def test_write_under_a_root_that_is_not_a_directory_fails_with_one_line(tmp_path: Path) -> None:
    root = tmp_path / "not-a-dir"
    root.write_text("x")
    r = dom0(*PLAN, "--root", str(root), "--write")
    assert r.rc == 1
    assert "is not a directory" in r.err
    assert "Traceback" not in r.err
    assert root.read_text() == "x"
