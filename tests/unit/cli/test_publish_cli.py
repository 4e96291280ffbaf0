"""`dom0 publish add` and `dom0 publish remove` as a user runs them, on libvirt's test:// driver (its guest: "test")."""

from __future__ import annotations

import json
from pathlib import Path

from unitkit import Result, dom0

TEST = ("-c", "test:///default")


def _no_traceback(r: Result) -> None:
    assert "Traceback" not in r.err
    assert "Traceback" not in r.out


def _one_error(r: Result, rc: int) -> list[str]:
    """The error's lines, checked to be one `dom0: error:` line and one hint."""
    _no_traceback(r)
    assert r.rc == rc, (r.out, r.err)
    lines = r.err.splitlines()
    assert len(lines) == 2, r.err
    assert lines[0].startswith("dom0: error: ")
    assert lines[1].startswith("  hint: ")
    return lines


def test_add_prints_one_line_and_writes_the_entry(tmp_path: Path) -> None:
    table = tmp_path / "etc" / "publish.toml"
    r = dom0(*TEST, "publish", "add", "-f", str(table), "203.0.113.10:443", "test")
    _no_traceback(r)
    assert r.rc == 0, r.err
    assert r.out == (f"published 203.0.113.10:443/tcp -> test:443 in {table}; `dom0 publish apply` makes it live\n")
    assert r.err == ""
    assert '[[publish]]\npublic = "203.0.113.10:443/tcp"\nguest = "test:443"\n' in table.read_text()


def test_add_json_and_remove_json(tmp_path: Path) -> None:
    table = tmp_path / "publish.toml"
    r = dom0(*TEST, "publish", "add", "-f", str(table), "--json", "[2001:db8::1]:8000-8010/udp", "test:9000-9010",
             "--to", "fd00::10")  # fmt: skip
    assert r.rc == 0, r.err
    added = json.loads(r.out)
    assert added == {
        "public": "2001:db8::1",
        "ports": "8000-8010",
        "transport": "udp",
        "guest": "test",
        "guest_ports": "9000-9010",
        "to": "fd00::10",
        "key": "[2001:db8::1]:8000-8010/udp",
        "line": 4,
    }
    assert dom0(*TEST, "publish", "add", "-f", str(table), "203.0.113.10:80", "test").rc == 0
    r = dom0("publish", "remove", "-f", str(table), "--json", "test")
    assert r.rc == 0, r.err
    assert [e["key"] for e in json.loads(r.out)] == ["[2001:db8::1]:8000-8010/udp", "203.0.113.10:80/tcp"]
    assert "[[publish]]" not in table.read_text()


def test_remove_prints_each_entry_and_keeps_the_rest(tmp_path: Path) -> None:
    table = tmp_path / "publish.toml"
    table.write_text(
        "# the zope groups\n\n[[publish]]\n"
        'public = "203.0.113.10:80"\nguest = "test"\n\n'
        '# dns, on its own address\n[[publish]]\npublic = "203.0.113.11:53/udp"\nguest = "dns"\nto = "192.168.122.53"\n'
    )
    r = dom0("publish", "remove", "-f", str(table), "203.0.113.11:53/udp")
    _no_traceback(r)
    assert r.rc == 0, r.err
    assert r.out.splitlines()[0] == f"removed 203.0.113.11:53/udp -> dns:53 (at 192.168.122.53) from {table}"
    assert "`dom0 publish apply` makes the change live" in r.out
    assert table.read_text() == '# the zope groups\n\n[[publish]]\npublic = "203.0.113.10:80"\nguest = "test"\n'


def test_add_of_an_unknown_guest_fails_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    table = tmp_path / "publish.toml"
    r = dom0(*TEST, "publish", "add", "-f", str(table), "203.0.113.10:443", "nosuch")
    error, hint = _one_error(r, 1)
    assert "no guest named 'nosuch'" in error
    assert "dom0 list --all" in hint
    assert r.out == ""
    assert not table.exists()


def test_add_of_a_taken_port_names_the_entry_that_holds_it(tmp_path: Path) -> None:
    table = tmp_path / "publish.toml"
    table.write_text('# web\n[[publish]]\npublic = "203.0.113.10:8000-8010"\nguest = "test"\n')
    before = table.read_bytes()
    r = dom0(*TEST, "publish", "add", "-f", str(table), "203.0.113.10:8005", "test:80")
    error, hint = _one_error(r, 1)
    assert error == (
        "dom0: error: 203.0.113.10:8005/tcp overlaps 203.0.113.10:8000-8010/tcp, already published by line 2 "
        f"(test:8000-8010) in {table}"
    )
    assert "dom0 publish remove 203.0.113.10:8000-8010/tcp" in hint
    assert table.read_bytes() == before


def test_bad_input_is_a_usage_error_with_the_right_form(tmp_path: Path) -> None:
    table = tmp_path / "publish.toml"
    for words, expected in [
        (("203.0.113.10:70000", "test"), "port 70000 is outside 1..65535"),
        (("127.0.0.1:80", "test"), "route_localnet"),
        (("203.0.113.10:80", "test", "--to", "fd00::1"), "DNAT cannot cross address families"),
        (("203.0.113.10:80-81", "test:80"), "has 2 port(s) but guest 'test:80' has 1"),
    ]:
        r = dom0(*TEST, "publish", "add", "-f", str(table), *words)
        error, _ = _one_error(r, 2)
        assert expected in error
    assert not table.exists()


def test_a_malformed_table_is_refused_with_its_line(tmp_path: Path) -> None:
    table = tmp_path / "publish.toml"
    text = '# web\n\n[[publish]]\npublic = "203.0.113.10:80"\nguest = "test"\n\n[[publish]]\npublic = 80\nguest = "x"\n'
    table.write_text(text)
    for words in (("add", "203.0.113.10:443", "test"), ("remove", "test")):
        r = dom0(*TEST, "publish", words[0], "-f", str(table), *words[1:])
        error, _ = _one_error(r, 2)
        assert error == f"dom0: error: {table} line 7: public should be a string in quotes, not a number"
    table.write_text(text.replace("public = 80", "public = 80.1.1"))
    error, _ = _one_error(dom0(*TEST, "publish", "add", "-f", str(table), "203.0.113.10:443", "test"), 2)
    assert error.startswith(f"dom0: error: {table} line 8: ")
    assert table.read_text() == text.replace("public = 80", "public = 80.1.1")


def test_remove_of_what_is_not_published_lists_what_is(tmp_path: Path) -> None:
    table = tmp_path / "publish.toml"
    table.write_text('[[publish]]\npublic = "203.0.113.10:80"\nguest = "test"\n')
    error, hint = _one_error(dom0("publish", "remove", "-f", str(table), "203.0.113.10:80/udp"), 1)
    assert error == f"dom0: error: nothing in {table} matches '203.0.113.10:80/udp'"
    assert "203.0.113.10:80/tcp (test:80)" in hint


def test_a_symlinked_table_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.toml"
    real.write_text('[[publish]]\npublic = "203.0.113.10:80"\nguest = "test"\n')
    link = tmp_path / "publish.toml"
    link.symlink_to(real)
    error, hint = _one_error(dom0("publish", "remove", "-f", str(link), "test"), 2)
    assert error.startswith(f"dom0: error: {link} is a symlink")
    assert f"-f {real}" in hint
    assert link.is_symlink()
