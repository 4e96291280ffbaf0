"""publish.toml: the syntax of its entries, the lines its errors name, and edits that keep the administrator's file."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from dom0.errors import Dom0Error, UsageError
from dom0.publish.table import (
    PortRange,
    Transport,
    add_entry,
    load_table,
    make_entry,
    parse_address,
    parse_guest,
    parse_public,
    remove_entries,
)

HAND_WRITTEN = """\
# Published services of the Zope groups: one public address each.
# Ask Anna before changing the mail entries.

# group one's web front (http and https on the same address)
[[publish]]  # plain http
public = "203.0.113.10:80"        # the old Squid listened here
guest = "web1"
# to = "192.168.122.9"   (pinned while the DHCP lease was broken)

# https goes to the same guest
[[publish]]
public = "203.0.113.10:443/tcp"
guest = "web1:8443"

# a note about the mail relay, kept apart

[[publish]]
public = "[2001:db8::25]:25"
guest = "mail"
to = "fd00::25"
"""


# --- the syntax ---------------------------------------------------------------------------------------------------


def test_parse_public_reads_ipv4_ranges_transports_and_bracketed_ipv6() -> None:
    assert parse_public("203.0.113.10:80") == (ipaddress.ip_address("203.0.113.10"), PortRange(80, 80), Transport.TCP)
    assert parse_public("203.0.113.10:8000-8010/udp") == (
        ipaddress.ip_address("203.0.113.10"),
        PortRange(8000, 8010),
        Transport.UDP,
    )
    assert parse_public("[2001:db8::1]:443/tcp") == (ipaddress.ip_address("2001:db8::1"), PortRange(443, 443), "tcp")


def test_parse_guest_and_address() -> None:
    assert parse_guest("web") == ("web", None)
    assert parse_guest("web:8080") == ("web", PortRange(8080, 8080))
    assert parse_guest("web:9000-9010") == ("web", PortRange(9000, 9010))
    assert parse_address("192.168.122.10") == ipaddress.ip_address("192.168.122.10")
    assert parse_address("fd00::10") == ipaddress.ip_address("fd00::10")


@pytest.mark.parametrize(
    ("text", "reason", "hint"),
    [
        ("203.0.113.10:0", "port 0 is outside 1..65535", "PUBLIC_IP:PORT"),
        ("203.0.113.10:65536", "port 65536 is outside 1..65535", "PUBLIC_IP:PORT"),
        ("203.0.113.10:" + "9" * 5000, "outside 1..65535", "PUBLIC_IP:PORT"),
        ("203.0.113.10:90-80", "the range 90-80 runs backwards", "80-90"),
        ("203.0.113.10", "no port", "PUBLIC_IP:PORT"),
        ("203.0.113.10:http", "port 'http' is not a number", "PUBLIC_IP:PORT"),
        ("203.0.113.10:80/sctp", "unknown transport 'sctp'", "/tcp or /udp"),
        ("web.example:80", "'web.example' is not an IP address", "PUBLIC_IP:PORT"),
        ("2001:db8::1:80", "an IPv6 address goes in brackets", "[2001:db8::1]:443"),
        ("0.0.0.0:80", "means every address", "this host's own public addresses"),
        ("[::]:80", "means every address", "this host's own public addresses"),
        ("239.1.1.1:5000/udp", "multicast", "this host's own public addresses"),
        ("127.0.0.1:80", "route_localnet", "this host's own public addresses"),
        ("[::1]:80", "loopback address cannot be DNATed", "this host's own public addresses"),
        ("[::ffff:203.0.113.10]:80", "IPv4-mapped", "203.0.113.10"),
    ],
)
def test_parse_public_refuses_with_the_text_and_the_right_form(text: str, reason: str, hint: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_public(text)
    err = caught.value
    assert err.exit_code == 2
    assert "\n" not in err.message
    assert err.message.startswith(f"public address '{text[:40]}")
    assert reason in err.message
    assert hint in err.hint


@pytest.mark.parametrize(
    ("public", "guest", "to", "reason", "hint"),
    [
        ("203.0.113.10:80", "web:0", None, "port 0 is outside", "GUEST[:PORT[-PORT]]"),
        ("203.0.113.10:80", ":80", None, "no guest name", "GUEST[:PORT[-PORT]]"),
        ("203.0.113.10:80", "web\x1b[2J", None, "not a guest name", "dom0 list --all"),
        ("203.0.113.10:8000-8010", "web:9000", None, "has 11 port(s) but guest 'web:9000' has 1", "web:9000-9010"),
        ("203.0.113.10:80", "web", "fd00::10", "is IPv6 but the public address 203.0.113.10 is IPv4", "IPv4"),
        ("[2001:db8::1]:80", "web", "192.168.122.10", "is IPv4 but the public address 2001:db8::1 is IPv6", "IPv6"),
        ("203.0.113.10:80", "web", "192.168.122", "'192.168.122' is not an IP address", "guest's IP address"),
        ("203.0.113.10:80", "web", "127.0.0.1", "a loopback address is not a guest's address", "guest's IP"),
    ],
)
def test_make_entry_refuses_mismatched_sides(public: str, guest: str, to: str | None, reason: str, hint: str) -> None:
    with pytest.raises(UsageError) as caught:
        make_entry(public, guest, to)
    assert reason in caught.value.message
    assert "\x1b" not in caught.value.message  # a control character is shown escaped, never sent to the terminal
    assert hint in caught.value.hint


def test_an_entry_names_itself_by_key_and_maps_ranges_onto_ranges() -> None:
    entry = make_entry("[2001:db8::1]:8000-8010/udp", "dns:9000-9010")
    assert entry.key == "[2001:db8::1]:8000-8010/udp"
    assert (entry.guest, entry.guest_ports, entry.target) == ("dns", PortRange(9000, 9010), "dns:9000-9010")
    assert make_entry("203.0.113.10:8000-8010", "web").guest_ports == PortRange(8000, 8010)


# --- reading a hand-written file ----------------------------------------------------------------------------------


def test_a_missing_file_is_an_empty_table(tmp_path: Path) -> None:
    assert load_table(tmp_path / "none" / "publish.toml").entries == ()


def test_entries_keep_the_line_of_their_header(tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(HAND_WRITTEN)
    table = load_table(path)
    assert [(e.key, e.target, e.line) for e in table.entries] == [
        ("203.0.113.10:80/tcp", "web1:80", 5),
        ("203.0.113.10:443/tcp", "web1:8443", 11),
        ("[2001:db8::25]:25/tcp", "mail:25", 17),
    ]
    assert table.entries[2].to == ipaddress.ip_address("fd00::25")


def _refusal(path: Path, text: str) -> UsageError:
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        load_table(path)
    assert "\n" not in caught.value.message
    return caught.value


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        # malformed TOML: tomllib's position
        (('guest = "web1:8443"', "guest = web1:8443"), "line 13: invalid value"),
        # a key given twice: tomllib says "end of document", the line is found all the same
        (('guest = "web1"\n', 'guest = "web1"\nguest = "web2"\n'), "line 8: 'guest' is given twice in one entry"),
        (('guest = "mail"', 'guest = "mail"\nport = 25'), "line 17: unknown key 'port'"),
        (('guest = "web1:8443"\n', ""), "line 11: the entry has no guest"),
        (('guest = "web1:8443"', "guest = 8443"), "line 11: guest should be a string in quotes, not a number"),
        (('"203.0.113.10:443/tcp"', '"203.0.113.10:443/tls"'), "line 11: public address '203.0.113.10:443/tls'"),
        (("# Ask Anna", "version = 2\n# Ask Anna"), "line 2: unknown key 'version'"),
        # a key among the entries belongs to the entry above it
        (("# a note", "version = 2\n# a note"), "line 11: unknown key 'version'"),
        (
            ('"203.0.113.10:443/tcp"', '"203.0.113.10:80"'),
            "line 11: 203.0.113.10:80/tcp is already published by line 5",
        ),
        (('to = "fd00::25"', 'to = "192.0.2.25"'), "line 17: to '192.0.2.25' is IPv4 but the public address"),
    ],
)
def test_a_bad_file_is_refused_with_the_line_at_fault(tmp_path: Path, edit: tuple[str, str], expected: str) -> None:
    path = tmp_path / "publish.toml"
    old, new = edit
    assert old in HAND_WRITTEN
    err = _refusal(path, HAND_WRITTEN.replace(old, new, 1))
    assert err.exit_code == 2
    assert err.message.startswith(f"{path} {expected}"), err.message
    assert err.hint


def test_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_bytes(HAND_WRITTEN.encode().replace(b"Anna", b"\xc4nna"))
    with pytest.raises(UsageError, match=r"line 2: not UTF-8 text"):
        load_table(path)


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("203.0.113.10:80", "203.0.113.10:80/tcp", "203.0.113.10:80/tcp is already published by line 4 (web:80)"),
        (
            "203.0.113.10:8000-8010",
            "203.0.113.10:8010-8020",
            "203.0.113.10:8010-8020/tcp overlaps 203.0.113.10:8000-8010/tcp, already published by line 4",
        ),
        ("[2001:db8::1]:53/udp", "[2001:DB8:0::1]:53/udp", "[2001:db8::1]:53/udp is already published by line 4"),
    ],
)
def test_overlapping_entries_name_both_lines(tmp_path: Path, first: str, second: str, expected: str) -> None:
    text = f'# two\n\n\n[[publish]]\npublic = "{first}"\nguest = "web"\n\n\n'
    text += f'[[publish]]\npublic = "{second}"\nguest = "x"\n'
    path = tmp_path / "publish.toml"
    err = _refusal(path, text)
    assert err.message.startswith(f"{path} line 9: {expected}"), err.message


def test_the_same_port_on_tcp_and_udp_or_on_two_addresses_is_no_overlap(tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(
        '[[publish]]\npublic = "203.0.113.10:53"\nguest = "dns"\n[[publish]]\npublic = "203.0.113.10:53/udp"\n'
        'guest = "dns"\n[[publish]]\npublic = "203.0.113.11:53"\nguest = "dns2"\n'
        '[[publish]]\npublic = "203.0.113.10:8000-8010"\nguest = "web"\n[[publish]]\npublic = "203.0.113.10:8011"\n'
        'guest = "web"\n'
    )
    assert [e.line for e in load_table(path).entries] == [1, 4, 7, 10, 13]


# --- editing --------------------------------------------------------------------------------------------------------


def test_add_makes_a_new_file_with_a_header_and_mode_0644(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "dom0" / "publish.toml"
    umask = os.umask(0o077)
    try:
        table = add_entry(path, make_entry("203.0.113.10:443", "web"))
    finally:
        os.umask(umask)
    text = path.read_text()
    assert text.startswith("# dom0 publish:")
    assert "`dom0 publish apply` makes it live" in text.splitlines()[1]
    assert text.endswith('\n\n[[publish]]\npublic = "203.0.113.10:443/tcp"\nguest = "web:443"\n')
    assert [(e.key, e.line) for e in table.entries] == [("203.0.113.10:443/tcp", 4)]
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o755"
    assert [p.name for p in path.parent.iterdir()] == ["publish.toml"]  # no temporary file left behind


def test_add_appends_and_keeps_comments_order_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(HAND_WRITTEN)
    path.chmod(0o600)
    table = add_entry(path, make_entry("203.0.113.11:53/udp", "dns", "192.168.122.53"))
    text = path.read_text()
    assert (
        text
        == HAND_WRITTEN + '\n[[publish]]\npublic = "203.0.113.11:53/udp"\nguest = "dns:53"\nto = "192.168.122.53"\n'
    )
    assert [e.line for e in table.entries] == [5, 11, 17, 22]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_an_edit_replaces_the_file_whole_so_a_reader_sees_the_old_or_the_new(tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(HAND_WRITTEN)
    with path.open() as reader:  # opened before the edit, as `dom0 publish apply` might have it
        remove_entries(path, ["mail"])
        assert reader.read() == HAND_WRITTEN
    assert "mail" not in load_table(path).entries[-1].guest
    assert os.listdir(tmp_path) == ["publish.toml"]


def test_add_of_a_taken_port_names_the_line_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(HAND_WRITTEN)
    before = path.read_bytes()
    with pytest.raises(Dom0Error) as caught:
        add_entry(path, make_entry("203.0.113.10:440-450", "other"))
    assert caught.value.message == (
        f"203.0.113.10:440-450/tcp overlaps 203.0.113.10:443/tcp, already published by line 11 (web1:8443) in {path}"
    )
    assert "dom0 publish remove 203.0.113.10:443/tcp" in caught.value.hint
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["publish.toml"]


def test_add_to_a_malformed_file_is_refused_and_leaves_it_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    broken = HAND_WRITTEN.replace('guest = "mail"', "guest = mail")
    path.write_text(broken)
    with pytest.raises(UsageError, match=r"line 19: invalid value"):
        add_entry(path, make_entry("203.0.113.11:80", "web2"))
    assert path.read_text() == broken


def test_remove_by_key_keeps_every_other_comment(tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(HAND_WRITTEN)
    removed = remove_entries(path, ["203.0.113.10:443"])  # tcp when no transport is given
    assert [(e.key, e.line) for e in removed] == [("203.0.113.10:443/tcp", 11)]
    # the entry goes with the comment above its header; the note that stands apart stays
    assert path.read_text() == HAND_WRITTEN.replace(
        '# https goes to the same guest\n[[publish]]\npublic = "203.0.113.10:443/tcp"\nguest = "web1:8443"\n\n', ""
    )


def test_remove_the_first_entry_keeps_the_file_header_and_the_next_entry_comment(tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(HAND_WRITTEN)
    remove_entries(path, ["203.0.113.10:80/tcp"])
    text = path.read_text()
    assert text.startswith("# Published services of the Zope groups: one public address each.\n# Ask Anna")
    for gone in ("# group one's web front", "the old Squid", "pinned while"):
        assert gone not in text
    assert "\n\n# https goes to the same guest\n[[publish]]\n" in text
    assert [e.line for e in load_table(path).entries] == [5, 11]


def test_remove_by_guest_takes_all_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(HAND_WRITTEN)
    removed = remove_entries(path, ["web1"])
    assert [e.key for e in removed] == ["203.0.113.10:80/tcp", "203.0.113.10:443/tcp"]
    assert path.read_text() == (
        "# Published services of the Zope groups: one public address each.\n# Ask Anna before changing the mail "
        'entries.\n\n# a note about the mail relay, kept apart\n\n[[publish]]\npublic = "[2001:db8::25]:25"\n'
        'guest = "mail"\nto = "fd00::25"\n'
    )


def test_remove_the_last_entry_leaves_no_blank_lines_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(HAND_WRITTEN)
    remove_entries(path, ["[2001:db8::25]:25/tcp"])
    assert path.read_text().endswith('guest = "web1:8443"\n\n# a note about the mail relay, kept apart\n')


def test_add_then_remove_gives_back_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(HAND_WRITTEN)
    add_entry(path, make_entry("203.0.113.11:80", "web2"))
    remove_entries(path, ["web2"])
    assert path.read_text() == HAND_WRITTEN


def test_remove_of_what_is_not_there_lists_the_entries_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(HAND_WRITTEN)
    before = path.read_bytes()
    with pytest.raises(Dom0Error) as caught:
        remove_entries(path, ["web1", "203.0.113.10:8080"])  # the first matches: still nothing is removed
    assert caught.value.message == f"nothing in {path} matches '203.0.113.10:8080'"
    assert "203.0.113.10:80/tcp (web1:80), 203.0.113.10:443/tcp (web1:8443)" in caught.value.hint
    assert path.read_bytes() == before


def test_edits_refuse_a_symlink_and_leave_it_and_its_target_alone(tmp_path: Path) -> None:
    real = tmp_path / "real.toml"
    real.write_text(HAND_WRITTEN)
    link = tmp_path / "publish.toml"
    link.symlink_to(real)
    for edit in (
        lambda: add_entry(link, make_entry("203.0.113.11:80", "web2")),
        lambda: remove_entries(link, ["web1"]),
    ):
        with pytest.raises(UsageError) as caught:
            edit()
        assert caught.value.message.startswith(f"{link} is a symlink")
        assert f"-f {real}" in caught.value.hint
    assert link.is_symlink()
    assert real.read_text() == HAND_WRITTEN


def test_remove_from_a_missing_file_makes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "publish.toml"
    with pytest.raises(Dom0Error, match="does not exist"):
        remove_entries(path, ["web"])
    assert not path.parent.exists()
