"""A device that raises I/O interrupts into the guest: the paper's heavy-I/O load.

Interrupts arrive as a Poisson process at ``rate_per_s`` (the paper measured 1733/s of disk
interrupts against 11.5/s idle) on the vCPU ``io_cpu`` names (the timer's by default), whose
guest handler stays busy for a configurable time with interrupts off, so they really compete
with the timer's. The device runs in the host's deadline loop (an IO channel,
``host/src/deadline_loop_io.h``): the arrivals, one interrupt in flight at a time (the
arrivals meanwhile coalesce into the next, the device's status counting them), the cost of
each interrupt as the guest reports it, and, with a precise channel, the hold-back before
its deadline are all decided there, where the precise deadline is served, with no Python in
between. Python sets the channel up and reads its counts.
"""

from __future__ import annotations

import ctypes

import numpy as np
import numpy.typing as npt

from tickless.axes import IoCpu
from tickless.devices.device import Device, MachineContext, register_device
from tickless.guest.abi import IO_VECTOR
from tickless.host.deadline_abi import IoConfig, IoLoopStats
from tickless.host.deadline_loop import ChannelKind, DeadlineLoop
from tickless.timers.clock import GuestClock
from tickless.timers.injection import HoldBack
from tickless.timers.precise import AdaptiveAdvance

RETRY_NS = 20_000  # one interrupt in flight: look again at least this much later
LOST_AFTER_NS = 1_000_000_000  # in flight this long (a guest that stopped taking them): lost
LOG_SLACK = 1024  # the event log's room beyond the expected interrupts


@register_device
class IoInterruptDevice(Device):
    """The I/O load as a device of the machine: present when ``io_rate_per_s`` > 0."""

    def __init__(self, ctx: MachineContext, loop: DeadlineLoop, hold: HoldBack) -> None:
        cfg = ctx.config
        self.ctx = ctx
        self.loop = loop
        self.hold = hold
        self.io_cpu = cfg.io_cpu
        self.rate_per_s = cfg.io_rate_per_s
        expected = cfg.io_rate_per_s * max(cfg.count, 1) * cfg.interval_ns / 1e9
        io = IoConfig(
            mean_gap_ns=max(1, round(1e9 / cfg.io_rate_per_s)),
            seed=cfg.seed,
            link=-1,
            hold_mode=int(hold.mode),
            to_ap=int(cfg.io_cpu is IoCpu.OTHER),
            window_ns=hold.window_ns,
            margin_ns=hold.margin_ns,
            initial_cost_ns=hold.initial_cost_ns,
            max_cost_ns=hold.max_cost_ns,
            max_hold_ns=hold.max_hold_ns,
            release_after_ns=hold.release_after_ns,
            late_bound_ns=hold.late_bound_ns,
            retry_ns=RETRY_NS,
            lost_after_ns=LOST_AFTER_NS,
        )
        self.channel = loop.add(
            ChannelKind.IO,
            ctx.vm.fd,
            IO_VECTOR,
            ctx.clock,
            AdaptiveAdvance(),  # unused by an IO channel
            page_address=ctypes.addressof(ctx.shared),
            log_capacity=int(2 * expected) + LOG_SLACK,
            io=io,
            apic_id=1 if cfg.io_cpu is IoCpu.OTHER else 0,
        )
        self._final: IoLoopStats | None = None
        self._final_log: npt.NDArray[np.uint64] | None = None
        ctx.timeline.subscribe(self)

    @classmethod
    def create(cls, ctx: MachineContext) -> IoInterruptDevice | None:
        cfg = ctx.config
        if cfg.io_rate_per_s <= 0:
            return None
        if ctx.deadline_loop is None or ctx.irq_routes:
            raise ValueError("the I/O load is the small guest's, served by the deadline loop")
        return cls(
            ctx,
            ctx.deadline_loop,
            HoldBack.choose(cfg.hold_back_ns, cfg.hold_back_cost, cfg.io_handler_ns),
        )

    # --- a listener of the guest's timeline: the loop's copy of the clock follows it -------

    def begin_clock_change(self) -> None:
        """Nothing to mark: the loop never reads the guest's page for the clock."""

    def clock_changed(self, clock: GuestClock, now_ticks: int) -> None:
        """The schedule is in guest time: the loop follows the re-anchored clock (nothing
        arrives while it is frozen)."""
        if self._final is None:
            self.loop.set_clock(self.channel, clock)

    @property
    def stats(self) -> IoLoopStats:
        return self._final if self._final is not None else self.loop.io_stats(self.channel)

    def event_log(self) -> npt.NDArray[np.uint64]:
        """One row per injected interrupt: ``deadline_abi.IO_EVENT_FIELDS`` (host TSC)."""
        if self._final_log is not None:
            return self._final_log
        assert self.channel.log is not None
        return self.channel.log[: self.stats.logged].copy()

    def stop(self, now_ticks: int) -> None:
        """Keep the last counts and log, then take the channel out (idempotent)."""
        if self._final is None:
            self._final_log = self.event_log()
            self._final = self.loop.io_stats(self.channel)
            self.loop.remove(self.channel)

    def close(self) -> None:
        self.stop(0)
        self.ctx.timeline.unsubscribe(self)
