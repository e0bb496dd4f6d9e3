"""The hold-back window: ordinary interrupts raised just before a precise deadline wait
for it, and nothing is ever released before it was raised."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickless.timers.injection import HoldBackWindow


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (0, 0),  # long before the window
        (899, 899),  # just before it
        (900, 1000),  # its first instant: deadline - window
        (950, 1000),
        (1000, 1000),  # at the deadline itself
        (1001, 1001),  # after the deadline: nothing to wait for
        (5000, 5000),
    ],
)
def test_release_at_table(now: int, expected: int) -> None:
    """Outside [deadline - window, deadline] release at once, inside at the deadline."""
    assert HoldBackWindow(100).release_at(now, 1000) == expected


@given(st.integers(-(10**12), 10**12), st.integers(-(10**12), 10**12))
def test_zero_window_and_no_deadline_pass_through(now: int, deadline: int) -> None:
    """A zero window holds nothing back, and with no precise deadline nothing is held."""
    assert HoldBackWindow(0).release_at(now, deadline) == now
    assert HoldBackWindow(10**6).release_at(now, None) == now


def test_negative_window_rejected() -> None:
    """A negative window would be a nonsense interval."""
    with pytest.raises(ValueError):
        HoldBackWindow(-1)


@given(
    st.integers(0, 10**9),
    st.integers(-(10**12), 10**12),
    st.one_of(st.none(), st.integers(-(10**12), 10**12)),
)
def test_release_never_before_now(window: int, now: int, deadline: int | None) -> None:
    """The result is now or the deadline, never earlier than now, and the deadline exactly
    when now falls in the window."""
    result = HoldBackWindow(window).release_at(now, deadline)
    assert result >= now
    assert result in (now, deadline)
    in_window = deadline is not None and window > 0 and deadline - window <= now <= deadline
    assert result == (deadline if in_window else now)


def test_the_io_hold_back_is_fixed_cost_aware_or_none() -> None:
    """The deadline loop's hold-back settings (host/src/deadline_loop_io.h runs them): a
    cost-aware window starts from the handler's busy time plus a guess at its entry and is
    the estimate plus a margin (plus the precise channel's advance when it interrupts)."""
    from tickless.timers.injection import ENTRY_GUESS_NS, HOLD_MARGIN_NS, HoldBack, HoldMode

    cost = HoldBack.choose(0, True, 20_000)
    assert cost.mode is HoldMode.COST and cost.initial_cost_ns == 20_000 + ENTRY_GUESS_NS
    assert cost.window_for(80_000) == 80_000 + HOLD_MARGIN_NS
    assert cost.window_for(80_000, advance_ns=5_000) == 85_000 + HOLD_MARGIN_NS
    fixed = HoldBack.choose(50_000, False, 20_000)
    assert fixed.mode is HoldMode.FIXED and fixed.window_for(80_000) == 50_000
    none = HoldBack.choose(0, False, 20_000)
    assert none.mode is HoldMode.NONE and none.window_for(80_000) == 0
