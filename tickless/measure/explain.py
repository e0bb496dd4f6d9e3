"""``measure --explain``: join the host loop's per-expiry log with what the guest wrote per
event (its ring-3 wake-up time and the longest clock gap while it spun) into the parts of
each event's time (``results/breakdown.py``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tickless.axes import Method
from tickless.results.breakdown import PARTS, Breakdown, dominant_causes
from tickless.results.spec import event_deadlines_ns
from tickless.timers.clock import GuestClock

NONE_TSC = np.uint64(2**64 - 1)


def build_breakdown(
    clock: GuestClock,
    timestamps_ns: npt.NDArray[np.int64],
    entries_ns: npt.NDArray[np.int64],
    gaps_ns: npt.NDArray[np.int64],
    host_log: npt.NDArray[np.uint64],
    interval_ns: int,
    method: Method,
    advance_ns: int,
) -> Breakdown:
    """``entries_ns``/``gaps_ns``: the guest's arrays for events 1..N (entry 0: spun to
    without an interrupt); ``host_log``: rows of EVENT_FIELDS, one per expiry."""
    deadlines = event_deadlines_ns(timestamps_ns, interval_ns, method)
    by_deadline = {int(row[0]): row for row in host_log}
    index: list[int] = []
    parts: dict[str, list[int]] = {part: [] for part in PARTS}
    for i, (deadline, entry, gap, t) in enumerate(
        zip(deadlines, entries_ns, gaps_ns, timestamps_ns[1:], strict=True), start=1
    ):
        row = by_deadline.get(int(deadline))
        previous = int(timestamps_ns[i - 1])
        if entry == 0 or row is None or row[1] == NONE_TSC or not previous <= entry <= t:
            continue
        planned = clock.ns_at(max(int(row[1]), clock.tsc_timestamp))
        woke = clock.ns_at(max(int(row[2]), clock.tsc_timestamp))
        injected = clock.ns_at(max(int(row[3]), clock.tsc_timestamp))
        index.append(i)
        parts["host_wake_late"].append(woke - planned)
        parts["injection"].append(injected - woke)
        parts["guest_entry"].append(int(entry) - injected)
        parts["clock_gap"].append(int(gap))
        parts["spin"].append(max(0, int(t) - int(entry)))
    lateness = (timestamps_ns[1:] - deadlines)[np.asarray(index, dtype=np.int64) - 1]
    arrays = {part: np.asarray(values, dtype=np.int64) for part, values in parts.items()}
    return Breakdown(
        event_index=index,
        parts_ns=parts,
        spun_events=int(np.count_nonzero(entries_ns == 0)),
        advance_ns=advance_ns,
        dominant=dominant_causes(arrays, lateness),
    )
