"""The paper's measurement in virtual time, through the real host timer logic.

The guest workload is the one in ``tickless/guest/src/user.c`` (N events every d, relative
or absolute deadlines, tickless or periodic), and the host side is the real
``ClockEventDevice`` on a real ``TimerQueue`` (with slop) and, for a precise channel, the
real ``HoldBackWindow``, under a virtual clock: ``GuestClock.create(10**9, 0, rate)``, so
host ticks are nanoseconds and time dilation goes through the same pvclock arithmetic.
What the platform profile supplies is what no code here can know: how long delivery takes
(drawn from its latency model) and what each device interrupt costs (its interference).

Timer paths (``spec.timer``, all of ``TimerPath``):

* ``lguest``: lguest's relative clock-event device (``ClockEventDevice``): the platform's
  delivery model; each arming is a SET_CLOCKEVENT hypercall (one exit). The only path with
  ``--mode periodic``. The paper's platforms are simulated on it (``sim/table1.py``).
* ``lapic``: the same delivery model, armed by a TSC-deadline write (one exit, no hypercall).
* ``pv``: the PV deadline device (``timers/pv_deadline.py``, the deadline loop's model):
  absolute deadlines published in the shared page; the host wakes early by ``pv_advance``,
  its interrupt goes through the same delivery model, and the guest spins to the deadline
  and reports its margin; deadlines nearer than max(advance, ``spec.spin_threshold_ns``)
  are spun to directly. The only exits are kicks (a deadline earlier than the host's
  promise) and halts; no hypercall but DONE.
* ``precise``: the dedicated channel (``PreciseTimerChannel``: the same early interrupt and
  spin, ``sim/deadline_wait.py``, but a hypercall per deadline and its own advance);
  deadlines nearer than ``spec.spin_threshold_ns`` are spun to directly. Device interrupts
  are held back in ``spec.hold_back_ns`` before the deadline (default: long enough for 99 %
  of this platform's device handlers).
* ``host``: the bare Linux profile (the host has no VMM in the way), whatever the platform.

On ``pv`` and ``precise`` the record's ``interrupt_lateness`` is when the modelled
interrupt reached the guest, before its spin, and ``spin`` the guest time spun. ``--advance
auto`` (the lapic guest spinning like pv) is not modelled: ``MeasureSpec`` refuses it here.

Time dilation (``spec.rate``): the guest's clock, so its deadlines, its tick and the I/O
device's rate, run at ``rate`` guest seconds per wall second; delivery latencies and
handler costs are the host's, in wall time. The record's host counts are per wall second.

Loads (``spec.loads``): ``idle``, or ``io``: Poisson device interrupts at
``spec.io_rate_per_s`` (per guest second) on the timer's vCPU, each costing the
interference model's bare disk handler plus the platform's per-interrupt overhead
(``spec.io_handler_ns``, the real guest's synthetic handler, is not used: the paper's disk
handler is the model's).

Deterministic for ``spec.seed``: the latency draws and the device interrupts come from
separate streams of one ``SeedSequence``, so a different load or platform keeps the same
latency draws (common random numbers).
"""

from __future__ import annotations

import numpy as np

from tickless.axes import Backend, TimerPath, Wait
from tickless.results.interrupts import SpinCost, summarize_interrupts
from tickless.results.record import build_record
from tickless.results.schema import HostCounts, ResultRecord
from tickless.results.spec import MeasurementInterrupted, MeasureSpec, Progress
from tickless.sim.counts import SimCounts
from tickless.sim.guest_run import SimulatedGuest
from tickless.sim.interference import HandlerCost, irq_rate_for_load
from tickless.sim.platforms import (
    bare_disk_handler,
    builtin_profiles,
    resolve_platform,
)
from tickless.sim.profile import PlatformProfile, SimInputError
from tickless.timers.clock import NSEC_PER_SEC

__all__ = ["SimCounts", "profile_for", "simulate", "simulate_measurement"]

HOST_PROFILE = "Linux"


def profile_for(spec: MeasureSpec) -> PlatformProfile:
    """The profile a spec runs on: the bare Linux one for the host path, else its platform."""
    if spec.timer is TimerPath.HOST:
        return builtin_profiles()[HOST_PROFILE]
    return resolve_platform(spec.platform)


def simulate_measurement(spec: MeasureSpec, progress: Progress | None = None) -> ResultRecord:
    """``tickless measure --backend sim``: the spec's run on its platform profile. Ctrl-C
    (or SIGTERM) keeps what was simulated, as the KVM backend keeps what was measured."""
    return simulate(spec, profile_for(spec), progress=progress, keep_partial=True)


