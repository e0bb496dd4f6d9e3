"""The pvclock arithmetic: the host must compute deadlines on the guest's clock exactly as
the guest reads it, so that an event is never early by the guest's own reading."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickless.timers.clock import NSEC_PER_SEC, GuestClock, PvclockScale, time_scale

U32 = 0xFFFF_FFFF
U64 = (1 << 64) - 1

tsc_rates = st.integers(min_value=10**6, max_value=10**10)  # 1 MHz .. 10 GHz
scales = st.builds(
    PvclockScale,
    mul=st.integers(min_value=1, max_value=U32),
    shift=st.integers(min_value=-31, max_value=31),
)
rates = st.sampled_from([Fraction(1), Fraction(1, 2), Fraction(3), Fraction(7, 5)])
clocks = st.builds(
    GuestClock.create,
    tick_hz=tsc_rates,
    now_ticks=st.integers(min_value=0, max_value=1 << 50),
    system_time_ns=st.integers(min_value=0, max_value=1 << 50),
    rate=rates,
)


def pvclock_model(delta: int, mul: int, shift: int) -> int:
    """pvclock_scale_delta() written out independently, in unbounded integers."""
    shifted = delta << shift if shift >= 0 else delta >> -shift
    return (shifted * mul) >> 32


def guest_u64_model(delta: int, mul: int, shift: int) -> int:
    """What the guest's C computes: a u64 shift, a u128 product, a u64 result."""
    shifted = ((delta << shift) & U64) if shift >= 0 else delta >> -shift
    return ((shifted * mul) >> 32) & U64


# --- time_scale -------------------------------------------------------------------------


@given(tsc_rates)
def test_time_scale_accuracy(base_hz: int) -> None:
    """One second of TSC ticks scales to one second of ns within 1 ppm; mul/shift in range."""
    scale = time_scale(base_hz, NSEC_PER_SEC)
    assert 0 < scale.mul <= U32
    assert -32 < scale.shift < 32
    assert abs(scale.apply(base_hz) - NSEC_PER_SEC) <= NSEC_PER_SEC // 10**6


