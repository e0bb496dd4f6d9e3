"""The simulator's compiled kernels: host CPUs, their timer queues and guests, in virtual ns.

They run the host timer logic of ``tickless.timers`` itself: the functions of
``tickless.timers.policy`` (delta checks, deadlines, ``hrtimer_forward``, the indexed heap,
Xen's slop wake-up choice) are registered with numba here and called from compiled code as
the very same function objects ``TimerQueue`` and ``ClockEventDevice`` call in Python.
numba is imported only in ``tickless.sim``. The kernels are long functions on purpose:
numba compiles a loop best when the queue operations are written out in it.

Event rules on one CPU, in this order:

1. an I/O interrupt arriving no later than the next timer wake-up runs first; its handler
   keeps the CPU busy for its handling time (back to back when they pile up);
2. the timer wake-up (the slop choice) runs at the wake-up time, or when the handler in
   progress ends; it expires every timer due by then, in (expiry, arming) order: the
   device computes its next periodic deadline (or shuts down, one-shot), the host injects
   the interrupt, the guest reacts and may program its device again.

The queue is the policy heap plus a sorted run, an O(1) fast path that changes nothing but
speed (see ``run_cpu``); ``fleet.build(..., sorted_runs=False)`` turns it off, and the
tests check both against ``TimerQueue`` and ``ClockEventDevice`` themselves.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numba
from numba.extending import register_jitable

import tickless.guest.abi
from tickless.buildcache import cache_dir, fingerprint
from tickless.sim import guest_model as gm
from tickless.sim import layout
from tickless.sim.layout import (
    C_BUSY_UNTIL_NS,
    C_DELAY_NS,
    C_DELAYED,
    C_EXPIRIES,
    C_FCOUNT,
    C_FHEAD,
    C_FHI,
    C_FLO,
    C_FTAIL_NS,
    C_HI,
    C_IO_BUSY_NS,
    C_IO_END,
    C_IO_IRQS,
    C_IO_NEXT,
    C_LO,
    C_N,
    C_NOW_NS,
    C_ORDER,
    C_TRACE_N,
    C_WAKEUPS,
    D_EXPIRIES,
    D_NEXT_NS,
    D_OVERRUNS,
    D_PERIOD_NS,
    D_REJECTED,
    D_STATE,
    DEV_ONESHOT,
    DEV_PERIODIC,
    DEV_SHUTDOWN,
    UNARMED,
    Int64Array,
)
from tickless.timers import policy

# The host timer logic the kernels call, shared with tickless.timers (the same function
# objects): exactly those the kernels below call, and those these call in turn (numba
# compiles a callee only if it is registered; tests/test_sim_engine.py checks the list).
SHARED_POLICY: tuple[Callable[..., Any], ...] = (
    policy.check_delta,
    policy.check_max_delta,  # by check_delta
    policy.oneshot_deadline_ns,
    policy.hrtimer_forward,
    policy.heap_push,
    policy.heap_remove,
    policy.heap_sift_up,  # by heap_push and heap_remove
    policy.heap_sift_down,  # by heap_remove
    policy.slop_wakeup,
    policy.heap_latest_within,  # also by slop_wakeup
)
GUEST_MODEL: tuple[Callable[..., Any], ...] = (
    gm.ticking,
    gm.refresh_next_due,
    gm.next_delta_ns,
    gm.on_timer_irq,
    gm.jiffy_ceil_ns,  # by next_delta_ns
    gm.run_due,  # by on_timer_irq
)
for _fn in SHARED_POLICY + GUEST_MODEL:
    register_jitable(_fn)

# OpenMP's idle workers spin between parallel regions and steal the cores our chunks need
# (measured: 11 vs 19 M events/s on this 2-core host); numba's own pool sleeps instead.
_config: Any = numba.config  # its settings are set dynamically: mypy cannot see them
if "NUMBA_THREADING_LAYER" not in os.environ:
    _config.THREADING_LAYER = "workqueue"


def _numba_cache_dir() -> Path:
    """Compiled code cached per content of everything it depends on: numba keys its cache
    on the decorated function's own file only, which would go stale when the shared policy,
    the guest model or the ABI constants change."""
    modules = (policy, gm, layout, tickless.guest.abi)
    inputs = [Path(m.__file__).read_bytes() for m in modules if m.__file__]
    inputs += [Path(__file__).read_bytes(), numba.__version__.encode()]
    return cache_dir() / f"numba-{fingerprint('numba', inputs)}"


@contextlib.contextmanager
def _cache_in(path: Path) -> Iterator[None]:
    """Point numba's cache at ``path`` while our functions are decorated (numba picks the
    cache location then), and leave the setting as it was for everyone else."""
    saved = _config.CACHE_DIR
    _config.CACHE_DIR = str(path)
    try:
        yield
    finally:
        _config.CACHE_DIR = saved


def numba_cache() -> contextlib.AbstractContextManager[None]:
    """Decorate compiled functions inside this to cache them with the kernels' (``warp``)."""
    return _cache_in(_numba_cache_dir())


