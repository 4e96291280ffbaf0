"""`dom0 publish` end to end, with real traffic between network namespaces the tests make (see netns.py).

An outside client, the host (uplink with two public addresses, br0 for the guests) and two guests, web and mail,
each running real TCP and UDP servers that answer with their name, the port and the client address they saw.
dom0 runs inside the host's namespace against libvirt's test driver (guests web, mail and db "running"), with
`--to` giving each guest's address, so nothing here needs libvirtd and nothing touches the machine's own
network namespace.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nodegen
import pytest

from . import netns
from .conftest import dom0_program
from .test_control import _assert_one_line_error

WEB = netns.GUEST_IPS["web"]
MAIL = netns.GUEST_IPS["mail"]
PUB1, PUB2 = netns.PUBLIC_IPS
CLIENT = netns.OUTSIDE_IP

pytestmark = pytest.mark.skipif(bool(netns.missing_tools()), reason=netns.missing_tools() or "runs")


@dataclass
class Publish:
    """The lab, the test driver's node file, the publish table's path, and dom0 run in the host's namespace."""

    lab: netns.Lab
    uri: str
    file: Path

    def dom0(
        self, verb: str, *args: str, check: bool = True, env: dict[str, str] | None = None, file: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [*dom0_program(), "-c", self.uri, "publish", verb, *args, "-f", str(file or self.file)]
        environ = {k: v for k, v in os.environ.items() if k not in ("DOM0_CONNECT", "LIBVIRT_DEFAULT_URI")}
        environ.update(env or {})
        proc = self.lab.run("host", *argv, check=False, env=environ, timeout=60)
        if check and proc.returncode != 0:
            pytest.fail(f"dom0 publish {verb} {' '.join(args)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}")
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def add(self, public: str, guest: str, to: str) -> None:
        self.dom0("add", public, guest, "--to", to)

    def apply(self, *args: str, file: Path | None = None) -> str:
        return self.dom0("apply", *args, file=file).stdout

    def dom0_table(self) -> str:
        """dom0's table with rule handles: a table flushed and rewritten, even to the same rules, lists differently."""
        return self.lab.nft("host", "-a", "list", "table", "inet", "dom0")


@pytest.fixture
def pub(tmp_path: Path) -> Iterator[Publish]:
    reason = netns.missing_tools()
    if reason:
        pytest.skip(reason)
    node = tmp_path / "node.xml"
    specs = [
        nodegen.GuestSpec(name, str(uuidlib.uuid4()), "running", 131072, 131072, 1, "hvm", (), ())
        for name in ("web", "mail", "db")
    ]
    node.write_text(nodegen.node_xml(specs))
    lab = netns.Lab(tmp_path)
    try:
        netns.build_publish_lab(lab)
        yield Publish(lab, f"test://{node}", tmp_path / "publish.toml")
    finally:
        lab.close()


def test_outside_reaches_each_groups_guest_http_and_https_on_one_public_address(pub: Publish) -> None:
    lab = pub.lab
    assert lab.tcp("outside", PUB1, 80) == "refused"  # the host's own address, nothing published yet
    pub.add(f"{PUB1}:80", "web", WEB)
    pub.add(f"{PUB1}:443/tcp", "web:443", WEB)
    pub.add(f"{PUB2}:80", "mail:25", MAIL)
    listed = pub.dom0("list").stdout
    for key in (f"{PUB1}:80/tcp", f"{PUB1}:443/tcp", f"{PUB2}:80/tcp"):
        assert key in listed, listed
    pub.apply()
    # each group on its own public address, http and https on the same one; the guest sees the real client
    assert lab.tcp("outside", PUB1, 80) == f"web 80 {CLIENT}"
    assert lab.tcp("outside", PUB1, 443) == f"web 443 {CLIENT}"
    assert lab.tcp("outside", PUB2, 80) == f"mail 25 {CLIENT}"
    assert lab.tcp("outside", PUB2, 443) == "refused"  # not published: still the host's own, closed port


def test_udp_published_and_echoed(pub: Publish) -> None:
    lab = pub.lab
    assert lab.udp("outside", PUB1, 53, "ping") == "refused"
    pub.add(f"{PUB1}:53/udp", "web", WEB)
    pub.apply()
    assert lab.udp("outside", PUB1, 53, "ping") == f"web udp 53 {CLIENT} ping"
    assert lab.tcp("outside", PUB1, 53) == "refused"  # only UDP was published


def test_host_itself_and_a_neighbour_guest_reach_the_public_address(pub: Publish) -> None:
    lab = pub.lab
    pub.add(f"{PUB1}:80", "web", WEB)
    assert lab.tcp("host", PUB1, 80) == "refused"
    assert lab.tcp("mail", PUB1, 80) == "refused"
    pub.apply()
    assert lab.tcp("host", PUB1, 80).startswith("web 80 ")  # host-local: the output hook's DNAT
    # hairpin: mail -> public address -> web on the same bridge; web must answer through the host, so it sees
    # the host's bridge address rather than mail's (whose reply would bypass the DNAT and be dropped by mail)
    assert lab.tcp("mail", PUB1, 80) == f"web 80 {netns.BRIDGE_IP}"
    assert lab.tcp("outside", PUB1, 80) == f"web 80 {CLIENT}"  # the hairpin masquerade spares outside clients


def test_a_guest_reaches_its_own_public_address(pub: Publish) -> None:
    lab = pub.lab
    pub.add(f"{PUB2}:80", "mail:25", MAIL)
    pub.apply()
    assert lab.tcp("outside", PUB2, 80) == f"mail 25 {CLIENT}"
    calls = lab.run("host", "sysctl", "-n", "net.bridge.bridge-nf-call-iptables", check=False)
    check = pub.dom0("check", check=False)
    if calls.returncode != 0 or calls.stdout.strip() != "1":
        # without br_netfilter the frame is routed, not bridged, and the hairpin masquerade brings it back
        assert "br_netfilter" not in check.stderr
        assert lab.tcp("mail", PUB2, 80, timeout=2) == f"mail 25 {netns.BRIDGE_IP}"
        return
    # with br_netfilter (bridge-nf-call-iptables=1, as on hosts running Docker) the DNAT happens as the frame is
    # bridged, and the bridge will not send it back out the port it came in on: check says so and how to fix it
    assert "turn hairpin mode on for that guest's port" in check.stderr
    assert lab.tcp("mail", PUB2, 80, timeout=1) == "timeout"
    lab.run("host", "ip", "link", "set", "dev", "v-mail", "type", "bridge_slave", "hairpin", "on")
    assert lab.tcp("mail", PUB2, 80, timeout=2) == f"mail 25 {netns.BRIDGE_IP}"


def test_remove_makes_it_unreachable_and_a_second_apply_changes_nothing(pub: Publish) -> None:
    lab = pub.lab
    pub.add(f"{PUB1}:80", "web", WEB)
    pub.add(f"{PUB1}:443", "web", WEB)
    pub.apply()
    assert lab.tcp("outside", PUB1, 80) == f"web 80 {CLIENT}"
    pub.dom0("remove", f"{PUB1}:80")
    assert lab.tcp("outside", PUB1, 80) == f"web 80 {CLIENT}"  # the file changed; the rules follow on apply
    pub.apply()
    assert lab.tcp("outside", PUB1, 80) == "refused"
    assert lab.tcp("outside", PUB1, 443) == f"web 443 {CLIENT}"

    table, ruleset = pub.dom0_table(), lab.ruleset()
    again = pub.apply()
    assert re.search(r"no change|unchanged|up to date|nothing to (do|change)", again, re.I), again
    assert pub.dom0_table() == table
    assert lab.ruleset() == ruleset


def test_connections_made_during_20_applies_all_succeed(pub: Publish, tmp_path: Path) -> None:
    """The table is replaced in one transaction: no new connection falls in a gap between old and new rules."""
    lab = pub.lab
    pub.add(f"{PUB1}:80", "web", WEB)
    one = tmp_path / "publish.toml"
    two = tmp_path / "publish-two.toml"
    two.write_text(one.read_text())
    pub.dom0("add", f"{PUB2}:8080", "web:80", "--to", WEB, file=two)
    pub.apply(file=one)

    loop = lab.connection_loop("outside", PUB1, 80, expect=f"web 80 {CLIENT}")
    try:
        started = time.monotonic()
        for i in range(20):
            pub.apply(file=two if i % 2 == 0 else one)
        # leave the loop running at least a couple of seconds in all, so it makes a few hundred connections
        time.sleep(max(0.0, 2.0 - (time.monotonic() - started)))
    finally:
        counts = loop.stop()
    assert counts["failed"] == 0, counts
    assert isinstance(counts["ok"], int)
    assert counts["ok"] >= 200, counts
    # the last apply was of the first table: the second table's entry is gone again, so the applies did alternate
    assert lab.tcp("outside", PUB2, 8080) == "refused"


ADMIN_TABLE = """\
table inet admin {
	chain c {
		type filter hook input priority 0; policy accept;
		tcp dport 22 counter accept
		counter
	}
}
"""


def test_a_foreign_nft_table_is_left_byte_identical(pub: Publish) -> None:
    lab = pub.lab
    lab.nft("host", "-f", "-", input=ADMIN_TABLE)
    admin = lab.nft("host", "-a", "list", "table", "inet", "admin")
    pub.add(f"{PUB1}:80", "web", WEB)
    pub.apply()
    assert lab.nft("host", "-a", "list", "table", "inet", "admin") == admin
    pub.dom0("remove", "web")
    pub.apply()
    assert lab.nft("host", "-a", "list", "table", "inet", "admin") == admin
    tables = lab.nft("host", "list", "tables").split("\n")
    assert "table inet admin" in tables, tables


# libvirt 9.0's rules for a NAT network on br0 (10.0.0.0/24), as it loads them through iptables-nft: private chains
# jumped to from the built-in ones, FWI letting only replies in towards the guests and rejecting the rest.
LIBVIRT_CHAINS = {
    "filter": {
        "LIBVIRT_INP": [
            "-i br0 -p udp -m udp --dport 53 -j ACCEPT",
            "-i br0 -p tcp -m tcp --dport 53 -j ACCEPT",
            "-i br0 -p udp -m udp --dport 67 -j ACCEPT",
            "-i br0 -p tcp -m tcp --dport 67 -j ACCEPT",
        ],
        "LIBVIRT_OUT": [
            "-o br0 -p udp -m udp --dport 53 -j ACCEPT",
            "-o br0 -p tcp -m tcp --dport 53 -j ACCEPT",
            "-o br0 -p udp -m udp --dport 68 -j ACCEPT",
            "-o br0 -p tcp -m tcp --dport 68 -j ACCEPT",
        ],
        "LIBVIRT_FWO": [
            f"-s {netns.SUBNET} -i br0 -j ACCEPT",
            "-i br0 -j REJECT --reject-with icmp-port-unreachable",
        ],
        "LIBVIRT_FWI": [
            f"-d {netns.SUBNET} -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-o br0 -j REJECT --reject-with icmp-port-unreachable",
        ],
        "LIBVIRT_FWX": ["-i br0 -o br0 -j ACCEPT"],
    },
    "nat": {
        "LIBVIRT_PRT": [
            f"-s {netns.SUBNET} -d 224.0.0.0/24 -j RETURN",
            f"-s {netns.SUBNET} -d 255.255.255.255/32 -j RETURN",
            f"-s {netns.SUBNET} ! -d {netns.SUBNET} -p tcp -j MASQUERADE --to-ports 1024-65535",
            f"-s {netns.SUBNET} ! -d {netns.SUBNET} -p udp -j MASQUERADE --to-ports 1024-65535",
            f"-s {netns.SUBNET} ! -d {netns.SUBNET} -j MASQUERADE",
        ],
    },
    "mangle": {"LIBVIRT_PRT": ["-o br0 -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill"]},
}
LIBVIRT_JUMPS = {
    "filter": [
        ("INPUT", "LIBVIRT_INP"),
        ("FORWARD", "LIBVIRT_FWX"),
        ("FORWARD", "LIBVIRT_FWI"),
        ("FORWARD", "LIBVIRT_FWO"),
        ("OUTPUT", "LIBVIRT_OUT"),
    ],
    "nat": [("POSTROUTING", "LIBVIRT_PRT")],
    "mangle": [("POSTROUTING", "LIBVIRT_PRT")],
}


def libvirt_restore_text() -> str:
    """iptables-restore input for libvirt's network rules, as `iptables-save` shows them on a libvirt host."""
    lines: list[str] = []
    for table, chains in LIBVIRT_CHAINS.items():
        lines.append(f"*{table}")
        lines += [f":{chain} - [0:0]" for chain in chains]
        lines += [f"-A {parent} -j {child}" for parent, child in LIBVIRT_JUMPS[table]]
        lines += [f"-A {chain} {rule}" for chain, rules in chains.items() for rule in rules]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def libvirt_reload(lab: netns.Lab) -> None:
    """What a network restart does to libvirt's rules: its own chains emptied and written again, rule by rule."""
    for table, chains in LIBVIRT_CHAINS.items():
        for chain, rules in chains.items():
            lab.run("host", "iptables-nft", "-t", table, "-F", chain)
            for rule in rules:
                lab.run("host", "iptables-nft", "-t", table, "-A", chain, *rule.split())


PLAIN_DNAT = f"""\
table ip plain {{
	chain pre {{
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr {PUB1} tcp dport 80 dnat to {WEB}:80
	}}
}}
"""


def _dom0_forward_rules(lab: netns.Lab) -> list[str]:
    """The rules in iptables' built-in FORWARD chain that are not libvirt's jumps, with their handles."""
    listing = lab.nft("host", "-a", "list", "chain", "ip", "filter", "FORWARD")
    rules = [line.strip() for line in listing.splitlines() if "# handle" in line and "type filter" not in line]
    return [r for r in rules if not re.search(r"jump LIBVIRT_\w+ # handle", r) and not r.startswith("chain ")]


def test_libvirt_nat_network_rules_reject_a_plain_dnat_and_dom0_makes_it_pass_across_a_reload(pub: Publish) -> None:
    lab = pub.lab
    lab.run("host", "iptables-nft-restore", "--noflush", input=libvirt_restore_text())
    # libvirt's FORWARD rejects new connections towards its guests: even a correct DNAT alone gets nowhere
    assert lab.tcp("outside", WEB, 80) == "refused"
    lab.nft("host", "-f", "-", input=PLAIN_DNAT)
    assert lab.tcp("outside", PUB1, 80) == "refused"
    lab.nft("host", "delete", "table", "ip", "plain")

    pub.add(f"{PUB1}:80", "web", WEB)
    applied = pub.apply()
    assert "libvirt" in applied.lower(), applied  # it says what it did about libvirt's forward rules
    assert lab.tcp("outside", PUB1, 80) == f"web 80 {CLIENT}"
    assert lab.tcp("outside", WEB, 80) == "refused"  # only the published connections pass, not all of them
    assert lab.tcp("mail", PUB1, 80).startswith("web 80 ")
    assert lab.tcp("host", PUB1, 80).startswith("web 80 ")

    # the network restarts: libvirt rewrites its chains, dom0's single rule ahead of its jumps stays and works
    libvirt_reload(lab)
    assert lab.tcp("outside", PUB1, 80) == f"web 80 {CLIENT}"

    # dom0's rule is what lets it pass: gone, the DNATed connection is rejected again, and apply puts it back
    ours = _dom0_forward_rules(lab)
    assert len(ours) == 1, ours
    handle = ours[0].rsplit("# handle ", 1)[1]
    lab.nft("host", "delete", "rule", "ip", "filter", "FORWARD", "handle", handle)
    assert lab.tcp("outside", PUB1, 80) == "refused"
    again = pub.apply()
    assert re.search(r"libvirt.*\b(inserted|put back|re-?added)\b", again, re.I | re.S), again
    assert lab.tcp("outside", PUB1, 80) == f"web 80 {CLIENT}"
    assert len(_dom0_forward_rules(lab)) == 1
    pub.apply()
    assert len(_dom0_forward_rules(lab)) == 1  # inserted once, not once per apply

    # libvirtd starting finds its jumps missing (an admin's `iptables -D`) and inserts them at the top, ahead of
    # dom0's rule: rejected again until apply puts dom0's rule back in front
    for parent, child in LIBVIRT_JUMPS["filter"]:
        if parent == "FORWARD":
            lab.run("host", "iptables-nft", "-D", "FORWARD", "-j", child)
    for parent, child in reversed(LIBVIRT_JUMPS["filter"]):
        if parent == "FORWARD":
            lab.run("host", "iptables-nft", "-I", "FORWARD", "-j", child)
    assert lab.tcp("outside", PUB1, 80) == "refused"
    pub.apply()
    assert lab.tcp("outside", PUB1, 80) == f"web 80 {CLIENT}"


def test_check_says_which_entries_answer(pub: Publish) -> None:
    pub.add(f"{PUB1}:80", "web", WEB)
    pub.add(f"{PUB2}:8081", "web:81", WEB)  # nobody listens on web's port 81
    pub.apply()
    proc = pub.dom0("check", "--timeout", "1", check=False)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    text = proc.stdout + proc.stderr
    good = [line for line in text.splitlines() if f"{PUB1}:80" in line]
    bad = [line for line in text.splitlines() if f"{PUB2}:8081" in line]
    assert good, text
    assert bad, text
    assert "answering" in good[0], text
    assert not any(re.search(r"\bnot\b|no answer|refused|timeout|fail", line, re.I) for line in good), text
    assert "answering" not in bad[0], text
    assert any(re.search(r"\bnot\b|no answer|refused|timeout|fail", line, re.I) for line in bad), text


def test_nft_missing_one_error_and_the_rules_stay(pub: Publish) -> None:
    lab = pub.lab
    pub.add(f"{PUB1}:80", "web", WEB)
    pub.apply()
    before = lab.ruleset()
    pub.add(f"{PUB1}:443", "web", WEB)
    proc = pub.dom0("apply", check=False, env={"PATH": "/usr/bin:/bin"})  # nft lives in /usr/sbin
    _assert_one_line_error(proc, 1, "nft")
    assert lab.ruleset() == before
    assert lab.tcp("outside", PUB1, 80) == f"web 80 {CLIENT}"
    assert lab.tcp("outside", PUB1, 443) == "refused"


MALFORMED = {
    "a port past 65535": (
        '[[publish]]\npublic = "203.0.113.10:80"\nguest = "web"\nto = "10.0.0.2"\n\n'
        '[[publish]]\npublic = "203.0.113.10:99999"\nguest = "web"\nto = "10.0.0.2"\n',
        6,
    ),
    "broken TOML": ('[[publish]]\npublic = "203.0.113.10:80"\nguest = "web\nto = "10.0.0.2"\n', 3),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_publish_toml_names_the_line_and_the_rules_stay(pub: Publish, case: str) -> None:
    lab = pub.lab
    pub.add(f"{PUB1}:443", "web", WEB)
    pub.apply()
    before = lab.ruleset()
    text, line = MALFORMED[case]
    pub.file.write_text(text)
    proc = pub.dom0("apply", check=False)
    _assert_one_line_error(proc, 2)
    assert re.search(rf"\bline {line}\b", proc.stderr), proc.stderr
    assert lab.ruleset() == before
    assert lab.tcp("outside", PUB1, 443) == f"web 443 {CLIENT}"
