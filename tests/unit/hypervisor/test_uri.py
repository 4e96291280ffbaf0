"""Which hypervisor dom0 talks to: -c, then $DOM0_CONNECT, then $LIBVIRT_DEFAULT_URI, then the host's default."""

from __future__ import annotations

from pathlib import Path

import pytest
from unitkit import dom0

from dom0.hypervisor import choose_uri

ON_XEN = Path("/proc/xen/capabilities").exists()
DEFAULT = "xen:///system" if ON_XEN else "qemu:///system"

BOTH = {"DOM0_CONNECT": "test:///dom0", "LIBVIRT_DEFAULT_URI": "test:///libvirt"}


def test_connect_option_wins_over_everything() -> None:
    choice = choose_uri("test:///explicit", BOTH)
    assert choice.uri == "test:///explicit"
    assert "-c" in choice.reason


def test_dom0_connect_wins_over_libvirt_default() -> None:
    choice = choose_uri(None, BOTH)
    assert choice.uri == "test:///dom0"
    assert "DOM0_CONNECT" in choice.reason


def test_libvirt_default_uri_next() -> None:
    choice = choose_uri(None, {"LIBVIRT_DEFAULT_URI": "test:///libvirt"})
    assert choice.uri == "test:///libvirt"
    assert "LIBVIRT_DEFAULT_URI" in choice.reason


def test_empty_variables_are_ignored() -> None:
    assert choose_uri("", {"DOM0_CONNECT": "", "LIBVIRT_DEFAULT_URI": ""}).uri == DEFAULT


def test_host_default() -> None:
    choice = choose_uri(None, {})
    assert choice.uri == DEFAULT
    assert choice.reason


def test_cli_uses_dom0_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOM0_CONNECT", "test:///default")
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "bogus:///nothing")
    r = dom0("list")
    assert r.rc == 0, r.err
    assert r.out.splitlines()[1].split()[0] == "test"  # the test driver's one guest


def test_cli_error_says_where_the_uri_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOM0_CONNECT", raising=False)
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "bogus:///nothing")
    r = dom0("list")
    assert r.rc == 1
    assert "bogus:///nothing" in r.err
    assert "LIBVIRT_DEFAULT_URI" in r.err
