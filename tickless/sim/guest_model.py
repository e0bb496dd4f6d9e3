"""The guest kernel of a simulated fleet: its tick mode, its workload, its own timers.

A guest is one row of an int64 array (the fields below), so a fleet is a struct of arrays
and the engine can compile this with numba; the functions use no Python objects. The guest
reacts to each timer interrupt in zero virtual time: it runs what is due and answers with
the delta it programs into its clock-event device (0: leave the device alone, it ticks).

Tick modes (what the host sees):

* ``periodic``: HZ ticks always (``SET_PERIODIC``); the guest's timers run at the first tick
  at or after their time, like the real guest in ``tickless/guest/src/user.c``.
* ``nohz-idle``: the tick runs while the guest is busy and stops while it idles; an idle
  guest programs one event for its next timer, rounded up to the tick grid (Xen's and
  s390's ``next_timer_interrupt()``: timers live on the jiffy wheel). The host still takes
  an event per guest timer, but none per idle tick.
* ``nohz-full``: dynticks on host and guest, one-shot events only, at the timers' exact
  times (hrtimers); a busy guest keeps only Linux's 1 Hz residual tick.

Workloads: ``idle`` (sparse housekeeping timers, by default every 1 s and 4 s, aligned as
in ``user.c``), ``cpu`` (always busy: a ticking guest's tick is then "needed") and
``measure`` (N events, each ``d`` after the previous one: the paper's relative method).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tickless.guest.abi import MAX_DELTA_NS, MIN_DELTA_NS

PERIODIC, NOHZ_IDLE, NOHZ_FULL = 0, 1, 2
MODES = {"periodic": PERIODIC, "nohz-idle": NOHZ_IDLE, "nohz-full": NOHZ_FULL}
IDLE, CPU, MEASURE = 0, 1, 2
WORKLOADS = {"idle": IDLE, "cpu": CPU, "measure": MEASURE}

NEVER = 1 << 62  # a deadline that never comes (fits int64 with room for adding a period)
RESIDUAL_TICK_NS = 1_000_000_000  # nohz_full keeps a 1 Hz tick on a busy CPU

# --- fields of a guest row (the hot ones first: one cache line per timer interrupt) --------------
MODE = 0  # tick mode (PERIODIC, NOHZ_IDLE, NOHZ_FULL): fleets may mix them
WORKLOAD = 1  # IDLE, CPU or MEASURE
NEXT_DUE = 2  # the earliest of its timers and its next measurement deadline
IRQS = 3  # timer interrupts taken
USEFUL = 4  # of them: with something to do (a timer due, or a busy guest)
ANCHOR = 5  # the tick grid: ticks at ANCHOR + k * period (0 < ANCHOR <= period)
MEAS_NEXT = 6  # next measurement deadline (NEVER when done)
MEAS_LEFT = 7  # measurement events still to record
TIMER0 = 8  # next deadlines of the guest's own timers, TIMER0 .. TIMER0 + N_TIMERS - 1
N_TIMERS = 3  # housekeeping a, housekeeping b, residual tick (NEVER when unused)
N_HOUSEKEEPING = 2  # the first two count as housekeeping runs
HK_RUNS = 11  # housekeeping timer runs
HYPERCALLS = 12  # device programming calls (SET_CLOCKEVENT)
MEAS_EVENTS = 13  # measurement events recorded
LATE_SUM_NS = 14  # their total lateness behind the requested deadline
LATE_MAX_NS = 15
N_FIELDS = 16  # 128 bytes a guest

GuestRows = npt.NDArray[np.int64]


def ticking(mode: int, workload: int) -> bool:
    """Whether the guest's device runs periodic: always, or while busy in nohz-idle."""
    return mode == PERIODIC or (mode == NOHZ_IDLE and workload == CPU)


def jiffy_ceil_ns(t_ns: int, anchor_ns: int, period_ns: int) -> int:
    """The first tick of the grid ``anchor + k * period`` at or after ``t_ns``."""
    return anchor_ns - ((anchor_ns - t_ns) // period_ns) * period_ns


def refresh_next_due(rows: GuestRows, g: int) -> None:
    """Cache the guest's earliest deadline, so that most interrupts read one field."""
    nxt = rows[g, MEAS_NEXT]
    for k in range(N_TIMERS):
        nxt = min(nxt, rows[g, TIMER0 + k])
    rows[g, NEXT_DUE] = nxt


def next_delta_ns(rows: GuestRows, g: int, now_ns: int, period_ns: int) -> int:
    """The one-shot delta an idle (or nohz-full) guest programs at ``now_ns``.

    Its next timer (jiffy-rounded in nohz-idle), clamped to the device's range as
    ``clockevents_program_min_delta()`` and ``arm_lguest()`` in ``user.c`` do (a timer beyond
    the maximum delta costs an early wake-up with nothing to do, as in Linux); 0 when the
    guest has no timer at all."""
    nxt: int = rows[g, NEXT_DUE]
    if nxt >= NEVER:
        return 0
    if rows[g, MODE] == NOHZ_IDLE:
        nxt = jiffy_ceil_ns(nxt, rows[g, ANCHOR], period_ns)
    return min(max(nxt - now_ns, MIN_DELTA_NS), MAX_DELTA_NS)


def run_due(
    rows: GuestRows,
    g: int,
    now_ns: int,
    timer_period_ns: npt.NDArray[np.int64],
    interval_ns: int,
) -> None:
    """Run the guest's timers and measurement event due at ``now_ns``."""
    for k in range(N_TIMERS):
        due = rows[g, TIMER0 + k]
        if due <= now_ns:
            runs = (now_ns - due) // timer_period_ns[k] + 1
            rows[g, TIMER0 + k] = due + runs * timer_period_ns[k]
            if k < N_HOUSEKEEPING:
                rows[g, HK_RUNS] += runs
    if rows[g, MEAS_NEXT] <= now_ns:
        late_ns = now_ns - rows[g, MEAS_NEXT]
        rows[g, MEAS_EVENTS] += 1
        rows[g, LATE_SUM_NS] += late_ns
        rows[g, LATE_MAX_NS] = max(rows[g, LATE_MAX_NS], late_ns)
        rows[g, MEAS_LEFT] -= 1
        rows[g, MEAS_NEXT] = now_ns + interval_ns if rows[g, MEAS_LEFT] > 0 else NEVER
    refresh_next_due(rows, g)


def on_timer_irq(
    rows: GuestRows,
    g: int,
    now_ns: int,
    period_ns: int,
    timer_period_ns: npt.NDArray[np.int64],
    interval_ns: int,
) -> int:
    """Guest ``g`` takes a timer interrupt at ``now_ns``; returns the delta it programs
    (0: none, its device ticks on)."""
    rows[g, IRQS] += 1
    workload = rows[g, WORKLOAD]
    useful = workload == CPU
    if rows[g, NEXT_DUE] <= now_ns:
        run_due(rows, g, now_ns, timer_period_ns, interval_ns)
        useful = True
    if useful:
        rows[g, USEFUL] += 1
    if ticking(rows[g, MODE], workload):
        return 0
    delta_ns = next_delta_ns(rows, g, now_ns, period_ns)
    if delta_ns:
        rows[g, HYPERCALLS] += 1
    return delta_ns
