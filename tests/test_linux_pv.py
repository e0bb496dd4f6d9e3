"""Linux on the PV deadline device (issue 21): its clock-event driver publishes absolute
deadlines in the shared page and kicks only when one is earlier than the host's promise;
the host's loop delivers at the deadline itself ("deliver exact"). Counts, never rates:
the bounds below hold by the device's design on any host, loaded or not."""

from __future__ import annotations

import pytest

from tickless.axes import GuestKind, TimerPath
from tickless.backends import measure
from tickless.results.spec import MeasureSpec, default_timer

SECOND_NS = 1_000_000_000


def test_pv_is_linux_s_default_timer() -> None:
    assert default_timer(GuestKind.LINUX) is TimerPath.PV
    assert default_timer(GuestKind.SMALL) is TimerPath.PV


def _note(notes: list[str], prefix: str) -> str:
    return next(n for n in notes if n.startswith(prefix))


@pytest.mark.kvm
@pytest.mark.linux
def test_linux_on_the_pv_device_rearms_without_exits_and_is_never_early() -> None:
    """100 events 10 ms apart: every one armed through the page (no SET_CLOCKEVENT
    hypercall per event, as the lguest row makes), interrupts injected by the loop through
    the IOAPIC pin, none before the deadline the host fired, and no exit besides the kicks
    (re-arms earlier than the host's promise) and DONE."""
    count = 100
    spec = MeasureSpec(
        guest=GuestKind.LINUX, timer=TimerPath.PV, interval_ns=10_000_000, count=count, hz=100
    )
    record = measure(spec)
    assert record.guest_clockevent == "tickless-pv"
    assert record.guest_clocksource == "tickless"
    assert record.stats.count == count
    assert record.lateness.early_count == 0
    assert min(record.intervals_ns) >= 10_000_000
    assert record.host.injections >= count  # the loop delivered every event
    assert record.host.hypercalls <= 2  # DONE; no hypercall per re-arm
    note = _note(record.notes, "linux pv:")
    early = int(note.split(": ")[-1].split()[0])
    assert early == 0, note
    # exits during the workload (console's aside) are the kicks and DONE, nothing per
    # re-arm besides. How many re-arms come earlier than the promise (a kick) depends on
    # how late the host's look was: 0.05 per event idle here, 0.35 under stress-ng
    # (`tickless measure --guest linux --timer pv` notes it): exits are bounded by kicks.
    kicks = int(note.split("of which ")[1].split()[0])
    assert record.host.exits <= kicks + 2, note
    assert "kicked the host" in _note(record.notes, "pv: Linux's driver")
