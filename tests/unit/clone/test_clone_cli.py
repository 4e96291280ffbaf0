"""`dom0 clone` refuses a malformed hostname, address or gateway first, before it looks at the source's disks."""

from __future__ import annotations

import pytest
from unitkit import dom0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--hostname", "a;b"), "'a;b' is not a valid hostname"),
        (("--hostname", "web2$(reboot)"), "is not a valid hostname"),
        (("--hostname=-web2",), "'-web2' is not a valid hostname"),
        (("--hostname", "a" * 64), "is not a valid hostname"),
        (("--hostname", ".".join(["a" * 63] * 4)), "is not a valid hostname"),
        (("--ip", "10.0.0.5"), "'10.0.0.5' has no prefix length"),
        (("--ip", "10.0.0.5/24;x"), "'10.0.0.5/24;x' is not an IPv4 address with a prefix"),
        (("--ip", "10.0.0.5/24", "--gateway", "x;y"), "gateway 'x;y' is not an IPv4 address"),
        (("--ip", "10.0.0.5/24", "--gateway", "10.0.9.1"), "gateway 10.0.9.1 is not in 10.0.0.0/24"),
        (("--gateway", "10.0.0.1"), "a gateway was given without an address"),
    ],
)
def test_a_malformed_identity_is_the_first_thing_said(flags: tuple[str, ...], message: str) -> None:
    # The test driver's guest has disks that do not exist: any later check would fail on them instead.
    r = dom0("-c", "test:///default", "clone", "test", "test-clone", *flags, "--dry-run")
    assert r.rc == 2, r.err
    assert r.out == ""
    lines = r.err.splitlines()
    assert len(lines) == 2, r.err
    assert lines[0].startswith("dom0: error: ")
    assert message in lines[0]
    assert lines[1].strip().startswith("hint: ")


def test_a_valid_hostname_gets_past_the_check() -> None:
    r = dom0("-c", "test:///default", "clone", "test", "test-clone", "--hostname", "web-2.example.org", "--dry-run")
    assert "hostname" not in r.err
    assert "/guest/diskimage1" in r.err  # the next check: the test driver's disk is not there
