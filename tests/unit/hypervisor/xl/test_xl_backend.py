"""The xl:// backend without Xen: choosing it, refusing when there is no xl, and mapping xentop to counters.

The backend's real behaviour is proven inside an emulated Xen dom0 (tests/xen/); these tests cover the pure
mapping from xl's outputs to dom0's model, which is where the two backends must agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from unitkit import DATA, dom0

from dom0 import run
from dom0.errors import Dom0Error, GuestStateError, HypervisorUnavailable
from dom0.hypervisor import LIBVIRT_SOCKET, UriChoice, choose_uri, connect, is_xl_uri
from dom0.hypervisor.xl import parse as xlparse
from dom0.hypervisor.xl.backend import XlConsole, XlHypervisor, counters_from_top
from dom0.model import Guest, GuestState

XEN = DATA / "xen"


def _exists(*paths: str) -> Callable[[str], bool]:
    """A stand-in for os.path.exists on a host where only `paths` exist."""
    return lambda p: p in paths


def test_xen_host_without_libvirtd_defaults_to_xl() -> None:
    choice = choose_uri(None, {}, exists=_exists("/proc/xen/capabilities"))
    assert choice.uri == "xl://"
    assert "no libvirtd" in choice.reason


def test_xen_host_with_libvirtd_defaults_to_libvirt() -> None:
    choice = choose_uri(None, {}, exists=_exists("/proc/xen/capabilities", LIBVIRT_SOCKET))
    assert choice.uri == "xen:///system"


def test_kvm_host_defaults_to_qemu() -> None:
    assert choose_uri(None, {}, exists=_exists()).uri == "qemu:///system"


def test_explicit_xl_wins_even_with_libvirtd() -> None:
    assert choose_uri("xl://", {}, exists=_exists("/proc/xen/capabilities", LIBVIRT_SOCKET)).uri == "xl://"


@pytest.mark.parametrize(
    ("uri", "xl"), [("xl://", True), ("xl:///", True), ("xen:///system", False), ("qemu:///system", False)]
)
def test_xl_uris(uri: str, xl: bool) -> None:
    assert is_xl_uri(uri) == xl


@pytest.mark.skipif(run.available("xl"), reason="this machine has xl")
def test_no_xl_binary_is_hypervisor_unavailable() -> None:
    with pytest.raises(HypervisorUnavailable) as err:
        connect(UriChoice("xl://", "from -c/--connect"))
    assert "cannot connect to xl://" in err.value.message
    assert "-c/--connect" in err.value.message
    assert err.value.hint


@pytest.mark.skipif(run.available("xl"), reason="this machine has xl")
def test_cli_without_xl_says_so_in_one_line() -> None:
    r = dom0("-c", "xl://", "list")
    assert r.rc == 1
    assert r.err.startswith("dom0: error: cannot connect to xl://")
    assert "hint:" in r.err
    assert "Traceback" not in r.err


def test_remote_xl_uri_is_refused() -> None:
    with pytest.raises(HypervisorUnavailable, match="this host's Xen only"):
        XlHypervisor.open(UriChoice("xl://otherhost/", "from -c/--connect"))


def _guest_and_config() -> tuple[Guest, xlparse.DomainConfig]:
    cfg = xlparse.domain_config(
        {
            "domid": 3,
            "config": {
                "c_info": {"type": "pv", "name": "domuio", "uuid": "11111111-2222-3333-4444-555555555555"},
                "b_info": {"max_vcpus": 1, "max_memkb": 131072},
                "nics": [{"devid": 0, "mac": "00:16:3e:12:34:56", "bridge": "xenbr0"}],
            },
        }
    )
    guest = Guest(
        name="domuio",
        uuid=cfg.uuid,
        id=3,
        state=GuestState.BLOCKED,
        memory_kib=128 * 1024,
        max_memory_kib=131072,
        vcpus=1,
        cpu_time_ns=5_300_000_000,
        persistent=False,
    )
    return guest, cfg


def test_counters_from_xentop() -> None:
    tops = {t.name: t for t in xlparse.parse_xentop((XEN / "xentop-xnf-sample.txt").read_text())}
    guest, cfg = _guest_and_config()
    c = counters_from_top(guest, cfg, tops["domuio"], 12.5)
    assert c.taken_at == 12.5
    assert c.guest.uuid == guest.uuid
    # xl list's 5.3 s is finer than xentop's whole 5 s
    assert c.guest.cpu_time_ns == 5_300_000_000
    assert c.guest.max_memory_kib == 132096  # what Xen enforces: the config's 128 MiB plus libxl's slack
    xvda, xvdb = c.disks
    assert (xvda.target, xvda.rd_reqs, xvda.wr_reqs) == ("xvda", 300, 50)
    assert (xvda.rd_bytes, xvda.wr_bytes) == (2400 * 512, 400 * 512)
    assert xvdb.target == "xvdb"
    (nic,) = c.nics
    # the target and MAC match what details() reports, so `dom0 top` can pair them
    assert (nic.target, nic.mac) == ("vif3.0", "00:16:3e:12:34:56")
    assert nic.target == xlparse.nics(cfg)[0].target
    # xentop counts on the host's vif: what it received, the guest sent
    assert (nic.tx_bytes, nic.tx_packets, nic.rx_bytes, nic.rx_packets) == (3102, 41, 2048, 19)


def test_counters_take_xentops_cpu_when_xl_list_lags() -> None:
    tops = {t.name: t for t in xlparse.parse_xentop((XEN / "xentop-xnf-sample.txt").read_text())}
    guest, cfg = _guest_and_config()
    lagging = Guest(**{**{k: getattr(guest, k) for k in Guest.__slots__}, "cpu_time_ns": 4_900_000_000})
    assert counters_from_top(lagging, cfg, tops["domuio"], 0.0).guest.cpu_time_ns == 5_000_000_000


def test_counters_for_a_nic_missing_from_the_config() -> None:
    tops = {t.name: t for t in xlparse.parse_xentop((XEN / "xentop-xnf-sample.txt").read_text())}
    guest, _ = _guest_and_config()
    bare = xlparse.domain_config({"domid": 3, "config": {"c_info": {"name": "domuio"}}})
    (nic,) = counters_from_top(guest, bare, tops["domuio"], 0.0).nics
    assert (nic.target, nic.mac) == ("vif3.0", "")


@pytest.mark.parametrize(("value", "seconds"), [(None, 30.0), ("120", 120.0), ("0", 1.0), ("soon", 30.0)])
def test_quick_xl_queries_wait_dom0_xl_timeout_seconds(
    monkeypatch: pytest.MonkeyPatch, value: str | None, seconds: float
) -> None:
    from dom0.hypervisor.xl.backend import _fast_timeout

    if value is None:
        monkeypatch.delenv("DOM0_XL_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("DOM0_XL_TIMEOUT", value)
    assert _fast_timeout() == seconds


def _xl_console_ending(code: int, said: str) -> XlConsole:
    """A Console over a program that prints what xl console prints and exits as it does (a stand-in: the real
    `xl console` is driven in the Xen lab, tests/xen/indom0/test_procedure_console.py)."""
    return XlConsole(run.spawn_pty(["sh", "-c", f"echo '{said}' >&2; exit {code}"]), "web")


def _read_to_end(console: XlConsole) -> bytes:
    shown = b""
    deadline = time.monotonic() + 10
    while (chunk := console.read(0.5)) is not None:
        shown += chunk
        assert time.monotonic() < deadline, "the console never closed"
    return shown


def test_xl_console_that_cannot_attach_is_an_error_saying_why() -> None:
    console = _xl_console_ending(2, "xenconsole: Could not open /var/lock/xenconsole.7: No such file or directory")
    with pytest.raises(Dom0Error) as err:
        _read_to_end(console)
    console.close()
    assert err.value.message == (
        "cannot attach to the console of 'web': xl console failed: "
        "xenconsole: Could not open /var/lock/xenconsole.7: No such file or directory"
    )
    assert "xencommons" in err.value.hint


def test_xl_console_held_by_another_session_says_someone_is_attached() -> None:
    console = _xl_console_ending(
        11, "xenconsole: Could not lock /var/lock/xenconsole.7: Resource temporarily unavailable"
    )
    with pytest.raises(GuestStateError, match="someone else is attached to the console of 'web'"):
        _read_to_end(console)
    console.close()


def test_xl_console_that_ends_cleanly_is_a_console_that_closed() -> None:
    console = _xl_console_ending(0, "last words")
    assert b"last words" in _read_to_end(console)
    console.close()
