""" "Never early", asserted where it can fail.

A path that spins (``pv``, ``precise``, ``lapic --advance auto``) wakes from an early
interrupt and spins to the deadline before it timestamps: its delivered event is never
early by construction, so asserting that proves nothing. There the check is on the
interrupt (``record.interrupt_lateness``): recorded per event, its summary agrees with its
values, and no interrupt came earlier than the largest advance the host or guest may use.
A path that does not spin records the interrupt's arrival as its event: there the
delivered time is checked, and the interrupt must be the very same instant.
"""

from __future__ import annotations

from tickless.results.schema import ResultRecord
from tickless.timers.precise import AdaptiveAdvance
from tickless.timers.pv_deadline import pv_advance

# No interrupt may arrive earlier than this before its deadline (undilated guests): the
# PV device's and the lapic guest's advance are capped at pv_advance().max_ns, the precise
# channel's at AdaptiveAdvance().max_ns.
ADVANCE_MAX_NS = max(pv_advance().max_ns, AdaptiveAdvance().max_ns)


def assert_never_early(record: ResultRecord) -> None:
    irq, per_event = record.interrupt_lateness, record.interrupt_lateness_ns
    assert irq is not None and record.spin is not None, "no interrupt_lateness / spin block"
    assert irq.count == len(per_event) <= record.stats.count
    assert irq.early_count == sum(1 for v in per_event if v < 0)
    assert record.spin.mean_ns >= 0 and record.spin.cpu_s >= 0
    if record.advance == "off":  # the event is the interrupt: check the delivered time
        assert record.lateness.early_count == 0, record.lateness
        assert min(record.lateness_ns) >= 0
        assert per_event == record.lateness_ns  # the same instant, every event
        assert irq.early_count == 0
        assert record.spin.cpu_s == 0
    else:  # early on purpose, but never by more than an advance can be
        assert record.advance == "auto"
        assert min(per_event, default=0) >= -ADVANCE_MAX_NS, min(per_event)
