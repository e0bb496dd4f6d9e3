"""Idle warp in a simulated fleet: each VM on its own timeline, its clock jumping to its
next deadline whenever it idles (QEMU's ``-icount sleep=off``, on KVM).

A warped guest tells the host it is idle with a BLOCK(deadline) hypercall; the host arms no
timer for it: the VM's guest clock jumps to the deadline at once and the host injects the
interrupt right then. So a warped idle guest costs no host timer wake-ups; each event costs
one BLOCK exit, one injection and the guest's handler. The stretch from the injection to
the BLOCK is the guest computing: it takes the cost model's ``per_interrupt_ns`` of wall
time and advances the guest clock by ``rate`` times that (``handler_ns`` here, guest ns);
the BLOCK exit itself is idle time, covered by the next warp. Guest time never goes back,
and no interrupt comes before its deadline in guest time (a deadline already passed when
the guest blocks fires at once, late, after the device's minimum delta as unwarped). VMs do
not share a clock: the fleet has no groups.

Only tickless guests warp (``FleetSpec`` refuses periodic ticks and busy guests). The
fleet's wall time is the host's work, each host CPU running its VMs' events back to back
(``fleet_result.summarize``).
"""

from __future__ import annotations

import time

import numba
import numpy as np

from tickless.sim import guest_model as gm
from tickless.sim import kernels
from tickless.sim.layout import (
    N_WARP_FIELDS,
    W_EVENTS,
    W_NEXT_NS,
    W_NOW_NS,
    W_TRACE_N,
    W_WARPED_NS,
    FleetArrays,
    Int64Array,
)

with kernels.numba_cache():

    @numba.njit(cache=True)
    def block_deadline_ns(rows: Int64Array, g: int, now_ns: int, period_ns: int) -> int:
        """BLOCK's deadline: the guest's next timer as it would program it (gm.NEVER: none)."""
        delta_ns = gm.next_delta_ns(rows, g, now_ns, period_ns)
        return now_ns + delta_ns if delta_ns > 0 else gm.NEVER

    @numba.njit(cache=True)
    def init_warp(rows: Int64Array, warp: Int64Array, period_ns: int) -> None:
        """Every guest idle at t = 0, blocked on its next timer (the BLOCK came before)."""
        for g in range(rows.shape[0]):
            gm.refresh_next_due(rows, g)
            warp[g, W_NEXT_NS] = block_deadline_ns(rows, g, 0, period_ns)

    @numba.njit(cache=True)
    def run_warp(
        t_end_ns: int,
        rows: Int64Array,
        warp: Int64Array,
        timer_period_ns: Int64Array,
        period_ns: int,
        interval_ns: int,
        handler_ns: int,
        trace_deadline_ns: Int64Array,
        trace_inject_ns: Int64Array,
    ) -> None:
        """Every VM's clock up to ``t_end_ns`` (resumable, chunking-invariant): warp to the
        deadline, inject, the handler's stretch at the dilation rate, BLOCK again; an idle
        VM's clock ends the chunk warped to ``t_end_ns``."""
        cap = trace_deadline_ns.shape[1]
        for g in range(rows.shape[0]):
            now, nxt, warped = warp[g, W_NOW_NS], warp[g, W_NEXT_NS], warp[g, W_WARPED_NS]
            events, traced = warp[g, W_EVENTS], warp[g, W_TRACE_N]
            while nxt <= t_end_ns:
                if nxt > now:  # idle: the clock jumps to the deadline
                    warped += nxt - now
                    now = nxt
                if traced < cap:
                    trace_deadline_ns[g, traced] = nxt
                    trace_inject_ns[g, traced] = now
                    traced += 1
                gm.on_timer_irq(rows, g, now, period_ns, timer_period_ns, interval_ns)
                events += 1
                now += handler_ns  # computing: the clock runs at the dilation rate
                nxt = block_deadline_ns(rows, g, now, period_ns)
            if now < t_end_ns:
                warped += t_end_ns - now
                now = t_end_ns
            warp[g, W_NOW_NS], warp[g, W_NEXT_NS], warp[g, W_WARPED_NS] = now, nxt, warped
            warp[g, W_EVENTS], warp[g, W_TRACE_N] = events, traced


def attach(a: FleetArrays, trace_capacity: int) -> None:
    """Give a built fleet its warp rows and trace, and block every guest at t = 0."""
    guests = a.rows.shape[0]
    a.warp = np.zeros((guests, N_WARP_FIELDS), dtype=np.int64)
    a.warp_deadline_ns = np.zeros((guests, trace_capacity), dtype=np.int64)
    a.warp_inject_ns = np.zeros((guests, trace_capacity), dtype=np.int64)
    init_warp(a.rows, a.warp, a.period_ns)


def run_until(a: FleetArrays, t_end_ns: int, handler_ns: int) -> None:
    """Every VM's guest clock to ``t_end_ns`` (``handler_ns``: the handler's guest ns)."""
    run_warp(
        t_end_ns,
        a.rows,
        a.warp,
        a.timer_period_ns,
        a.period_ns,
        a.interval_ns,
        handler_ns,
        a.warp_deadline_ns,
        a.warp_inject_ns,
    )


def warm_up(a: FleetArrays) -> float:
    """Compile (or load) the warp kernels on a built fleet; the seconds it took."""
    t0 = time.perf_counter()
    attach(a, 1)
    run_until(a, 1, 1)
    return time.perf_counter() - t0
