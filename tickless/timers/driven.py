"""A group's clock driven from outside: lockstep with a simulator, and arrivals.

A ``DrivenTimeline`` is a ``Timeline`` (``timers/timeline.py``) that a coordinator moves:

* **arrivals** (``at``): something due at a guest time (a message a simulator delivers),
  run then, with the same care as a member's deadline;
* **lockstep** (``lockstep=True``): the clock holds (rate 0) from the start and moves only
  inside ``run_until(t)``, by warps: when every member waits, it jumps to the earliest of
  their deadlines, the arrivals and ``t``, and delivers what is due there (arrivals in the
  order given, then members in join order). Guest compute takes no guest time (the clock
  holds while any vCPU runs), so a run repeats exactly whatever the host's speed or load.
  Without lockstep the clock runs at its rate and arrivals are raised by a host timer.
* **lockstep from a point** (``engage_lockstep``): a timeline made without lockstep runs in
  real time (a Linux guest boots so: a clock held from boot would stall its calibration
  busy-waits), then holds where it stands and is driven from there on.

In lockstep a member may wait with no timer at all (``idles_without_timer``: a Linux idle
whose tick is stopped with nothing programmed): it waits for an arrival, never holds the
group back, and only an arrival (``Member.wake``) runs it again.

Pure Python and no KVM, as the timeline.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from fractions import Fraction

from tickless.errors import InputError, TicklessError
from tickless.timers.hrtimer import HostTimer, TimerBase
from tickless.timers.timeline import Timeline

RUN_UNTIL_TIMEOUT_S = 60.0  # wall time a lockstep group gets to reach its bound (default)

# Something due at a guest time (``at``): gets the host tick, may return what to run once
# every arrival due then has run (a device showing its guest a batch at once).
Arrival = Callable[[int], Callable[[], None] | None]


class LockstepStall(TicklessError):
    """A lockstep group did not reach its bound in time: a guest kept running (it never
    waited for a timer) while the clock held."""


class DrivenTimeline(Timeline):
    """A timeline a coordinator drives; see the module docstring."""

    def __init__(
        self,
        tick_hz: int,
        read_ticks: Callable[[], int],
        rate: Fraction | int = 1,
        warp_idle: bool = False,
        hold_timers: TimerBase | None = None,
        lockstep: bool = False,
    ) -> None:
        self.lockstep = lockstep  # before the clock is made: it holds from the start
        # Things due at a guest time (``at``): (due_ns, order, callback), earliest first.
        self._arrivals: list[tuple[int, int, Arrival]] = []
        self._arrival_order = itertools.count()
        self._arrival_timer = HostTimer(self._arrivals_due, name="timeline-arrivals")
        self._until_ns = 0  # lockstep: the clock never passes this
        super().__init__(tick_hz, read_ticks, rate, warp_idle, hold_timers)
        self._rested = threading.Condition(self._lock)

    # --- lockstep --------------------------------------------------------------------------

    def run_until(self, t_ns: int, timeout_s: float = RUN_UNTIL_TIMEOUT_S) -> None:
        """Let the group run until its clock reads ``t_ns`` and every member waits, and
        hold there (no guest reads a later time before the next call). The clock moves only
        by warps, so guest compute takes no guest time. Raises ``ValueError`` for a ``t_ns``
        in the past (``InputError``), ``LockstepStall`` after ``timeout_s`` of wall time; Ctrl-C
        (``KeyboardInterrupt``) leaves the clock held where it stood."""
        self.release_until(t_ns)
        self.wait_until(timeout_s)

    def release_until(self, t_ns: int) -> None:
        """``run_until``'s first half, which returns at once: a coordinator releases every
        group, then waits for each (``wait_until``), so that groups run side by side."""
        if not self.lockstep:
            raise ValueError("run_until drives a lockstep timeline (lockstep=True)")
        with self._lock:
            now_ns = self.clock.system_time_ns  # a held clock reads exactly this
            if t_ns < now_ns:
                raise InputError(f"run_until({t_ns} ns) is in the past: clock at {now_ns} ns")
            self._until_ns = t_ns
            self._lockstep_step()

    def wait_until(self, timeout_s: float = RUN_UNTIL_TIMEOUT_S) -> None:
        """``run_until``'s second half: wait until the group rests at its bound."""
        with self._lock:
            give_up = time.monotonic() + timeout_s
            while not self._at_rest():
                left = give_up - time.monotonic()
                if left <= 0:
                    busy = ", ".join(m.name for m in self._members if m.deadline_ns is None)
                    raise LockstepStall(
                        f"the group did not reach {self._until_ns} ns within {timeout_s:g} s: "
                        f"the clock holds at {self.clock.system_time_ns} ns, still running: "
                        f"{busy or '-'}"
                    )
                self._rested.wait(min(left, 0.1))

    def _at_rest(self) -> bool:
        return self.clock.system_time_ns >= self._until_ns and all(
            m.deadline_ns is not None for m in self._members
        )

    def _maybe_warp(self) -> bool:
        return self._lockstep_step() if self.lockstep else super()._maybe_warp()

    def _run_rate(self) -> Fraction:
        return Fraction(0) if self.lockstep else self.rate

    def _lockstep_step(self) -> bool:
        """While every member waits, jump to the next thing due (a deadline, an arrival, the
        bound) and deliver it there: arrivals in order, then members in join order."""
        warped = False
        while not self.frozen and all(m.deadline_ns is not None for m in self._members):
            due = [m.deadline_ns for m in self._members if m.deadline_ns is not None]
            if self._arrivals:
                due.append(self._arrivals[0][0])
            target = min([self._until_ns, *due])
            now = self.read_ticks()
            if target > self.clock.system_time_ns:
                now = self._reanchor(Fraction(0), target)
                self.warps += 1
                warped = True
            delivered = bool(self._arrivals) and self._arrivals[0][0] <= target
            # Due members are taken before the arrivals run: an arrival wakes its member
            # (``Member.wake``), whose timer due now must still be raised (a held clock arms
            # no host timer for it, and a Linux guest would wait for it forever).
            due_members = [
                m for m in self._members if m.deadline_ns is not None and m.deadline_ns <= target
            ]
            self._run_arrivals(target, now)
            for m in due_members:
                m.deadline_ns = None
                if m.deliver is not None:
                    m.deliver(now)
                delivered = True
            if not delivered:  # at the bound, everyone waiting: at rest
                self._rested.notify_all()
                break
        return warped

    def engage_lockstep(self) -> int:
        """From now on hold the clock where it stands and move it only inside
        ``run_until``, as if made with ``lockstep=True``; returns the reading it holds at.
        Idempotent. Refused while arrivals wait on host timers (they would be lost)."""
        with self._lock:
            if not self.lockstep:
                if self._arrivals:
                    raise ValueError("engage_lockstep with arrivals pending in real time")
                self.lockstep = True
                self._holding = []  # no warp's hold: the clock holds anyway
                self._reanchor(Fraction(0), 0)
                self._until_ns = self.clock.system_time_ns
            return self.clock.system_time_ns

    def start_at(self, t_ns: int) -> None:
        """Before its guests start (no guest has read the clock): the held clock reads
        ``t_ns`` from now on, so guests that start late begin at the others' time."""
        with self._lock:
            if not self.lockstep:
                raise ValueError("start_at moves a lockstep timeline's held clock")
            now_ns = self.clock.system_time_ns
            if t_ns < now_ns:
                raise InputError(f"start_at({t_ns} ns) is in the past: clock at {now_ns} ns")
            self._until_ns = t_ns
            if t_ns > now_ns:
                self._reanchor(Fraction(0), t_ns)

    def idles_without_timer(self) -> bool:
        return self.lockstep

    # --- arrivals --------------------------------------------------------------------------

    def at(self, due_ns: int, arrival: Arrival, late_runs_now: bool = False) -> None:
        """Run ``arrival(now_ticks)`` when the clock reads ``due_ns`` (a message delivered
        by a simulator): in lockstep by a warp, as a member's deadline; otherwise by a host
        timer. It must wake the member it interrupts (``Member.wake``). ValueError in the
        past, unless ``late_runs_now`` (a clock running in real time: run it at once)."""
        with self._lock:
            now_ns = self.now_ns()
            if due_ns < now_ns and late_runs_now:
                due_ns = now_ns
            if due_ns < now_ns:
                raise ValueError(f"an arrival at {due_ns} ns is in the past (clock: {now_ns} ns)")
            heapq.heappush(self._arrivals, (due_ns, next(self._arrival_order), arrival))
            if not self.lockstep:
                self._arm_arrivals()

    def drop_arrivals(self) -> None:
        """Forget every arrival not yet run (its guests are going)."""
        with self._lock:
            self._arrivals.clear()
        if self._hold_timers is not None:
            self._hold_timers.cancel(self._arrival_timer)

    def _clock_moved(self, now_ticks: int) -> None:
        if self._arrivals and not self.lockstep:
            self._arm_arrivals()

    def _arm_arrivals(self) -> None:
        """Real time: the host timer for the earliest arrival, on the clock as it is (arming
        never waits for a running expiry, so this may run under the lock)."""
        if self._hold_timers is None:
            raise ValueError("arrivals in real time need the host's timers")
        if self._arrivals and not self.clock.frozen:
            ticks = self.clock.ticks_at_or_after(self._arrivals[0][0])
            self._hold_timers.arm(self._arrival_timer, ticks)

    def _arrivals_due(self, now_ticks: int) -> None:
        """The arrivals' host timer: run what is due (by the clock as it is now), re-arm."""
        with self._lock:
            self._run_arrivals(self.now_ns(now_ticks), now_ticks)
            self._arm_arrivals()

    def _run_arrivals(self, upto_ns: int, now_ticks: int) -> None:
        """Every arrival due by ``upto_ns``, in order, then their follow-ups, each once."""
        after: dict[Callable[[], None], None] = {}  # ordered, without repeats
        while self._arrivals and self._arrivals[0][0] <= upto_ns:
            follow_up = heapq.heappop(self._arrivals)[2](now_ticks)
            if follow_up is not None:
                after[follow_up] = None
        for follow_up in after:
            follow_up()