with _cache_in(_numba_cache_dir()):

    @numba.njit(cache=True)
    def init_devices(
        rows: Int64Array,
        dev: Int64Array,
        heap_exp: Int64Array,
        heap_seq: Int64Array,
        heap_ref: Int64Array,
        pos: Int64Array,
        cpu: Int64Array,
        cpu_of: Int64Array,
        period_ns: int,
    ) -> None:
        """Arm every guest's device as it stands at time 0 (a fleet in steady state): ticking
        guests on their tick grid, the others for their next timer, in guest order. All go
        to the heaps; they move to the sorted runs as they re-arm."""
        for g in range(rows.shape[0]):
            gm.refresh_next_due(rows, g)
            if gm.ticking(rows[g, gm.MODE], rows[g, gm.WORKLOAD]):
                # SET_PERIODIC issued one period before the first tick, in the past.
                deadline_ns = policy.oneshot_deadline_ns(rows[g, gm.ANCHOR] - period_ns, period_ns)
                dev[g, D_STATE] = DEV_PERIODIC
                dev[g, D_PERIOD_NS] = period_ns
            else:
                delta_ns = gm.next_delta_ns(rows, g, 0, period_ns)
                if delta_ns == 0:
                    continue
                if policy.check_delta(delta_ns) != 0:
                    dev[g, D_REJECTED] += 1
                    continue
                deadline_ns = policy.oneshot_deadline_ns(0, delta_ns)
                dev[g, D_STATE] = DEV_ONESHOT
            dev[g, D_NEXT_NS] = deadline_ns
            q = cpu[cpu_of[g]]
            lo, hi = q[C_LO], q[C_HI]
            q[C_N] = policy.heap_push(
                heap_exp[lo:hi],
                heap_seq[lo:hi],
                heap_ref[lo:hi],
                pos,
                q[C_N],
                deadline_ns,
                q[C_ORDER],
                g,
            )
            q[C_ORDER] += 1

    # Long on purpose: numba keeps the queue in locals only with its operations inlined here.
    @numba.njit(cache=True)
    def run_cpu(
        c: int,
        t_end_ns: int,
        rows: Int64Array,
        dev: Int64Array,
        heap_exp: Int64Array,
        heap_seq: Int64Array,
        heap_ref: Int64Array,
        run_exp: Int64Array,
        run_seq: Int64Array,
        run_ref: Int64Array,
        pos: Int64Array,
        cpu: Int64Array,
        io_t_ns: Int64Array,
        io_handler_ns: Int64Array,
        timer_period_ns: Int64Array,
        period_ns: int,
        slop_ns: int,
        interval_ns: int,
        trace_ns: Int64Array,
        trace_count: Int64Array,
    ) -> None:
        """Host CPU ``c`` from where it stands to ``t_end_ns`` (every wake-up due by then).

        Its timer queue is the policy heap plus a sorted run (a ring): an arming no earlier
        than the run's last one is appended to the run in O(1) (periodic ticks of equal
        period always are), anything else goes to the heap; the first timer is the smaller
        (expiry, arming order) of the two heads, so the queue's order, and with it every
        wake-up, is exactly TimerQueue's. The queue operations are written out here, on
        local variables, because calls passing a dozen arrays cost more than the work."""
        q = cpu[c].copy()  # private while running: no cache line shared with other CPUs
        lo, hi, flo, fhi = q[C_LO], q[C_HI], q[C_FLO], q[C_FHI]
        hexp, hseq, href = heap_exp[lo:hi], heap_seq[lo:hi], heap_ref[lo:hi]
        rexp, rseq, rref = run_exp[flo:fhi], run_seq[flo:fhi], run_ref[flo:fhi]
        cap = fhi - flo
        n, head, count, tail, order = q[C_N], q[C_FHEAD], q[C_FCOUNT], q[C_FTAIL_NS], q[C_ORDER]
        busy_until, io_i, io_end = q[C_BUSY_UNTIL_NS], q[C_IO_NEXT], q[C_IO_END]
        trace_i, trace_cap = q[C_TRACE_N], trace_ns.shape[1]
        wakeups = expiries = io_irqs = io_busy = delayed = delay_ns = 0
        while True:
            # --- TimerQueue.next_wakeup -------------------------------------------------------
            while count > 0 and rref[head] < 0:  # dead entries leave from the front
                head = head + 1 if head + 1 < cap else 0
                count -= 1
            if count == 0 and n == 0:
                wake = gm.NEVER
            elif count == 0:
                wake = policy.slop_wakeup(hexp, n, slop_ns)
            else:
                wake = rexp[head]
                if n > 0 and hexp[0] < wake:
                    wake = hexp[0]
                if slop_ns > 0:
                    limit = wake + slop_ns
                    wake = policy.heap_latest_within(hexp, n, limit, wake)
                    i = head
                    for _ in range(count):  # sorted: stop at the first past the window
                        if rexp[i] > limit:
                            break
                        if rref[i] >= 0 and rexp[i] > wake:
                            wake = rexp[i]
                        i = i + 1 if i + 1 < cap else 0
            # --- an I/O interrupt first, if it comes no later --------------------------------
            if io_i < io_end and io_t_ns[io_i] <= wake and io_t_ns[io_i] <= t_end_ns:
                busy_until = max(io_t_ns[io_i], busy_until) + io_handler_ns[io_i]
                io_busy += io_handler_ns[io_i]
                io_irqs += 1
                io_i += 1
                continue
            if wake > t_end_ns:
                break
            now = wake
            if busy_until > now:  # the timer interrupt waits for the handler
                delayed += 1
                delay_ns += busy_until - now
                now = busy_until
            wakeups += 1
            expired = 0
            while True:
                # --- TimerQueue.expire, one timer at a time -----------------------------------
                while count > 0 and rref[head] < 0:
                    head = head + 1 if head + 1 < cap else 0
                    count -= 1
                from_run = count > 0 and (
                    n == 0
                    or rexp[head] < hexp[0]
                    or (rexp[head] == hexp[0] and rseq[head] < hseq[0])
                )
                if from_run:
                    if rexp[head] > now:
                        break
                    g = rref[head]
                    head = head + 1 if head + 1 < cap else 0
                    count -= 1
                else:
                    if n == 0 or hexp[0] > now:
                        break
                    g = href[0]
                    n = policy.heap_remove(hexp, hseq, href, pos, n, 0)
                pos[g] = UNARMED
                expired += 1
                # --- ClockEventDevice: expiry, injection, the guest's answer ------------------
                dev[g, D_EXPIRIES] += 1
                rearm_ns = gm.NEVER  # the periodic re-arm, then the guest's own programming
                if dev[g, D_STATE] == DEV_PERIODIC:
                    nxt, missed = policy.hrtimer_forward(
                        dev[g, D_NEXT_NS], now, dev[g, D_PERIOD_NS]
                    )
                    dev[g, D_OVERRUNS] += missed
                    dev[g, D_NEXT_NS] = nxt
                    rearm_ns = nxt
                else:
                    dev[g, D_STATE] = DEV_SHUTDOWN
                    dev[g, D_NEXT_NS] = gm.NEVER
                program_ns = gm.NEVER
                delta_ns = gm.on_timer_irq(rows, g, now, period_ns, timer_period_ns, interval_ns)
                if delta_ns:
                    if policy.check_delta(delta_ns) != 0:
                        dev[g, D_REJECTED] += 1
                    else:
                        program_ns = policy.oneshot_deadline_ns(now, delta_ns)
                        dev[g, D_STATE] = DEV_ONESHOT
                        dev[g, D_NEXT_NS] = program_ns
                for k in range(2):  # --- TimerQueue.arm, for each of the two ----------------
                    e = rearm_ns if k == 0 else program_ns
                    if e == gm.NEVER:
                        continue
                    s = order
                    order += 1
                    p = pos[g]
                    if p >= 0:  # re-armed while in the heap: forget that arming
                        n = policy.heap_remove(hexp, hseq, href, pos, n, p)
                    elif p != UNARMED:  # ... or while in the run: leave a dead entry
                        rref[-2 - p] = -1
                    if count < cap and (count == 0 or e >= tail):
                        i = head + count
                        if i >= cap:
                            i -= cap
                        rexp[i] = e
                        rseq[i] = s
                        rref[i] = g
                        pos[g] = -2 - i
                        count += 1
                        tail = e
                    else:
                        n = policy.heap_push(hexp, hseq, href, pos, n, e, s, g)
            expiries += expired
            if trace_i < trace_cap:
                trace_ns[c, trace_i] = now
                trace_count[c, trace_i] = expired
                trace_i += 1
        q[C_N], q[C_FHEAD], q[C_FCOUNT], q[C_FTAIL_NS], q[C_ORDER] = n, head, count, tail, order
        q[C_BUSY_UNTIL_NS], q[C_IO_NEXT], q[C_TRACE_N] = busy_until, io_i, trace_i
        q[C_NOW_NS] = max(q[C_NOW_NS], t_end_ns)
        q[C_WAKEUPS] += wakeups
        q[C_EXPIRIES] += expiries
        q[C_IO_IRQS] += io_irqs
        q[C_IO_BUSY_NS] += io_busy
        q[C_DELAYED] += delayed
        q[C_DELAY_NS] += delay_ns
        cpu[c] = q

    @numba.njit(cache=True, parallel=True)
    def run_all(
        t_end_ns: int,
        rows: Int64Array,
        dev: Int64Array,
        heap_exp: Int64Array,
        heap_seq: Int64Array,
        heap_ref: Int64Array,
        run_exp: Int64Array,
        run_seq: Int64Array,
        run_ref: Int64Array,
        pos: Int64Array,
        cpu: Int64Array,
        io_t_ns: Int64Array,
        io_handler_ns: Int64Array,
        timer_period_ns: Int64Array,
        period_ns: int,
        slop_ns: int,
        interval_ns: int,
        trace_ns: Int64Array,
        trace_count: Int64Array,
    ) -> None:
        for c in numba.prange(cpu.shape[0]):
            run_cpu(
                c,
                t_end_ns,
                rows,
                dev,
                heap_exp,
                heap_seq,
                heap_ref,
                run_exp,
                run_seq,
                run_ref,
                pos,
                cpu,
                io_t_ns,
                io_handler_ns,
                timer_period_ns,
                period_ns,
                slop_ns,
                interval_ns,
                trace_ns,
                trace_count,
            )
