"""The deadline loop's C structures as ctypes lays them out: a channel's configuration and
counts (``src/deadline_loop.c``), and the IO channel's (``src/deadline_loop_io.h``, which
says why the I/O load's arrivals live in the loop), with its event log's columns."""

from __future__ import annotations

import ctypes as C
from dataclasses import dataclass


class IoConfig(C.Structure):
    _fields_ = [
        ("mean_gap_ns", C.c_uint64),
        ("seed", C.c_uint64),
        ("link", C.c_int32),
        ("hold_mode", C.c_int32),
        ("to_ap", C.c_int32),
        ("unused", C.c_int32),
        *(
            (name, C.c_uint64)
            for name in (
                "window_ns",
                "margin_ns",
                "initial_cost_ns",
                "max_cost_ns",
                "max_hold_ns",
                "release_after_ns",
                "late_bound_ns",
                "retry_ns",
                "lost_after_ns",
                "log_address",
                "log_capacity",
            )
        ),
    ]


IO_STAT_FIELDS = (
    "arrivals",
    "delivered",
    "covered",
    "held",
    "forced",
    "lost",
    "not_ready",
    "failed_injections",
    "inject_errno",
    "cost_samples",
    "cost_sum_ns",
    "cost_max_ns",
    "estimate_ns",
    "first_arrival_ns",
    "last_ns",
    "pending",
    "logged",
    "handled",
)


class IoStatsC(C.Structure):
    _fields_ = [(name, C.c_uint64) for name in IO_STAT_FIELDS]


IO_EVENT_FIELDS = ("inject_tsc", "covers", "done_tsc", "held")


@dataclass(frozen=True)
class IoLoopStats:
    """What the loop's I/O device did (counts since it was added; guest ns)."""

    arrivals: int  # arrivals generated (the requested Poisson process)
    delivered: int  # interrupts injected (the ioctl took them)
    covered: int  # arrivals those interrupts covered (the device's status)
    held: int  # arrivals held back by the precise channel's window (at least once)
    forced: int  # interrupts forced in after max_hold (the window never closed)
    lost: int  # interrupts counted lost (in flight, no progress for long)
    not_ready: int  # arrivals before the guest took interrupts (none: it starts then)
    failed_injections: int  # injections the ioctl refused (their arrivals stayed pending)
    inject_errno: int
    cost_samples: int  # interrupts whose cost (injection to the handler's end) was read
    cost_sum_ns: int
    cost_max_ns: int
    estimate_ns: int  # the running estimate at the end
    first_arrival_ns: int  # guest clock (0: none yet)
    last_ns: int  # guest clock: the device's last look
    pending: int  # arrivals not yet covered (held or waiting for one in flight)
    logged: int
    handled: int  # interrupts the guest's handler counted

    @property
    def coalesced(self) -> int:
        """Arrivals that rode on another arrival's interrupt."""
        return self.covered - self.delivered

    @property
    def lifetime_s(self) -> float:
        if not self.first_arrival_ns or self.last_ns <= self.first_arrival_ns:
            return 0.0
        return (self.last_ns - self.first_arrival_ns) / 1e9

    def rate_per_s(self, count: int) -> float:
        """``count`` per second of the load's lifetime (0 before it began)."""
        life = self.lifetime_s
        return count / life if life else 0.0


class ChannelConfigC(C.Structure):
    _fields_ = [
        ("kind", C.c_int32),
        ("vm_fd", C.c_int32),
        ("gsi", C.c_int32),
        ("kick_fd", C.c_int32),
        ("msi_address_lo", C.c_uint32),
        ("msi_data", C.c_uint32),
        ("page_address", C.c_uint64),
        ("tsc_timestamp", C.c_uint64),
        ("system_time_ns", C.c_uint64),
        ("mul", C.c_uint32),
        ("shift", C.c_int32),
        ("advance_ns", C.c_int64),
        ("target_margin_ns", C.c_int64),
        ("min_ns", C.c_int64),
        ("max_ns", C.c_int64),
        ("grow", C.c_int64),
        ("grow_shift", C.c_int64),
        ("shrink_shift", C.c_int64),
        ("max_delta_ns", C.c_uint64),
        ("look_delay_ns", C.c_uint64),
        ("log_address", C.c_uint64),
        ("log_capacity", C.c_uint64),
        ("io", IoConfig),
        ("exact", C.c_int32),  # PAGE: inject at the deadline itself (the guest cannot spin)
        ("block_fd", C.c_int32),  # PAGE: the eventfd dl_block waits on (-1: no PV idle)
    ]


class ChannelStatsC(C.Structure):
    _fields_ = [
        (name, C.c_uint64)
        for name in (
            "fired",
            "looks",
            "kicks",
            "loop_wakeups",
            "late_wakeups",
            "margins",
            "past_deadlines",
            "far_deadlines",
            "logged",
            "advance_ns",
            "failed_injections",
            "inject_errno",
            "block_wakes",
        )
    ]
