"""Durations as exact integer nanoseconds, parsed from and formatted for humans.

Timer intervals are compared with nanosecond lateness, so a CLI value such as "1.1ms" must become
exactly 1_100_000 ns: parsing goes through ``decimal.Decimal``, never through binary floats.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING, Any

import click

__all__ = ["DURATION", "DurationParam", "format_duration_ns", "parse_duration_ns"]

_NS_PER_UNIT: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 MICRO SIGN
    "μs": 1_000,  # U+03BC GREEK SMALL LETTER MU, what many keyboards produce
    "ms": 1_000_000,
    "s": 1_000_000_000,
}
_UNITS_HELP = "ns, us (or µs), ms or s"
# ASCII digits only: str.isdigit()/\d would also accept e.g. Arabic-Indic digits.
_DURATION_RE = re.compile(
    r"""\s* (?P<sign>[+-]?)
        (?P<number>[0-9]+(?:\.[0-9]*)? | \.[0-9]+)
        \s* (?P<unit>[^\W\d_]*) \s*""",
    re.VERBOSE,
)


def parse_duration_ns(text: str, *, allow_zero: bool = False) -> int:
    """Parse "50us", "1.5 ms", "2s"... into an exact number of nanoseconds.

    A unit is mandatory: a bare "50" is ambiguous between µs (the paper's unit) and ns (ours);
    where zero is allowed a bare "0" is not ambiguous and needs none (``--slop 0``).
    Raises ValueError with a one-line message suitable for showing to a user.
    """
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r}: expected a number and a unit ({_UNITS_HELP})")
    unit = match["unit"]
    if not unit and allow_zero and match["sign"] != "-" and Decimal(match["number"]) == 0:
        return 0
    if not unit:
        raise ValueError(f"duration {text!r} has no unit: add one of {_UNITS_HELP}")
    if unit not in _NS_PER_UNIT:
        raise ValueError(f"duration {text!r} has unknown unit {unit!r}: use {_UNITS_HELP}")
    number = match["number"]
    # Enough precision that multiplying by 10**9 can never round.
    with localcontext() as ctx:
        ctx.prec = len(number) + 12
        value = Decimal(number) * _NS_PER_UNIT[unit]
    if value != value.to_integral_value():
        raise ValueError(f"duration {text!r} is not a whole number of nanoseconds")
    ns = int(value)
    if match["sign"] == "-" and ns != 0:
        raise ValueError(f"duration {text!r} is negative: durations must be positive")
    if ns == 0 and not allow_zero:
        raise ValueError(f"duration {text!r} is zero: durations must be positive")
    return ns


_FORMAT_SCALES: tuple[tuple[str, float], ...] = (("ns", 1.0), ("µs", 1e3), ("ms", 1e6))


def _three_significant(value: float) -> float:
    return float(f"{value:.3g}")


def format_duration_ns(ns: float) -> str:
    """Render a duration with three significant digits in the largest unit keeping it below 1000.

    Meant for table cells and messages, where "1.5 ms" reads better than "1500000 ns".
    """
    if not math.isfinite(ns):
        return f"{ns} ns"
    if abs(ns) < 1:  # sub-ns: fixed decimals, so 4e-25 reads "0 ns", not "4e-25 ns"
        return f"{round(ns, 3) + 0.0:g} ns"
    for unit, scale in _FORMAT_SCALES:
        # Round first so that 999.7 µs becomes "1 ms", not "1e+03 µs".
        value = _three_significant(ns / scale)
        if abs(value) < 1000:
            return f"{value + 0.0:g} {unit}"  # + 0.0 turns -0.0 into 0.0
    seconds = ns / 1e9
    if abs(seconds) >= 1000:
        return f"{seconds:.0f} s"
    return f"{_three_significant(seconds) + 0.0:g} s"


if TYPE_CHECKING:
    _DurationBase = click.ParamType[int]
else:  # click < 8.2 has a non-generic ParamType; subscripting it would fail at import.
    _DurationBase = click.ParamType


class DurationParam(_DurationBase):
    """Click parameter type so every command accepts durations the same way, as int ns."""

    name = "duration"

    def __init__(self, *, allow_zero: bool = False, max_ns: int | None = None) -> None:
        self.allow_zero = allow_zero
        self.max_ns = max_ns  # None: no upper bound

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            # Already nanoseconds: a programmatic default, or a value converted once already.
            if value < 0 or (value == 0 and not self.allow_zero):
                self.fail(f"duration {value} ns must be positive", param, ctx)
            ns = value
        elif not isinstance(value, str):
            self.fail(f"expected a duration such as '50us', got {value!r}", param, ctx)
        else:
            try:
                ns = parse_duration_ns(value, allow_zero=self.allow_zero)
            except ValueError as exc:
                self.fail(str(exc), param, ctx)
        if self.max_ns is not None and ns > self.max_ns:
            self.fail(f"{value} is longer than {format_duration_ns(self.max_ns)}", param, ctx)
        return ns


DURATION = DurationParam()
