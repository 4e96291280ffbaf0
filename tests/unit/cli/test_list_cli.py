"""`dom0 list` on libvirt's test:// driver with a node of many guests: golden output, and the facts behind it.

The test driver reports the wall clock as every guest's CPU time, so CPU times are checked for readability
and then masked before comparing with the golden files (DOM0_UPDATE_GOLDEN=1 rewrites those).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from nodegen import GuestSpec, write_node
from unitkit import check_golden, dom0, mask_cpu_time

from dom0 import humanize

N = 24  # every state twice


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[GuestSpec]]:
    path = tmp_path_factory.mktemp("node") / "node.xml"
    specs = write_node(path, N)
    return f"test://{path}", specs


def _ok(*args: str) -> str:
    r = dom0(*args)
    assert r.rc == 0, r.err
    assert r.err == ""
    return r.out


def _expected_ids(specs: list[GuestSpec]) -> dict[str, int | None]:
    """The test driver numbers active guests 1, 2, ... in file order."""
    ids: dict[str, int | None] = {}
    next_id = 1
    for g in specs:
        ids[g.name] = next_id if g.active else None
        next_id += g.active
    return ids


def _masked_json(records: list[dict[str, Any]]) -> str:
    for rec in records:
        assert rec["cpu_time"] == humanize.duration(rec["cpu_time_s"])
        rec["cpu_time_s"], rec["cpu_time"] = "<seconds>", "<duration>"
    return json.dumps(records, indent=2) + "\n"


def test_list_golden(node: tuple[str, list[GuestSpec]]) -> None:
    check_golden("list.txt", mask_cpu_time(_ok("-c", node[0], "list")))


def test_list_all_golden(node: tuple[str, list[GuestSpec]]) -> None:
    check_golden("list-all.txt", mask_cpu_time(_ok("-c", node[0], "list", "--all")))


def test_list_json_golden(node: tuple[str, list[GuestSpec]]) -> None:
    check_golden("list.json", _masked_json(json.loads(_ok("-c", node[0], "list", "--json"))))


def test_list_long_json_golden(node: tuple[str, list[GuestSpec]]) -> None:
    check_golden("list-long.json", _masked_json(json.loads(_ok("-c", node[0], "list", "--long", "--json"))))


def test_list_long_text_golden(node: tuple[str, list[GuestSpec]]) -> None:
    out = _ok("-c", node[0], "list", "--long", "web000", "db001", "mail002", "dns003", "cache005", "build010")
    check_golden("list-long.txt", mask_cpu_time(out))


def test_list_json_matches_the_node(node: tuple[str, list[GuestSpec]]) -> None:
    uri, specs = node
    got = {g["name"]: g for g in json.loads(_ok("-c", uri, "list", "--all", "--json"))}
    ids = _expected_ids(specs)
    assert set(got) == {s.name for s in specs}
    for s in specs:
        g = got[s.name]
        assert g["uuid"] == s.uuid
        assert g["id"] == ids[s.name]
        assert g["state"] == s.state
        assert g["max_memory_mib"] == s.max_memory_kib // 1024
        assert g["memory_mib"] == (s.memory_kib // 1024 if s.active else 0)
        assert g["vcpus"] == s.vcpus
        assert g["state_words"].split(":")[0] in {"shut off", "shutting down", s.state, "suspended"}

    running = json.loads(_ok("-c", uri, "list", "--json"))
    assert [g["name"] for g in running] == [s.name for s in specs if s.active]  # sorted by ID


def test_list_long_json_matches_the_node(node: tuple[str, list[GuestSpec]]) -> None:
    uri, specs = node
    got = {g["name"]: g for g in json.loads(_ok("-c", uri, "list", "--all", "--long", "--json"))}
    assert len(got) == len(specs)
    for s in specs:
        g = got[s.name]
        assert g["persistent"] is not s.transient
        assert g["boot"]["kind"] == s.boot
        assert [(d["target"], d["source_kind"]) for d in g["disks"]] == [(d.target, d.kind) for d in s.disks]
        assert [d["source"] for d in g["disks"] if d["source_kind"] != "volume"] == [
            d.source for d in s.disks if d.kind != "volume"
        ]
        assert [(n["mac"], n["kind"], n["source"]) for n in g["nics"]] == [(n.mac, n.kind, n.source) for n in s.nics]
        assert g["console_log"] == f"/var/log/xen/console/{s.name}.log"
        for d in g["disks"]:
            assert d["vbd"] is not None  # every generated disk has a Xen name


def test_table_columns_line_up(node: tuple[str, list[GuestSpec]]) -> None:
    lines = _ok("-c", node[0], "list", "--all").splitlines()
    header = lines[0]
    assert header.split("  ")[0] == "Name"
    left = {"Name", "State", "CPU time", "Meaning"}
    right = {"ID", "Mem(MiB)", "VCPUs", "Time(s)"}
    columns = [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+(?: \S+)*", header)]
    assert {c[0] for c in columns} == left | right
    for line in lines[1:]:
        cells = [(m.start(), m.end()) for m in re.finditer(r"\S+(?: \S+)*", line)]
        assert len(cells) == len(columns), line
        for (title, start, end), (cstart, cend) in zip(columns, cells, strict=True):
            if title in left:
                assert cstart == start, f"{title!r} misaligned in {line!r}"
            else:
                assert cend == end, f"{title!r} misaligned in {line!r}"


def test_table_has_state_words_and_readable_cpu_time(node: tuple[str, list[GuestSpec]]) -> None:
    uri, specs = node
    lines = _ok("-c", uri, "list", "--all").splitlines()[1:]
    by_name = {s.name: s for s in specs}
    meaning = {
        "running": "running",
        "blocked": "blocked",
        "paused": "paused",
        "shutdown": "shutting down",
        "shutoff": "shut off",
        "crashed": "crashed",
        "pmsuspended": "suspended",
    }
    flags = {"running": "r-----", "blocked": "-b----", "paused": "--p---", "shutdown": "---s--", "crashed": "----c-"}
    for line in lines:
        cells = re.split(r" {2,}", line.strip())
        spec = by_name[cells[0]]
        assert cells[-1] == meaning[spec.state], line
        assert cells[4] == flags.get(spec.state, "------"), line
        assert float(cells[5]) > 0
        assert cells[6] == humanize.duration(float(cells[5])), line


@pytest.mark.parametrize("how", ["name", "uuid", "id"])
def test_list_one_guest_by_name_uuid_or_id(node: tuple[str, list[GuestSpec]], how: str) -> None:
    uri, specs = node
    spec = specs[4]
    ref = {"name": spec.name, "uuid": spec.uuid, "id": str(_expected_ids(specs)[spec.name])}[how]
    (g,) = json.loads(_ok("-c", uri, "list", "--json", ref))
    assert g["name"] == spec.name


def test_two_hundred_guests(tmp_path: Path) -> None:
    specs = write_node(tmp_path / "node.xml", 200)
    got = json.loads(_ok("-c", f"test://{tmp_path}/node.xml", "list", "--all", "--json"))
    assert sorted(g["name"] for g in got) == sorted(s.name for s in specs)
    ids = _expected_ids(specs)
    assert {g["name"]: g["id"] for g in got} == ids


def test_empty_node_says_so(tmp_path: Path) -> None:
    write_node(tmp_path / "node.xml", 0)
    out = _ok("-c", f"test://{tmp_path}/node.xml", "list")
    assert "no guests running" in out
    assert json.loads(_ok("-c", f"test://{tmp_path}/node.xml", "list", "--json")) == []
