"""`dom0 explain WORD`: states, VBD numbers, device nodes and names, in the library and through the CLI."""

from __future__ import annotations

import json

import pytest
from unitkit import dom0

from dom0.errors import UsageError
from dom0.observe.explain import explain


@pytest.mark.parametrize(
    ("letter", "state", "word"),
    [
        ("r", "running", "running"),
        ("b", "blocked", "waiting for I/O"),
        ("p", "paused", "paused"),
        ("s", "shutdown", "shutting down"),
        ("c", "crashed", "crashed"),
        ("d", "dying", "dying"),
    ],
)
def test_state_letters(letter: str, state: str, word: str) -> None:
    e = explain(letter)
    assert e.kind == "state"
    assert e.fields["states"] == [state]
    assert len(e.lines) == 1
    assert e.lines[0].startswith(letter)
    assert word in e.lines[0]


def test_xl_state_column() -> None:
    e = explain("-b----")
    assert (e.kind, e.fields["states"]) == ("state", ["blocked"])
    both = explain("--p--d")
    assert both.fields["states"] == ["paused", "dying"]
    assert len(both.lines) == 2
    nothing = explain("------")
    assert nothing.fields["states"] == []
    assert "no state flag" in nothing.lines[0]


@pytest.mark.parametrize(
    ("word", "name", "number"),
    [
        ("5696", "hdd", 5696),
        ("768", "hda", 768),
        ("51712", "xvda", 51712),
        ("0x1640", "hdd", 5696),
        ("0xca00", "xvda", 51712),
        ("22:64", "hdd", 5696),
        ("202:1", "xvda1", 51713),
        ("0xca:0x10", "xvdb", 51728),
        ("hdd", "hdd", 5696),
        ("/dev/xvda1", "xvda1", 51713),
        ("xvdaa", "xvdaa", (1 << 28) | 26 << 8),
    ],
)
def test_vbd_words(word: str, name: str, number: int) -> None:
    e = explain(word)
    assert e.kind == "vbd"
    assert (e.fields["name"], e.fields["vbd"]) == (name, number)
    assert name in e.lines[0]


def test_number_explanation_names_the_node_and_the_disk() -> None:
    lines = explain("5696").lines
    assert "22:64" in lines[0]
    assert "hdd" in lines[0]
    assert any("/dev/hdd" in line for line in lines)


def test_ambiguous_node_gives_both_readings() -> None:
    # `ls -l` prints 3, 40 (decimal: hda40); xentop prints [3:40] (hex: 3:64 = hdb).
    e = explain("3:40")
    readings = {r["as"].split(",")[0]: r["name"] for r in e.fields["readings"]}  # type: ignore[attr-defined]
    assert readings == {"decimal": "hda40", "hex": "hdb"}
    assert len(e.lines) == 2
    assert "hda40" in e.lines[0]
    assert "hdb" in e.lines[1]


@pytest.mark.parametrize("word", ["garbage", "x", "99:99", "1234", "-bq---", "vda", ""])
def test_garbage_is_a_usage_error_with_a_hint(word: str) -> None:
    with pytest.raises(UsageError) as info:
        explain(word)
    assert info.value.hint


def test_cli_explains_with_exit_0() -> None:
    r = dom0("explain", "5696")
    assert r.rc == 0, r.err
    assert "22:64" in r.out
    assert "hdd" in r.out
    assert r.err == ""


def test_cli_garbage_exits_2_with_hint() -> None:
    r = dom0("explain", "garbage")
    assert r.rc == 2
    assert r.out == ""
    lines = r.err.splitlines()
    assert lines[0] == "dom0: error: cannot explain 'garbage'"
    assert lines[1].strip().startswith("hint:")
    assert "5696" in lines[1]
    assert "Traceback" not in r.err


def test_cli_json_keys() -> None:
    r = dom0("explain", "--json", "5696")
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    assert {"word", "kind", "explanation", "vbd", "name", "scheme", "disk", "partition", "major", "minor"} <= set(doc)
    assert (doc["word"], doc["kind"], doc["name"], doc["major"], doc["minor"]) == ("5696", "vbd", "hdd", 22, 64)
    assert isinstance(doc["explanation"], list)

    state = json.loads(dom0("explain", "--json", "b").out)
    assert (state["kind"], state["states"]) == ("state", ["blocked"])

    both = json.loads(dom0("explain", "--json", "3:40").out)
    assert [r["name"] for r in both["readings"]] == ["hda40", "hdb"]
