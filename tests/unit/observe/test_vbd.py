"""Xen VBD numbers <-> guest device names, as xen's docs/misc/vbd-interface.txt defines them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dom0.errors import UsageError
from dom0.observe import vbd


@pytest.mark.parametrize(
    ("number", "name", "major", "minor"),
    [
        (5696, "hdd", 22, 64),
        (768, "hda", 3, 0),
        (832, "hdb", 3, 64),
        (5632, "hdc", 22, 0),
        (769, "hda1", 3, 1),
        (51712, "xvda", 202, 0),
        (51713, "xvda1", 202, 1),
        (51728, "xvdb", 202, 16),
        (51967, "xvdp15", 202, 255),
        (2048, "sda", 8, 0),
        (2065, "sdb1", 8, 17),
    ],
)
def test_decode_and_encode_known_numbers(number: int, name: str, major: int, minor: int) -> None:
    decoded = vbd.decode(number)
    assert (decoded.name, decoded.major, decoded.minor) == (name, major, minor)
    assert vbd.encode(name).number == number
    assert vbd.encode(f"/dev/{name}").number == number


@pytest.mark.parametrize(
    ("name", "disk", "partition"),
    [
        ("xvdq", 16, 0),
        ("xvdz", 25, 0),
        ("xvdaa", 26, 0),
        ("xvdab3", 27, 3),
        ("xvda16", 0, 16),
        ("xvdb255", 1, 255),
    ],
)
def test_extended_xvd_both_ways(name: str, disk: int, partition: int) -> None:
    number = vbd.EXTENDED_FLAG | disk << 8 | partition
    encoded = vbd.encode(name)
    assert (encoded.number, encoded.scheme) == (number, "xvd-extended")
    decoded = vbd.decode(number)
    assert (decoded.name, decoded.disk, decoded.partition) == (name, disk, partition)
    assert decoded.scheme == "xvd-extended"


def test_describe_says_what_the_number_is() -> None:
    text = vbd.decode(5696).describe()
    assert "22:64" in text
    assert "hex 16:40" in text
    assert "hdd" in text
    assert "secondary slave" in text
    assert "1<<28" in vbd.decode(vbd.EXTENDED_FLAG | 16 << 8).describe()


def test_disk_letters_roll_over_like_linux() -> None:
    assert [vbd.disk_letters(i) for i in (0, 25, 26, 27, 51, 52, 701, 702)] == [
        "a",
        "z",
        "aa",
        "ab",
        "az",
        "ba",
        "zz",
        "aaa",
    ]


# Every (scheme, disk, partition) the interface can name, with the name Linux gives it.
_valid = st.one_of(
    st.tuples(st.just("hd"), st.integers(0, 3), st.integers(0, 63)),
    st.tuples(st.just("sd"), st.integers(0, 15), st.integers(0, 15)),
    st.tuples(st.just("xvd"), st.integers(0, (1 << 20) - 1), st.integers(0, 255)),
)


@settings(database=None)
@given(_valid)
def test_round_trip_name_number_name(combo: tuple[str, int, int]) -> None:
    prefix, disk, partition = combo
    name = f"{prefix}{vbd.disk_letters(disk)}{partition or ''}"
    encoded = vbd.encode(name)
    decoded = vbd.decode(encoded.number)
    assert (decoded.name, decoded.disk, decoded.partition) == (name, disk, partition)
    # The extended scheme is only for what the old one cannot express.
    extended = prefix == "xvd" and (disk > 15 or partition > 15)
    assert (encoded.scheme == "xvd-extended") == extended
    assert vbd.encode(decoded.name).number == encoded.number


@settings(database=None)
@given(st.integers(0, 15), st.integers(0, 15))
def test_extended_numbers_for_small_disks_name_the_same_device(disk: int, partition: int) -> None:
    long_form = vbd.decode(vbd.EXTENDED_FLAG | disk << 8 | partition)
    assert long_form.name == vbd.decode(vbd.XVD_MAJOR << 8 | disk << 4 | partition).name


@pytest.mark.parametrize("number", [-1, 0, 1234, 4 << 8, 9 << 8, 1 << 29, (1 << 29) | 5])
def test_invalid_numbers_raise_usage_error(number: int) -> None:
    with pytest.raises(UsageError) as info:
        vbd.decode(number)
    assert info.value.hint
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    "name",
    ["vda", "xvd", "hde", "hda64", "sdq", "sda16", "xvda256", "xvd1", "nvme0n1", "", "XVDA", "xvda-1"],
)
def test_invalid_names_raise_usage_error(name: str) -> None:
    with pytest.raises(UsageError) as info:
        vbd.encode(name)
    assert info.value.hint
