"""`dom0 publish list/apply/check/proxy` as an admin runs them, inside a network namespace each test creates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from publishkit import dom0_in, in_ns, netns
from unitkit import dom0

URI = "test:///default"  # its guest "test" holds 192.168.122.3 from a DHCP lease

TABLE = """\
# published by hand
[[publish]]
public = "203.0.113.10:80/tcp"
guest = "test:8080"

[[publish]]
public = "203.0.113.10:443"
guest = "test"
to = "10.0.0.2"
"""

FOREIGN = """\
table inet admin {
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 22 accept comment "the admin's own"
	}
}
"""


@pytest.fixture
def ns() -> Iterator[str]:
    with netns() as name:
        yield name


def publish(ns: str, verb: str, path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    r = dom0_in(ns, "-c", URI, "publish", verb, "-f", str(path), *args, env=env)
    assert "Traceback" not in r.err, r.err
    return r.rc, r.out, r.err


def dom0_table(ns: str) -> str:
    return in_ns(ns, "nft", "-a", "list", "table", "inet", "dom0")


def test_apply_list_second_apply_remove(ns: str, tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(TABLE)
    in_ns(ns, "nft", "-f", "-", input=FOREIGN.encode())
    foreign = in_ns(ns, "nft", "-a", "list", "table", "inet", "admin")

    rc, out, _ = publish(ns, "list", path)
    assert rc == 0
    assert out.splitlines()[:3] == [
        "Public                Guest      Address now            Applied  State",
        "203.0.113.10:80/tcp   test:8080  192.168.122.3 (lease)  -        not applied",
        "203.0.113.10:443/tcp  test:443   10.0.0.2 (to)          -        not applied",
    ]

    rc, out, err = publish(ns, "apply", path)
    assert (rc, err) == (0, "")
    assert out.splitlines() == [
        "added    203.0.113.10:80/tcp -> 192.168.122.3:8080 (test)",
        "added    203.0.113.10:443/tcp -> 10.0.0.2:443 (test)",
        f"applied {path}: table inet dom0 replaced in one transaction",
    ]
    live = dom0_table(ns)
    assert 'dnat ip to 192.168.122.3:8080 comment "dom0 publish 203.0.113.10:80/tcp -> 192.168.122.3:8080"' in live

    rc, out, _ = publish(ns, "apply", path)
    assert rc == 0
    assert out == f"no change: table inet dom0 already matches {path} (2 entries)\n"
    assert dom0_table(ns) == live  # not even reloaded: the rule handles are the same

    rc, out, _ = publish(ns, "list", path, "--json")
    rows = json.loads(out)
    assert [(r["public"], r["applied"], r["state"]) for r in rows] == [
        ("203.0.113.10:80/tcp", "192.168.122.3:8080", "live"),
        ("203.0.113.10:443/tcp", "10.0.0.2:443", "live"),
    ]

    path.write_text(TABLE.split('\n[[publish]]\npublic = "203.0.113.10:443"', maxsplit=1)[0])
    rc, out, _ = publish(ns, "list", path)
    assert "203.0.113.10:443/tcp  -          -                      10.0.0.2:443        not in table" in out
    rc, out, _ = publish(ns, "apply", path)
    assert out.splitlines()[0] == "removed  203.0.113.10:443/tcp (was -> 10.0.0.2:443)"
    assert "dport 443" not in dom0_table(ns)
    assert in_ns(ns, "nft", "-a", "list", "table", "inet", "admin") == foreign


def test_dry_run_prints_the_ruleset_and_changes_nothing(ns: str, tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(TABLE)
    rc, out, _ = publish(ns, "apply", path, "--dry-run")
    assert rc == 0
    assert out.startswith("# dom0 publish: the whole of table inet dom0")
    assert "table inet dom0 {}\nflush table inet dom0\n" in out
    assert "added    203.0.113.10:80/tcp -> 192.168.122.3:8080 (test)" in out
    assert out.endswith(f"dry run: nothing was changed; `dom0 publish apply -f {path}` applies it\n")
    assert in_ns(ns, "nft", "list", "tables") == ""
    rc, out, _ = publish(ns, "apply", path, "--dry-run", "--json")
    doc = json.loads(out)
    assert (doc["dry_run"], doc["changed"], [c["change"] for c in doc["changes"]]) == (True, True, ["added"] * 2)


def test_nft_missing_one_line_and_nothing_changed(ns: str, tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(TABLE)
    assert publish(ns, "apply", path)[0] == 0
    before = in_ns(ns, "nft", "-a", "list", "ruleset")
    rc, out, err = publish(ns, "apply", path, env={"PATH": "/usr/bin:/bin"})
    assert (rc, out) == (1, "")
    assert err == (
        "dom0: error: nft is not installed: dom0 publishes through nftables; nothing was changed\n"
        "  hint: apt install nftables\n"
    )
    assert in_ns(ns, "nft", "-a", "list", "ruleset") == before


def test_refused_ruleset_leaves_the_previous_one(ns: str, tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(TABLE)
    assert publish(ns, "apply", path)[0] == 0
    before = in_ns(ns, "nft", "-a", "list", "ruleset")
    # an nft that refuses any file it is given, as it would a ruleset the kernel cannot take
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nft"
    fake.write_text(
        '#!/bin/sh\nfor a in "$@"; do [ "$a" = -f ] && { echo "/dev/stdin:9:3-7: Error: Could not process rule:'
        ' No such file or directory" >&2; exit 1; }; done\nexec /usr/sbin/nft "$@"\n'
    )
    fake.chmod(0o755)
    path.write_text(TABLE.replace("10.0.0.2", "10.0.0.3"))
    rc, out, err = publish(ns, "apply", path, env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert (rc, out) == (1, "")
    assert err.splitlines()[0] == (
        "dom0: error: nft refused dom0's ruleset: Error: Could not process rule: No such file or directory "
        "(ruleset line 9); nothing was changed (nft -f is one transaction, the previous rules stay in place)"
    )
    assert in_ns(ns, "nft", "-a", "list", "ruleset") == before


def test_malformed_table_refused_and_rules_stay(ns: str, tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(TABLE)
    assert publish(ns, "apply", path)[0] == 0
    before = in_ns(ns, "nft", "-a", "list", "ruleset")
    path.write_text('[[publish]]\npublic = "203.0.113.10:99999"\nguest = "web"\n')
    rc, _, err = publish(ns, "apply", path)
    assert rc == 2
    assert "line" in err
    assert len(err.splitlines()) <= 2
    assert in_ns(ns, "nft", "-a", "list", "ruleset") == before


def test_unknown_guest_refuses_apply_as_a_whole(ns: str, tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(TABLE + '\n[[publish]]\npublic = "203.0.113.10:25"\nguest = "gone"\n')
    rc, out, err = publish(ns, "apply", path)
    assert (rc, out) == (1, "")
    assert "no guest 'gone' (203.0.113.10:25/tcp); nothing was changed" in err
    assert in_ns(ns, "nft", "list", "tables") == ""


LIBVIRT = """\
*filter
:LIBVIRT_INP - [0:0]
:LIBVIRT_OUT - [0:0]
:LIBVIRT_FWO - [0:0]
:LIBVIRT_FWI - [0:0]
:LIBVIRT_FWX - [0:0]
-A FORWARD -j LIBVIRT_FWX
-A FORWARD -j LIBVIRT_FWI
-A FORWARD -j LIBVIRT_FWO
-A LIBVIRT_FWI -d 192.168.122.0/24 -o virbr0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A LIBVIRT_FWI -o virbr0 -j REJECT --reject-with icmp-port-unreachable
COMMIT
"""


def test_libvirt_nat_forward_gets_one_rule_ahead_once(ns: str, tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(TABLE)
    in_ns(ns, "iptables-nft-restore", "--noflush", input=LIBVIRT.encode())
    rc, out, _ = publish(ns, "apply", path)
    assert rc == 0
    assert "libvirt's NAT network rejects new inbound connections to its guests" in out
    assert "inserted one rule at the top of iptables's FORWARD chain" in out
    rules = [r for r in in_ns(ns, "iptables", "-S", "FORWARD").splitlines() if r.startswith("-A")]
    assert rules[:2] == [
        '-A FORWARD -m connmark --mark 0x20000000/0x20000000 -m comment --comment "dom0 publish" -j ACCEPT',
        "-A FORWARD -j LIBVIRT_FWX",
    ]
    rc, out, _ = publish(ns, "apply", path)
    assert "dom0's accept rule is in place ahead of libvirt's" in out
    assert [r for r in in_ns(ns, "iptables", "-S", "FORWARD").splitlines() if r.startswith("-A")] == rules


def test_check_says_which_answer(ns: str, tmp_path: Path) -> None:
    # the namespace's own "public" address and a "guest" address on one link; a listener on the guest's 8080
    in_ns(ns, "ip", "link", "add", "dummy0", "type", "veth", "peer", "name", "dummy1")
    in_ns(ns, "ip", "link", "set", "dummy1", "up")
    in_ns(ns, "ip", "addr", "add", "198.51.100.1/32", "dev", "dummy0")
    in_ns(ns, "ip", "addr", "add", "10.9.0.2/24", "dev", "dummy0")
    in_ns(ns, "ip", "link", "set", "dummy0", "up")
    path = tmp_path / "publish.toml"
    path.write_text(
        '[[publish]]\npublic = "198.51.100.1:80"\nguest = "test:8080"\nto = "10.9.0.2"\n\n'
        '[[publish]]\npublic = "198.51.100.1:81"\nguest = "test:8081"\nto = "10.9.0.2"\n\n'
        '[[publish]]\npublic = "198.51.100.1:53/udp"\nguest = "test"\nto = "10.9.0.2"\n'
    )
    assert publish(ns, "apply", path)[0] == 0
    code = (
        "import socket,time\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
        "s.bind(('10.9.0.2',8080));s.listen();print('up',flush=True)\ntime.sleep(30)\n"
    )
    server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        assert server.stdout.readline() == b"up\n"
        rc, out, err = publish(ns, "check", path, "--timeout", "1")
    finally:
        server.kill()
        server.wait()
    assert rc == 1, err
    lines = out.splitlines()
    assert lines[0].split() == ["Public", "Guest", "Address", "Guest", "answers", "Public", "answers"]
    assert lines[1].split() == ["198.51.100.1:80/tcp", "test:8080", "10.9.0.2:8080", "answering", "answering"]
    assert lines[2].split() == ["198.51.100.1:81/tcp", "test:8081", "10.9.0.2:8081", "refused", "refused"]
    assert lines[3].split() == ["198.51.100.1:53/udp", "test:53", "10.9.0.2:53", "not", "checked", "not", "checked"]
    assert "198.51.100.1:53/udp: UDP has no handshake: no answer to a datagram proves nothing" in out
    assert out.endswith("1 of 3 entries do not answer\n")


def test_proxy_lines_and_hostile_guest_name(tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(
        '[[publish]]\npublic = "203.0.113.10:443"\nguest = "test:8443"\n\n'
        '[[publish]]\npublic = "203.0.113.10:53/udp"\nguest = "test"\n'
    )
    r = dom0("-c", URI, "publish", "proxy", "-f", str(path))
    assert r.rc == 0, r.err
    assert "frontend test_203.0.113.10_443_tcp\n    mode tcp\n    bind 203.0.113.10:443\n" in r.out
    assert "    server test 192.168.122.3:8443 check\n" in r.out
    assert "# 203.0.113.10:53/udp: UDP; haproxy's mode tcp carries only TCP" in r.out
    r = dom0("-c", URI, "publish", "proxy", "--format", "squid", "-f", str(path))
    assert "cache_peer 192.168.122.3 parent 8443 0 no-query originserver name=test_203.0.113.10_443_tcp\n" in r.out


def test_list_without_nft_still_shows_the_table(tmp_path: Path) -> None:
    path = tmp_path / "publish.toml"
    path.write_text(TABLE)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    r = dom0_env(["-c", URI, "publish", "list", "-f", str(path)], {"PATH": "/usr/bin:/bin"})
    assert r[0] == 0
    assert "192.168.122.3 (lease)  -        unknown" in r[1]
    assert "dom0: the applied rules cannot be read: nft is not installed" in r[2]


def dom0_env(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    from unitkit import DOM0

    from dom0 import run

    proc = run.run(["env", *(f"{k}={v}" for k, v in env.items()), str(DOM0), *args], check=False, input=b"")
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()
