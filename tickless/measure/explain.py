"""``measure --explain``: join the host loop's per-expiry log with what the guest wrote per
event (its ring-3 wake-up time and the longest clock gap while it spun) into the parts of
each event's time (``results/breakdown.py``); for the precise channel, each late event's
cause, platform or design (``late_causes``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tickless.axes import Method
from tickless.results.breakdown import PARTS, Breakdown, dominant_causes
from tickless.results.io_counts import LateCauses
from tickless.results.record import event_deadlines_ns
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


LATE_NS = 1_000  # a precise event later than this is late (the p99 bound)
GAP_NS = 1_000  # a gap this long in the spinning guest's clock reads: it lost the CPU
SLOW_IO_FACTOR = 2  # an I/O interrupt this many times the median's cost was preempted


def late_causes(
    clock: GuestClock,
    timestamps_ns: npt.NDArray[np.int64],
    deadlines_ns: npt.NDArray[np.int64],
    gaps_ns: npt.NDArray[np.int64],
    io_log: npt.NDArray[np.uint64] | None,
    io_estimate_ns: int,
    precise_log: npt.NDArray[np.uint64] | None,
) -> LateCauses:
    """Give each late precise event one cause: an I/O interrupt on its vCPU ran in its wait
    (``io_log``: the interrupts steered to it, rows of IO_EVENT_FIELDS; None: none were),
    came before its deadline, cost what interrupts cost and delayed the event no longer
    than that (design); else a gap in its clock reads, or an interrupt that ran over twice
    the median's cost (its handler lost the CPU): a preemption (platform); else its early
    interrupt came after the deadline (``precise_log``: the loop's expiries,
    EVENT_FIELDS); else unexplained."""
    t = timestamps_ns.astype(np.int64)
    late_ns = t[1:] - deadlines_ns
    starts, ends = t[:-1], t[1:]
    n = len(late_ns)
    io_hit = np.zeros(n, dtype=bool)
    slow_io = np.zeros(n, dtype=bool)  # the interrupt ran long: its handler lost the CPU
    if io_log is not None and len(io_log):
        base = clock.tsc_timestamp
        inj = np.array([clock.ns_at(max(int(x), base)) for x in io_log[:, 0]], dtype=np.int64)
        end = np.array(
            [
                clock.ns_at(max(int(done), base)) if done else i + io_estimate_ns
                for done, i in zip(io_log[:, 2], inj, strict=True)
            ],
            dtype=np.int64,
        )
        order = np.argsort(inj)
        inj, end = inj[order], end[order]
        cost = end - inj
        slow = cost > SLOW_IO_FACTOR * np.median(cost)
        k = np.searchsorted(inj, ends, side="right") - 1  # the last injection before the event
        kk = np.maximum(k, 0)
        hit = (k >= 0) & (end[kk] >= starts)
        # an interrupt delays an event by its cost at most, and only if it came before the
        # deadline (after it, the event was late already): otherwise, something else
        within = (late_ns <= cost[kk] + LATE_NS) & (inj[kk] <= deadlines_ns)
        io_hit, slow_io = hit & ~slow[kk] & within, hit & slow[kk]
    preempted = (gaps_ns >= GAP_NS) | slow_io
    loop_late = np.zeros(n, dtype=bool)
    if precise_log is not None and len(precise_log):
        injected = {
            int(row[0]): clock.ns_at(max(int(row[3]), clock.tsc_timestamp)) for row in precise_log
        }
        loop_late = np.array(
            [injected.get(int(d), 0) > d for d in deadlines_ns.tolist()], dtype=bool
        )
    late = late_ns > LATE_NS
    io = late & io_hit
    pre = late & ~io_hit & preempted
    loop = late & ~io_hit & ~preempted & loop_late
    platform = ~io_hit & (preempted | loop_late)
    calm = late_ns[~platform]
    return LateCauses(
        late_threshold_ns=LATE_NS,
        gap_threshold_ns=GAP_NS,
        events=n,
        late=int(late.sum()),
        io=int(io.sum()),
        preemption=int(pre.sum()),
        loop_late=int(loop.sum()),
        unexplained=int((late & ~io & ~pre & ~loop).sum()),
        undisturbed=len(calm),
        undisturbed_sd_ns=float(calm.std()) if len(calm) else 0.0,
        undisturbed_p99_ns=float(np.percentile(calm, 99)) if len(calm) else 0.0,
        sd_ns=float(late_ns.std()) if n else 0.0,
        p99_ns=float(np.percentile(late_ns, 99)) if n else 0.0,
    )
