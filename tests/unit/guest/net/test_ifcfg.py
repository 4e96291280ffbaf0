"""Red Hat's and SUSE's ifcfg files (and where each keeps the default gateway) after a clone's identity reset."""

from __future__ import annotations

from conftest import CHANGE, SLES_IFCFG_NAME, Build, clone


def test_red_hat_ifcfg(guest: Build) -> None:
    root = guest("centos53")
    edits = clone(root, CHANGE)
    assert (root / "etc/sysconfig/network-scripts/ifcfg-eth0").read_text() == (
        "# Xen Virtual Ethernet\nDEVICE=eth0\nBOOTPROTO=none\nHWADDR=52:54:00:11:22:33\nONBOOT=yes\n"
        "IPADDR=10.1.2.3\nPREFIX=24\nGATEWAY=10.1.2.1\n"
    )
    assert (root / "etc/sysconfig/network-scripts/ifcfg-lo").read_text().startswith("DEVICE=lo\n")
    assert not (root / "var/lib/dhclient/dhclient-eth0.leases").exists()
    assert all(e.why for e in edits)


def test_red_hat_netmask_and_global_gateway_stay_where_they_were(guest: Build) -> None:
    root = guest("rhel54")
    clone(root, CHANGE)
    assert (root / "etc/sysconfig/network-scripts/ifcfg-eth0").read_text() == (
        "DEVICE=eth0\nBOOTPROTO=none\nIPADDR=10.1.2.3\nNETMASK=255.255.255.0\nHWADDR=52:54:00:11:22:33\nONBOOT=yes\n"
    )
    assert (root / "etc/sysconfig/network").read_text() == ("NETWORKING=yes\nHOSTNAME=web2\nGATEWAY=10.1.2.1\n")


def test_suse_ifcfg_named_after_the_mac_moves_with_it(guest: Build) -> None:
    root = guest("sles10")
    clone(root, CHANGE)
    assert not (root / SLES_IFCFG_NAME.lstrip("/")).exists()
    moved = root / "etc/sysconfig/network/ifcfg-eth-id-52:54:00:11:22:33"
    assert moved.read_text() == (
        "BOOTPROTO='static'\nSTARTMODE='auto'\nUNIQUE='rBUF.+xOL8ZCSAQC'\n_nm_name='bus-xen-vif-0'\nIPADDR='10.1.2.3/24'\n"
    )
    assert (root / "etc/sysconfig/network/routes").read_text() == "default 10.1.2.1 - -\n"
