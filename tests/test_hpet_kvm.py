"""The HPET with the real small guest on KVM (``--timer hpet``): ring 3 programs comparator
0 by MMIO, its match arrives through the in-kernel IOAPIC (pin ``HPET_GSI``) as
``HPET_VECTOR``, and the event is that interrupt's arrival. Deadlines are the earliest
guest time the comparator may match as the guest programmed it, so an interrupt before one
is a device that fired early. Dilation and freeze: ``test_time_bending.py``."""

from __future__ import annotations

from fractions import Fraction

import pytest

from tickless.axes import Method, TickMode, TimerPath
from tickless.measure.kvm import measure_kvm
from tickless.results.spec import MeasureSpec

pytestmark = pytest.mark.kvm
MS = 1_000_000
COUNT = 200


def hpet_note(notes: list[str]) -> str:
    (note,) = [n for n in notes if n.startswith("hpet:")]
    return note


@pytest.mark.parametrize("rate", [Fraction(1), Fraction(1, 2), Fraction(4)])
def test_oneshot_comparator_events_by_interrupt_never_early(rate: Fraction) -> None:
    record = measure_kvm(
        MeasureSpec(timer=TimerPath.HPET, interval_ns=MS, count=COUNT, rate=rate, realtime=False)
    )
    assert len(record.intervals_ns) == COUNT
    late = record.interrupt_lateness
    assert late is not None and late.count == COUNT and late.early_count == 0
    assert min(record.lateness_ns) >= 0
    # one comparator match, one interrupt per event: a retried comparator never matched
    assert record.host.timer_events == COUNT
    assert f"hpet: {COUNT} comparator matches, {COUNT} interrupts raised, 0 masked" in hpet_note(
        record.notes
    )


def test_periodic_comparator_events_on_its_grid_never_early() -> None:
    spec = MeasureSpec(
        timer=TimerPath.HPET, interval_ns=MS, count=COUNT, mode=TickMode.PERIODIC, realtime=False
    )
    assert spec.method is Method.ABSOLUTE  # the device's own grid, from its start
    record = measure_kvm(spec)
    assert record.method == "absolute" and len(record.intervals_ns) == COUNT
    late = record.interrupt_lateness
    assert late is not None and late.count == COUNT and late.early_count == 0
    # every interrupt is a match's; a host late by more than a period skips (and counts)
    # the periods it missed, whose events the guest records at the next interrupt, late
    assert record.host.timer_events <= record.host.injections
    assert ", 0 masked," in hpet_note(record.notes)
