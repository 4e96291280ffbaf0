"""Numbers as people read them: CPU time, sizes and rates."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """60114.1 -> '16 h 41 min'; 125 -> '2 min 5 s'; 3.21 -> '3.2 s'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s"


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def size(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def rate(bytes_per_second: float) -> str:
    """A transfer rate, e.g. '3.1 MiB/s'."""
    return f"{size(bytes_per_second)}/s"


_SIZE_UNITS = {"": 1 << 20, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """'512M', '1.5G', '2GiB', '768' (MiB, as xl's memory= and virsh setmem --size 768M) -> bytes.

    ValueError names what was wrong; the caller says which option it was.
    """
    spelled = text.strip().lower().removesuffix("b").removesuffix("i")
    number, unit = spelled, ""
    if spelled and spelled[-1] in "kmgt":
        number, unit = spelled[:-1], spelled[-1]
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a size (like 512M, 1.5G or 768 for MiB)") from None
    if not (value >= 0 and value < 1 << 50):
        raise ValueError(f"{text!r} is not a size (like 512M, 1.5G or 768 for MiB)")
    return int(value * _SIZE_UNITS[unit])
