"""A small kit of network namespaces for tests: a host, its outside client and guests on a bridge, with real servers.

Every namespace this kit makes is named `dom0t-<random>-<role>` and removed by `Lab.close()` (the fixture's
teardown), along with the servers it started; nothing is ever created, configured or sent in the machine's own
namespace: veth pairs are made inside one lab namespace with the peer created straight in another.

The topology `build_publish_lab` makes (documentation address ranges only):

    outside 198.51.100.2/24 --- up0 198.51.100.1/24 + 203.0.113.10/32 + 203.0.113.11/32   (ns "host",
                                br0 10.0.0.1/24                                            ip_forward=1)
                                 |-- web  10.0.0.2/24  (TCP 80, 443; UDP 53 echo)
                                 `-- mail 10.0.0.3/24  (TCP 25, 80)

Each server answers one line, `NAME PORT CLIENT_IP` (TCP) or `NAME udp PORT CLIENT_IP PAYLOAD` (UDP), so a test
sees which guest answered, on which port, and the address that guest saw the client come from.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "dom0t-"
PYTHON = sys.executable  # the servers and clients need only the standard library

OUTSIDE_IP = "198.51.100.2"
UPLINK_IP = "198.51.100.1"
PUBLIC_IPS = ("203.0.113.10", "203.0.113.11")
BRIDGE_IP = "10.0.0.1"
SUBNET = "10.0.0.0/24"
GUEST_IPS = {"web": "10.0.0.2", "mail": "10.0.0.3"}

_SERVER = r"""
import socket, socketserver, sys, threading
name, tcp, udp = sys.argv[1], sys.argv[2], sys.argv[3]

class TCP(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 256

class Answer(socketserver.BaseRequestHandler):
    def handle(self):
        port = self.server.server_address[1]
        self.request.sendall(f"{name} {port} {self.client_address[0]}\n".encode())

class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        port = self.server.server_address[1]
        text = data.decode(errors="replace").strip()
        sock.sendto(f"{name} udp {port} {self.client_address[0]} {text}\n".encode(), self.client_address)

servers = [TCP(("0.0.0.0", int(p)), Answer) for p in tcp.split(",") if p]
servers += [socketserver.ThreadingUDPServer(("0.0.0.0", int(p)), Echo) for p in udp.split(",") if p]
for s in servers:
    threading.Thread(target=s.serve_forever, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()  # until the kit closes our stdin or kills us
"""

# One connection per call (tcp, udp), or a loop of new TCP connections until STOPFILE exists (loop), printing
# JSON counts. Answers and failures are printed as one line a test can compare: the server's line, "refused",
# "timeout", or "error: ...".
_CLIENT = r"""
import errno, json, os, socket, sys, time
mode, host, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])

def tcp():
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
            return data.decode(errors="replace").strip() or "closed without an answer"
    except ConnectionRefusedError:
        return "refused"
    except (socket.timeout, TimeoutError):
        return "timeout"
    except OSError as exc:
        return f"error: {errno.errorcode.get(exc.errno, exc.errno)} {exc.strerror}"

def udp(payload):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))  # connected, so an ICMP port unreachable shows as refused
            s.send(payload.encode())
            return s.recv(512).decode(errors="replace").strip()
        except (socket.timeout, TimeoutError):
            return "timeout"
        except ConnectionRefusedError:
            return "refused"
        except OSError as exc:
            return f"error: {errno.errorcode.get(exc.errno, exc.errno)} {exc.strerror}"

if mode == "tcp":
    print(tcp())
elif mode == "udp":
    print(udp(sys.argv[5]))
else:
    stop, expect = sys.argv[5], sys.argv[6]
    ok, failures = 0, []
    print("started", flush=True)
    while not os.path.exists(stop):
        answer = tcp()
        if answer.startswith(expect):
            ok += 1
        else:
            failures.append(answer)
        time.sleep(0.002)
    print(json.dumps({"ok": ok, "failed": len(failures), "failures": failures[:20]}), flush=True)