def simulate(
    spec: MeasureSpec,
    profile: PlatformProfile,
    *,
    progress: Progress | None = None,
    io_rate_per_s: float | None = None,
    handler: HandlerCost | None = None,
    keep_partial: bool = False,
) -> ResultRecord:
    """One simulated run on ``profile``; ``io_rate_per_s`` overrides the load's interrupt
    rate and ``handler`` the bare disk-handler cost (both for what-if runs and fitting).
    ``keep_partial``: a KeyboardInterrupt becomes ``MeasurementInterrupted`` carrying the
    events simulated so far (callers running many rows let it propagate instead)."""
    if io_rate_per_s is None:  # the load's rate (validates the load), at the spec's --io-rate
        io_rate_per_s = spec.io_rate_per_s if irq_rate_for_load(spec.load) > 0 else 0.0
    rate = io_rate_per_s
    if rate < 0:
        raise SimInputError(f"interrupt rate must not be negative, got {rate}")
    run = SimulatedGuest(spec, profile, rate, handler or bare_disk_handler())
    try:
        timestamps = run.execute(progress)
    except KeyboardInterrupt:
        if not keep_partial:
            raise
        raise _interrupted(spec, profile, run, rate) from None
    return _record(spec, profile, run, timestamps, rate)


def _interrupted(
    spec: MeasureSpec, profile: PlatformProfile, run: SimulatedGuest, rate: float
) -> MeasurementInterrupted:
    """What an interrupted run keeps: a record of the events simulated so far, if any."""
    timestamps = list(run.timestamps)
    if len(timestamps) < 2:
        return MeasurementInterrupted(None)
    run.counts.end_ticks = run.clock.ticks_at_or_after(timestamps[-1])
    record = _record(spec, profile, run, timestamps, rate)
    record.notes.append(f"interrupted after {len(timestamps) - 1} of {spec.count} events")
    return MeasurementInterrupted(record)


def _record(
    spec: MeasureSpec,
    profile: PlatformProfile,
    run: SimulatedGuest,
    timestamps: list[int],
    irq_rate_per_s: float,
) -> ResultRecord:
    c = run.counts
    host_path = spec.timer is TimerPath.HOST
    counts = HostCounts(
        exits=0 if host_path else c.exits,
        hypercalls=0 if host_path else c.hypercalls,
        injections=0 if host_path else c.injections,
        wakeups=c.wakeups if run.waiter is None else run.waiter.host_wakeups(c.wakeups),
        timer_events=c.injections,
        duration_s=c.end_ticks / NSEC_PER_SEC,
        cpu_s=0.0,
    )
    notes = [
        f"simulated: platform profile {profile.name!r} ({profile.fitted_on.source})",
        "host CPU time is not modelled by the simulator (cpu_s = 0)",
    ]
    if host_path and spec.platform.lower() != HOST_PROFILE.lower():
        notes.append(f"timer host runs on the bare {HOST_PROFILE} profile; --platform ignored")
    if irq_rate_per_s > 0:
        notes.append(
            f"{c.io_irqs} device interrupts handled ({irq_rate_per_s:g} per guest second on "
            "the timer's CPU); "
            f"{c.blocked} timer interrupts waited for a handler, "
            f"{c.blocked_ns / max(c.blocked, 1) / 1000:.1f} us on average"
        )
    if run.waiter is not None:
        notes.extend(run.waiter.notes())
    if c.held:
        notes.append(f"the precise channel held device interrupts back {c.held} times")
    if c.starved:
        notes.append(f"{c.starved} device interrupts were still waiting when the run ended")
    if c.merged:
        notes.append(f"{c.merged} timer interrupts merged into one already pending")
    if spec.wait is Wait.SPIN:
        notes.append("wait spin: same delivery model as halt (the profile was fitted halting)")
    machine = {
        "machine": "simulated",
        "simulator": "tickless.sim.measure",
        "platform": profile.name,
        "profile_source": profile.fitted_on.source,
        "seed": str(spec.seed),
        "dilation": str(spec.rate),
        "slop_ns": str(max(spec.slop_ns, profile.host_slop_ns)),
        "io_irq_rate_per_s": f"{irq_rate_per_s:g}",
    }
    record = build_record(
        spec, Backend.SIM, np.asarray(timestamps, dtype=np.int64), counts, machine, notes
    )
    record.platform = profile.name
    if run.waiter is not None:  # pv, precise: the modelled interrupts, before the spin
        events = len(timestamps) - 1
        record.interrupt_lateness = summarize_interrupts(run.interrupt_lateness_ns)
        record.interrupt_lateness_ns = list(run.interrupt_lateness_ns)
        spin_ns = run.spin_ns
        record.spin = SpinCost(spin_ns / max(events, 1), spin_ns / 1e9 / float(spec.rate))
    return record
