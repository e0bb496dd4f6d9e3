"""Duration parsing must be exact and its errors must tell the user what to type instead."""

from __future__ import annotations

from decimal import Decimal

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from tickless.units import DURATION, DurationParam, format_duration_ns, parse_duration_ns


@pytest.mark.parametrize(
    ("text", "expected_ns"),
    [
        ("100ns", 100),
        ("50us", 50_000),
        ("50µs", 50_000),  # MICRO SIGN
        ("50μs", 50_000),  # GREEK SMALL LETTER MU
        ("1.5ms", 1_500_000),
        ("2 s", 2_000_000_000),
        ("  10 us  ", 10_000),
        ("0.001us", 1),
        ("1.1ms", 1_100_000),  # 1.1 is not exact in binary floating point
        ("12.500us", 12_500),
        (".5us", 500),
        ("5.us", 5_000),
        ("+3ns", 3),
        ("0.000000001s", 1),
        ("123456789012345678.9us", 123_456_789_012_345_678_900),
    ],
)
def test_parse_valid(text: str, expected_ns: int) -> None:
    assert parse_duration_ns(text) == expected_ns


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("50", "no unit"),
        ("1.5", "no unit"),
        ("50 minutes", "unknown unit"),
        ("50 MS", "unknown unit"),
        ("0.5ns", "whole number of nanoseconds"),
        ("0.0001us", "whole number of nanoseconds"),
        ("-5us", "negative"),
        ("0us", "zero"),
        ("0", "no unit"),
        ("", "invalid duration"),
        ("us", "invalid duration"),
        ("1e3us", "invalid duration"),
        ("1.2.3ms", "invalid duration"),
        ("5 u s", "invalid duration"),
        ("nan ms", "invalid duration"),
        ("\u0661\u0662us", "invalid duration"),  # Arabic-Indic digits: ASCII only
    ],
)
def test_parse_invalid(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_duration_ns(text)
    assert "\n" not in str(info.value)


def test_missing_unit_message_lists_units() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration_ns("50")
    for unit in ("ns", "us", "µs", "ms", "s"):
        assert unit in str(info.value)


def test_allow_zero() -> None:
    assert parse_duration_ns("0us", allow_zero=True) == 0
    assert parse_duration_ns("0 s", allow_zero=True) == 0
    assert parse_duration_ns("0", allow_zero=True) == 0  # zero needs no unit: it is 0 in all
    assert parse_duration_ns("0.0", allow_zero=True) == 0
    with pytest.raises(ValueError, match="no unit"):
        parse_duration_ns("0")  # where zero is refused, the message says what is missing
    with pytest.raises(ValueError, match="no unit"):
        parse_duration_ns("5", allow_zero=True)
    with pytest.raises(ValueError, match="negative"):
        parse_duration_ns("-1ns", allow_zero=True)


@given(st.integers(min_value=1, max_value=10**18))
def test_roundtrip_integer_ns(n: int) -> None:
    assert parse_duration_ns(f"{n}ns") == n
    assert parse_duration_ns(f"{n}us") == n * 1000


@given(st.integers(min_value=1, max_value=10**18))
def test_roundtrip_decimal_us(n: int) -> None:
    # n ns written as a decimal number of µs, e.g. 1234567 -> "1234.567us"
    text = format(Decimal(n) / 1000, "f") + "us"
    assert parse_duration_ns(text) == n
    assert parse_duration_ns(text.replace("us", " µs")) == n


@pytest.mark.parametrize(
    ("ns", "expected"),
    [
        (50_000, "50 µs"),
        (1_500_000, "1.5 ms"),
        (12.34, "12.3 ns"),
        (0, "0 ns"),
        (-0.0, "0 ns"),
        (999, "999 ns"),
        (1000, "1 µs"),
        (999_700, "1 ms"),  # rounds up into the next unit rather than "1e+03 µs"
        (65_310, "65.3 µs"),
        (2_000_000_000, "2 s"),
        (-2500, "-2.5 µs"),
        (3_600 * 10**9, "3600 s"),
        (0.5, "0.5 ns"),
        (4e-25, "0 ns"),  # sub-ns noise is not shown in exponent notation
    ],
)
def test_format(ns: float, expected: str) -> None:
    assert format_duration_ns(ns) == expected


@given(st.floats(min_value=-1e15, max_value=1e15, allow_nan=False))
def test_format_has_no_exponent(ns: float) -> None:
    text = format_duration_ns(ns)
    number, unit = text.split(" ")
    assert "e" not in number
    assert unit in {"ns", "µs", "ms", "s"}


def _echo_command() -> click.Command:
    @click.command()
    @click.option("--interval", type=DURATION, required=True)
    def echo(interval: int) -> None:
        click.echo(repr(interval))

    return echo


def test_click_param_converts_to_int_ns() -> None:
    result = CliRunner().invoke(_echo_command(), ["--interval", "1.5ms"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "1500000"


def test_click_param_reports_the_parse_error() -> None:
    result = CliRunner().invoke(_echo_command(), ["--interval", "50"])
    assert result.exit_code == 2
    assert "no unit" in result.output
    assert "--interval" in result.output


def test_click_param_accepts_int_defaults_as_ns() -> None:
    assert DURATION.convert(50_000, None, None) == 50_000
    assert DurationParam(allow_zero=True).convert("0ns", None, None) == 0
    with pytest.raises(click.BadParameter):
        DURATION.convert(0, None, None)
    assert DURATION.name == "duration"