"""


def missing_tools() -> str:
    """Why namespace tests cannot run here ('' when they can): they need root, `ip`, `nft` and iptables-nft."""
    if os.geteuid() != 0:
        return "network namespace tests need root"
    for tool in ("ip", "nft", "iptables-nft", "iptables-nft-restore"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return ""


@dataclass
class Lab:
    """Named network namespaces (role -> `dom0t-<suffix>-<role>`) and the processes started in them."""

    dir: Path
    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    names: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        (self.dir / "server.py").write_text(_SERVER)
        (self.dir / "client.py").write_text(_CLIENT)

    def ns(self, role: str) -> str:
        return self.names[role]

    def add(self, role: str) -> str:
        name = f"{PREFIX}{self.suffix}-{role}"
        assert name.startswith(PREFIX)
        _check(["ip", "netns", "add", name])
        self.names[role] = name
        self.run(role, "ip", "link", "set", "lo", "up")
        return name

    def run(
        self,
        role: str,
        *cmd: str,
        check: bool = True,
        timeout: float = 30,
        env: dict[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` inside the namespace of `role`; with check, fail loudly (command, exit, stderr) on non-zero."""
        argv = ["ip", "netns", "exec", self.ns(role), *cmd]
        proc = subprocess.run(
            argv,
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}")
        return proc

    def ip(self, role: str, *args: str) -> None:
        _check(["ip", "-n", self.ns(role), *args])

    def veth(self, role: str, ifname: str, peer_role: str, peer_ifname: str) -> None:
        """A veth pair made inside `role`'s namespace with its peer created directly in `peer_role`'s."""
        self.ip(role, "link", "add", ifname, "type", "veth", "peer", "name", peer_ifname, "netns", self.ns(peer_role))

    def nft(self, role: str, *args: str, input: str | None = None) -> str:
        return self.run(role, "nft", *args, input=input).stdout

    def ruleset(self, role: str = "host") -> str:
        """`nft list ruleset` of the namespace: every table, dom0's and everyone else's."""
        return self.nft(role, "list", "ruleset")

    def serve(self, role: str, name: str, tcp: Sequence[int] = (), udp: Sequence[int] = ()) -> None:
        """Start the answering servers in `role`'s namespace; returns once they listen."""
        argv = ["ip", "netns", "exec", self.ns(role), PYTHON, str(self.dir / "server.py"), name]
        argv += [",".join(map(str, tcp)), ",".join(map(str, udp))]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        line = proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            proc.kill()
            _, err = proc.communicate(timeout=5)
            raise AssertionError(f"server {name} in {role} did not start: {line!r} {err}")

    def tcp(self, role: str, host: str, port: int, timeout: float = 2) -> str:
        """One TCP connection from `role`: the server's line, or 'refused', 'timeout', 'error: ...'."""
        args = ("tcp", host, str(port), str(timeout))
        return self.run(role, PYTHON, str(self.dir / "client.py"), *args, timeout=timeout + 10).stdout.strip()

    def udp(self, role: str, host: str, port: int, payload: str, timeout: float = 2) -> str:
        args = ("udp", host, str(port), str(timeout), payload)
        return self.run(role, PYTHON, str(self.dir / "client.py"), *args, timeout=timeout + 10).stdout.strip()

    def connection_loop(self, role: str, host: str, port: int, expect: str, timeout: float = 1) -> ConnectionLoop:
        """Start a client making new TCP connections one after another until `ConnectionLoop.stop()`."""
        stop = self.dir / f"stop-{secrets.token_hex(3)}"
        argv = ["ip", "netns", "exec", self.ns(role), PYTHON, str(self.dir / "client.py")]
        argv += ["loop", host, str(port), str(timeout), str(stop), expect]
        pipe = subprocess.PIPE
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=pipe, stderr=pipe, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started", "the connection loop did not start"
        return ConnectionLoop(proc, stop)

    def close(self) -> None:
        """Kill every process started here and delete every namespace made here (safe to call twice)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=5)
        self.procs.clear()
        for name in self.names.values():
            assert name.startswith(PREFIX)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False, timeout=30)
        self.names.clear()


@dataclass
class ConnectionLoop:
    proc: subprocess.Popen[str]
    stop_file: Path

    def stop(self) -> dict[str, object]:
        """Stop the loop; its counts: {'ok': N, 'failed': N, 'failures': [first answers that were not expected]}."""
        self.stop_file.touch()
        out, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, f"connection loop failed: {err}"
        result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
        return result


def _check(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")


def build_publish_lab(lab: Lab) -> Lab:
    """The outside client, the host with two public addresses and br0, and the web and mail guests, serving."""
    for role in ("outside", "host", "web", "mail"):
        lab.add(role)
    lab.veth("host", "up0", "outside", "eth0")
    lab.ip("host", "addr", "add", f"{UPLINK_IP}/24", "dev", "up0")
    for public in PUBLIC_IPS:
        lab.ip("host", "addr", "add", f"{public}/32", "dev", "up0")
    lab.ip("host", "link", "set", "up0", "up")
    lab.ip("outside", "addr", "add", f"{OUTSIDE_IP}/24", "dev", "eth0")
    lab.ip("outside", "link", "set", "eth0", "up")
    lab.ip("outside", "route", "add", "default", "via", UPLINK_IP)
    lab.ip("host", "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
    lab.ip("host", "addr", "add", f"{BRIDGE_IP}/24", "dev", "br0")
    lab.ip("host", "link", "set", "br0", "up")
    for guest, address in GUEST_IPS.items():
        port = f"v-{guest}"
        lab.veth("host", port, guest, "eth0")
        lab.ip("host", "link", "set", port, "master", "br0", "up")
        lab.ip(guest, "addr", "add", f"{address}/24", "dev", "eth0")
        lab.ip(guest, "link", "set", "eth0", "up")
        lab.ip(guest, "route", "add", "default", "via", BRIDGE_IP)
    lab.run("host", "sysctl", "-qw", "net.ipv4.ip_forward=1")
    lab.serve("web", "web", tcp=(80, 443), udp=(53,))
    lab.serve("mail", "mail", tcp=(25, 80))
    # the bridge's ports and neighbours settle in a moment; wait until the host reaches both guests directly
    deadline = time.monotonic() + 10
    for guest, address in GUEST_IPS.items():
        while (answer := lab.tcp("host", address, 80, timeout=1)).split()[:1] != [guest]:
            if time.monotonic() > deadline:
                raise AssertionError(f"the host does not reach {guest} at {address}:80: {answer}")
            time.sleep(0.1)
    return lab
