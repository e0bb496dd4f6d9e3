"""The simulator's state as a struct of arrays: one row per guest (its kernel), one per
device, heap and sorted-run slots per host CPU, one state row per host CPU.

The field numbers below are compile-time constants of the numba kernels
(``tickless.sim.kernels``); Python reads results through them (``tickless.sim.fleet``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tickless.sim import guest_model as gm

Int64Array = npt.NDArray[np.int64]

# --- device rows (the host side of each guest's clock-event device) --------------------------
DEV_SHUTDOWN, DEV_ONESHOT, DEV_PERIODIC = 0, 1, 2
D_STATE, D_NEXT_NS, D_PERIOD_NS, D_EXPIRIES, D_OVERRUNS, D_REJECTED = range(6)
N_DEV_FIELDS = 8  # 64 bytes: one cache line

# --- host CPU rows: its timer queue and its counters ----------------------------------------------
C_LO, C_HI = 0, 1  # heap slots [LO, HI) of this CPU
C_FLO, C_FHI = 2, 3  # sorted-run ring slots [FLO, FHI) (empty: no fast path)
C_N = 4  # timers in the heap
C_FHEAD, C_FCOUNT, C_FTAIL_NS = 5, 6, 7  # the sorted run: first slot, length, last expiry
C_ORDER = 8  # next arming number (the tie-break between equal expiries)
C_NOW_NS = 9  # simulated up to here
C_BUSY_UNTIL_NS = 10  # end of the I/O handler in progress
C_IO_NEXT, C_IO_END = 11, 12  # next and end index into this CPU's I/O arrivals
C_WAKEUPS, C_EXPIRIES = 13, 14  # timer wake-ups, timers expired (= injections)
C_IO_IRQS, C_IO_BUSY_NS = 15, 16  # I/O interrupts handled, handler time
C_DELAYED, C_DELAY_NS = 17, 18  # timer wake-ups held up by a handler, and by how long
C_TRACE_N = 19  # wake-ups traced so far
N_CPU_FIELDS = 24  # 192 bytes: rows of different CPUs never share a cache line

UNARMED = -1  # pos[g]: >= 0 a heap slot, <= -2 the sorted-run slot -2 - pos[g]

# --- warp rows: each warped VM's own timeline (``tickless.sim.warp``), guest ns ----------------
W_NOW_NS = 0  # the VM's guest clock
W_NEXT_NS = 1  # the deadline of its BLOCK (gm.NEVER: none)
W_WARPED_NS = 2  # guest time its clock jumped over while it idled
W_EVENTS = 3  # timer interrupts injected at a warp (one BLOCK exit each)
W_TRACE_N = 4  # events traced so far
N_WARP_FIELDS = 8


@dataclass
class FleetArrays:
    """Everything a fleet run holds, as arrays (memory: ``BYTES_PER_GUEST`` per guest)."""

    rows: Int64Array  # [guests, gm.N_FIELDS]: the guest kernels
    dev: Int64Array  # [guests, N_DEV_FIELDS]: their clock-event devices, host side
    heap_exp: Int64Array  # [guests]: per-CPU heaps, CPU c in slots [LO, HI)
    heap_seq: Int64Array
    heap_ref: Int64Array  # guest index
    run_exp: Int64Array  # per-CPU sorted runs (rings), CPU c in slots [FLO, FHI)
    run_seq: Int64Array
    run_ref: Int64Array  # guest index, -1: a dead entry (its timer was re-armed)
    pos: Int64Array  # [guests]: where a guest's timer is (see UNARMED)
    cpu: Int64Array  # [cpus, N_CPU_FIELDS]
    io_t_ns: Int64Array  # I/O arrival times, grouped by CPU, sorted within each
    io_handler_ns: Int64Array
    timer_period_ns: Int64Array  # [gm.N_TIMERS]
    trace_ns: Int64Array  # [cpus, capacity]: first wake-up times (capacity 0: no trace)
    trace_count: Int64Array  # [cpus, capacity]: timers each of them expired
    period_ns: int
    slop_ns: int
    interval_ns: int
    # Idle warp only (else 0 rows): [guests, N_WARP_FIELDS], and per guest the BLOCK
    # deadline and injection time of its first events ([guests, capacity], guest ns).
    warp: Int64Array = field(default_factory=lambda: np.zeros((0, N_WARP_FIELDS), np.int64))
    warp_deadline_ns: Int64Array = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    warp_inject_ns: Int64Array = field(default_factory=lambda: np.zeros((0, 0), np.int64))

    @property
    def now_ns(self) -> int:
        """How far every CPU (or, warped, every VM's guest clock) has been simulated."""
        if self.warp.shape[0]:
            return int(self.warp[:, W_NOW_NS].min())
        return int(self.cpu[:, C_NOW_NS].min())


# rows, dev, heap (3 slots), pos, sorted run (3 x 2 slots), placement
BYTES_PER_GUEST = 8 * (gm.N_FIELDS + N_DEV_FIELDS + 3 + 1 + 3 * 2 + 1)


def run_capacity(guests_on_cpu: int) -> int:
    """Sorted-run slots for a CPU: room for every timer twice over (dead entries wait at
    most one lap); when it is full, timers simply go to the heap."""
    return 2 * guests_on_cpu + 16
