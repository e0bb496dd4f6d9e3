"""The small guest on the zoo's i8254 (``--timer pit``): it programs channel 0 by ``out``
from ring 3 and takes its interrupt through the IOAPIC (GSI 0 -> PIT_VECTOR). No latency
is asserted: what holds on any host is that no event comes before the earliest time its
count allows, and the counts the design fixes (one interrupt per one-shot)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from tickless.backends import measure
from tickless.errors import InputError
from tickless.guest.abi import PIT_HZ, pit_count
from tickless.results.spec import MeasureSpec


def _never_early(record_early: int, interrupts_early: int) -> None:
    assert record_early == 0 and interrupts_early == 0


@pytest.mark.kvm
@pytest.mark.parametrize("method", ["relative", "absolute"])
def test_pit_one_shots_come_once_each_and_never_before_their_count(method: str) -> None:
    record = measure(MeasureSpec(timer="pit", interval_ns=300_000, count=200, method=method))
    assert record.stats.count == 200 and record.pit == "tickless-i8254"
    assert record.interrupt_lateness is not None
    _never_early(record.lateness.early_count, record.interrupt_lateness.early_count)
    assert record.host.injections == 200  # one mode-0 terminal count per event
    assert record.host.timer_events == 200  # and the guest's ISR took each
    assert record.interval_ns == 300_000
    assert any("i8254 raised 200 interrupts" in note for note in record.notes)


@pytest.mark.kvm
def test_pit_periodic_runs_on_its_own_grid() -> None:
    record = measure(MeasureSpec(timer="pit", mode="periodic", interval_ns=1_000_000, count=150))
    assert pit_count(1_000_000) == 1193
    assert record.interval_ns == round(1193 * 10**9 / PIT_HZ) == 999_847  # the device's
    assert record.interrupt_lateness is not None
    _never_early(record.lateness.early_count, record.interrupt_lateness.early_count)
    # the guest took only interrupts the device raised (two close ones may merge in the
    # IOAPIC, and one may come after the last event)
    assert 0 < record.host.timer_events <= record.host.injections
    assert record.pit == "tickless-i8254"


@pytest.mark.kvm
def test_a_dilated_pit_counts_in_guest_time() -> None:
    spec = MeasureSpec(timer="pit", interval_ns=500_000, count=100, rate=Fraction(1, 2))
    record = measure(spec)
    assert record.interrupt_lateness is not None
    _never_early(record.lateness.early_count, record.interrupt_lateness.early_count)
    assert record.host.injections == 100


@pytest.mark.kvm
def test_a_guest_without_the_zoo_has_no_pit() -> None:
    assert measure(MeasureSpec(timer="lguest", interval_ns=200_000, count=20)).pit == "none"


@pytest.mark.parametrize("interval_ns", [1_000, 55_000_000])
def test_an_interval_the_16_bit_count_cannot_hold_is_refused(interval_ns: int) -> None:
    with pytest.raises(InputError, match="16-bit"):
        MeasureSpec(timer="pit", interval_ns=interval_ns, count=10)
