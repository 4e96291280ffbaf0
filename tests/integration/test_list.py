"""`dom0 list` against real guests: what an administrator sees, checked against virsh and the guests' definitions."""

from __future__ import annotations

import json
from typing import Any

from . import guestkit
from .conftest import Dom0, MakeGuest, virsh


def _by_name(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in entries}


def _line_of(text: str, name: str) -> list[str]:
    lines = [line for line in text.splitlines() if line.split() and line.split()[0] == name]
    assert len(lines) == 1, f"{name} should be on exactly one line of:\n{text}"
    return lines[0].split()


def test_list_shows_running_guests_and_all_shows_defined_ones(make_guest: MakeGuest, dom0: Dom0) -> None:
    running = make_guest(memory_mib=160, vcpus=2)
    stopped = make_guest(start=False)
    dom_id = int(virsh("domid", running.name).strip())

    plain = dom0("list").stdout
    assert plain.splitlines()[0].split()[:6] == ["Name", "ID", "Mem(MiB)", "VCPUs", "State", "Time(s)"]
    _, shown_id, mem, vcpus, flags, cpu_s = _line_of(plain, running.name)[:6]
    assert (shown_id, mem, vcpus, flags) == (str(dom_id), "160", "2", "r-----")
    assert float(cpu_s) > 0
    assert "running" in plain
    assert stopped.name not in plain

    everything = dom0("list", "--all").stdout
    assert _line_of(everything, stopped.name)[1:5] == ["-", "128", "1", "------"]
    assert "shut off" in everything

    entries = _by_name(json.loads(dom0("list", "--json").stdout))
    assert stopped.name not in entries
    entry = entries[running.name]
    assert entry["uuid"] == running.uuid
    assert entry["id"] == dom_id
    assert (entry["memory_mib"], entry["max_memory_mib"], entry["vcpus"]) == (160, 160, 2)
    assert entry["state"] == "running"
    assert entry["state_flags"] == "r-----"
    assert entry["cpu_time_s"] > 0

    all_entries = _by_name(json.loads(dom0("list", "--all", "--json").stdout))
    off = all_entries[stopped.name]
    assert (off["id"], off["state"], off["state_flags"]) == (None, "shutoff", "------")
    assert off["uuid"] == stopped.uuid
    assert running.name in all_entries


def test_list_long_shows_disks_nics_and_boot(make_guest: MakeGuest, dom0: Dom0, guest_kit: guestkit.Kit) -> None:
    g = make_guest(disks=2, swap=True)
    mac = virsh("domiflist", g.name).split()[-1]
    assert mac.count(":") == 5

    (d,) = json.loads(dom0("list", "--long", "--json", g.name).stdout)
    assert d["name"] == g.name
    assert d["persistent"] is True
    assert d["autostart"] is False
    assert [(x["target"], x["source_kind"], x["source"]) for x in d["disks"]] == [
        ("vda", "file", str(g.disk_paths[0])),
        ("vdb", "file", str(g.disk_paths[1])),
        ("vdc", "file", str(g.disk_paths[2])),
    ]
    assert [n["mac"] for n in d["nics"]] == [mac]
    assert d["boot"]["kind"] == "kernel"
    assert d["boot"]["kernel"] == str(guest_kit.kernel)
    assert d["boot"]["initrd"] == str(guest_kit.initramfs)
    assert "dom0test.mode=idle" in d["boot"]["cmdline"]
    assert d["console_log"] == str(g.console_log)

    text = dom0("list", "--long", g.name).stdout
    for expected in (g.uuid, str(g.disk_paths[0]), str(g.disk_paths[2]), mac, str(guest_kit.kernel), "persistent  yes"):
        assert expected in text


def test_list_long_xen_names_show_vbd_numbers(make_guest: MakeGuest, dom0: Dom0) -> None:
    g = make_guest(disks=1, xen_names=True, start=False)
    (d,) = json.loads(dom0("list", "--long", "--json", g.name).stdout)
    assert [(x["target"], x["vbd"]) for x in d["disks"]] == [("xvda", 51712)]
    assert "xvda (VBD 51712)" in dom0("list", "--long", g.name).stdout


def test_guest_is_found_by_name_uuid_and_id(make_guest: MakeGuest, dom0: Dom0) -> None:
    g = make_guest(persistent=False)
    dom_id = virsh("domid", g.name).strip()
    for ref in (g.name, g.uuid, g.uuid.upper(), dom_id):
        (entry,) = json.loads(dom0("list", "--json", ref).stdout)
        assert (entry["name"], entry["uuid"], str(entry["id"])) == (g.name, g.uuid, dom_id), ref
    (d,) = json.loads(dom0("list", "--long", "--json", dom_id).stdout)
    assert d["persistent"] is False
    assert "no (transient" in dom0("list", "--long", g.uuid).stdout


def test_list_of_unknown_guest_is_one_line_error_with_hint(dom0: Dom0) -> None:
    proc = dom0("list", "dom0test-no-such-guest", check=False)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith("dom0: error: ")
    assert "dom0test-no-such-guest" in lines[0]
    assert lines[1].strip().startswith("hint: ")