@pytest.mark.parametrize(
    ("base_hz", "mul", "shift"),
    [
        (10**9, 1 << 31, 1),  # 1 GHz: the identity, exactly
        (2 * 10**9, 1 << 31, 0),  # 2 GHz: halve
        (10**6, (10**9 << 32) // (10**6 << 10), 10),
    ],
)
def test_time_scale_known_values(base_hz: int, mul: int, shift: int) -> None:
    """kvm_get_time_scale()'s normalisation, worked out by hand for round rates."""
    assert time_scale(base_hz, NSEC_PER_SEC) == PvclockScale(mul, shift)


@pytest.mark.parametrize(("base", "scaled"), [(0, 1), (1, 0), (-5, 10**9), (10**9, -1)])
def test_time_scale_rejects_non_positive(base: int, scaled: int) -> None:
    """A zero or negative clock rate is a configuration error, not a silent zero scale."""
    with pytest.raises(ValueError):
        time_scale(base, scaled)


@pytest.mark.parametrize(("mul", "shift"), [(U32 + 1, 0), (1, 32), (1, -32), (-1, 0)])
def test_scale_out_of_range_rejected(mul: int, shift: int) -> None:
    """mul must fit the pvclock page's u32 (0 is a frozen clock), shift its int8 window."""
    with pytest.raises(ValueError):
        PvclockScale(mul, shift)


# --- apply / inverse ----------------------------------------------------------------------


@given(scales, st.integers(min_value=0, max_value=U64))
def test_apply_matches_independent_model(scale: PvclockScale, delta: int) -> None:
    """apply() is the pvclock formula, bit for bit."""
    assert scale.apply(delta) == pvclock_model(delta, scale.mul, scale.shift)


@given(scales, st.data())
def test_apply_matches_guest_u64_arithmetic(scale: PvclockScale, data: st.DataObject) -> None:
    """Where the guest's u64 shift does not overflow, host and guest agree exactly."""
    limit = U64 >> max(0, scale.shift)
    delta = data.draw(st.integers(min_value=0, max_value=limit))
    assert scale.apply(delta) == guest_u64_model(delta, scale.mul, scale.shift)


@given(scales, st.integers(min_value=-10, max_value=1 << 62))
def test_inverse_is_exact(scale: PvclockScale, want: int) -> None:
    """inverse(want) is the smallest x with apply(x) >= want: never short, never long."""
    x = scale.inverse(want)
    assert x >= 0
    assert scale.apply(x) >= want
    assert x == 0 or scale.apply(x - 1) < want


@given(scales, st.integers(min_value=0, max_value=1 << 62))
def test_inverse_of_apply_round_trip(scale: PvclockScale, delta: int) -> None:
    """Going to ns and back never lands past the delta it came from."""
    x = scale.inverse(scale.apply(delta))
    assert x <= delta
    assert scale.apply(x) == scale.apply(delta)


# --- GuestClock ---------------------------------------------------------------------------


@given(clocks, st.integers(min_value=-(10**9), max_value=1 << 45))
def test_ticks_at_or_after_never_early_and_minimal(clock: GuestClock, offset: int) -> None:
    """The host tick chosen for a guest deadline is the first one the guest reads as due."""
    ns = clock.system_time_ns + offset
    t = clock.ticks_at_or_after(ns)
    assert t >= clock.tsc_timestamp
    assert clock.ns_at(t) >= ns
    if t > clock.tsc_timestamp:
        assert clock.ns_at(t - 1) < ns
    if ns <= clock.system_time_ns:
        assert t == clock.tsc_timestamp


@given(clocks, st.integers(min_value=0, max_value=1 << 45), st.integers(0, 1 << 45))
def test_ns_at_monotonic(clock: GuestClock, a: int, b: int) -> None:
    """The guest's clock never goes backwards as host ticks advance."""
    lo, hi = sorted((a, b))
    t0 = clock.tsc_timestamp
    assert clock.system_time_ns <= clock.ns_at(t0 + lo) <= clock.ns_at(t0 + hi)
    assert clock.ns_at(t0) == clock.system_time_ns


@given(clocks)
def test_ns_at_before_timestamp_raises(clock: GuestClock) -> None:
    """A pvclock reading before its tsc_timestamp is undefined; the host refuses it."""
    with pytest.raises(ValueError):
        clock.ns_at(clock.tsc_timestamp - 1)


@given(tsc_rates, rates)
def test_dilation_rate(tick_hz: int, rate: Fraction) -> None:
    """One host second of ticks reads as ``rate`` guest seconds, within 1 ppm."""
    clock = GuestClock.create(tick_hz, now_ticks=12345, system_time_ns=777, rate=rate)
    guest_ns = clock.ns_at(12345 + tick_hz) - 777
    expected = NSEC_PER_SEC * rate
    assert abs(guest_ns - expected) <= expected / 10**6


def test_half_rate_guest_reads_half_a_second() -> None:
    """The concrete case: rate 1/2 on a 3 GHz TSC gives 0.5 s per host second."""
    clock = GuestClock.create(3 * 10**9, now_ticks=0, rate=Fraction(1, 2))
    assert abs(clock.ns_at(3 * 10**9) - 500_000_000) <= 500


def test_a_frozen_clock_stands_still() -> None:
    """Rate 0 (a frozen guest): every reading is system_time, and a later one never comes."""
    clock = GuestClock.create(2_400_000_000, 1000, 5_000, 0)
    assert clock.frozen and clock.scale.mul == 0
    assert clock.ns_at(1000) == clock.ns_at(10**12) == 5_000
    assert clock.ticks_at_or_after(5_000) == 1000
    with pytest.raises(ValueError):
        clock.ticks_at_or_after(5_001)


@pytest.mark.parametrize("rate", [-1, Fraction(-1, 2)])
def test_negative_rate_rejected(rate: Fraction | int) -> None:
    """A guest clock that runs backwards cannot be expressed."""
    with pytest.raises(ValueError):
        GuestClock.create(10**9, now_ticks=0, rate=rate)


@given(clocks, st.integers(min_value=0, max_value=1 << 40), st.integers(0, 1 << 40))
def test_delta_ticks_at_least_never_short(clock: GuestClock, delta_ns: int, start: int) -> None:
    """``delta_ticks_at_least(d)`` ticks cover at least d guest ns from any starting tick
    (the guest uses it as its TSC-deadline interval) and are the fewest that do from the
    clock's own timestamp."""
    ticks = clock.delta_ticks_at_least(delta_ns)
    assert clock.scale.apply(ticks) >= delta_ns
    assert ticks == 0 or clock.scale.apply(ticks - 1) < delta_ns
    t0 = clock.tsc_timestamp + start
    assert clock.ns_at(t0 + ticks) - clock.ns_at(t0) >= delta_ns
