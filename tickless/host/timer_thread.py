"""The host timer thread: runs a TimerQueue against real time.

It sleeps on a timerfd until the queue's next wake-up, checks the TSC (the guest's clock
counter) so that no timer runs before its tick, and runs the expired timers' callbacks,
which inject guest interrupts. Other threads arm timers through it; an arming earlier
than the current wake-up reprograms the timerfd at once.

Callbacks run outside the lock, one at a time, as Linux's ``__run_hrtimer`` runs them:
a timer is *running* from the moment its callback starts until it returns, and
``cancel`` (``hrtimer_cancel``) waits for a running callback of that timer, so a device
changing state from the vCPU thread cannot race its own expiry. Timers taken in one
wake-up but not yet started can still be cancelled or re-armed, and then do not run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tickless.host.realtime import RealtimePolicy, apply_to_current_thread, scheduling_of
from tickless.host.timerfd import TimerFd
from tickless.host.tsc import TscMonotonicMap, rdtsc
from tickless.timers.hrtimer import HostTimer, TimerQueue

SPIN_LIMIT_NS = 5_000  # woke this little too early: spin instead of sleeping again
RESYNC_EVERY_WAKEUPS = 64  # re-pair the TSC with CLOCK_MONOTONIC this often
ROUND_UP_NS = 1_000  # arm the timerfd this much late: arriving late beats spinning


class Waker(Protocol):
    """How the thread sleeps until a host tick: a timerfd on real hardware, a fake in
    tests (the seam that lets the loop run on a fake clock)."""

    def arm_at(self, ticks: int | None) -> None:
        """Wake at host tick ``ticks`` (in the past: at once); None: not at all."""

    def wake_now(self) -> None: ...

    def wait(self) -> None: ...

    def resync(self) -> None:
        """Re-pair the tick counter with the clock the sleep is timed on."""

    def close(self) -> None: ...


class TimerFdWaker:
    """A CLOCK_MONOTONIC timerfd, armed at TSC ticks through a TSC/monotonic pairing."""

    def __init__(self, tsc_hz: int) -> None:
        self._map = TscMonotonicMap(tsc_hz)
        self._timerfd = TimerFd()

    def arm_at(self, ticks: int | None) -> None:
        if ticks is None:
            self._timerfd.arm_at(None)
        else:
            self._timerfd.arm_at(self._map.monotonic_ns_at(ticks) + ROUND_UP_NS)

    def wake_now(self) -> None:
        self._timerfd.arm_at(1)

    def wait(self) -> None:
        self._timerfd.wait()

    def resync(self) -> None:
        self._map.refresh()

    def close(self) -> None:
        self._timerfd.close()


@dataclass
class TimerThreadStats:
    wakeups: int = 0  # returns from the timerfd (host timer interrupts seen by us)
    expiries: int = 0  # timer callbacks run
    early_wakeups: int = 0  # woke before the TSC reached the wake-up tick
    late_ticks_total: int = 0  # sum over wake-ups of (TSC at wake - planned tick)
    late_ticks_max: int = 0
    cancel_waits: int = 0  # cancels that waited for the timer's running callback


class HostTimerThread:
    """A real-time thread owning a TimerQueue; implements ``TimerBase`` for devices.

    ``clock`` reads host ticks (the TSC) and ``waker`` sleeps until one; tests pass fakes
    and drive the loop with ``run_once`` instead of ``start``."""

    def __init__(
        self,
        tsc_hz: int,
        slop_ticks: int = 0,
        policy: RealtimePolicy | None = None,
        clock: Callable[[], int] = rdtsc,
        waker: Waker | None = None,
    ) -> None:
        self.tsc_hz = tsc_hz
        self.queue = TimerQueue(slop_ticks)
        self.policy = policy or RealtimePolicy()
        self.clock = clock
        self.stats = TimerThreadStats()
        self.problems: list[str] = []
        self.native_id: int | None = None
        self.error: BaseException | None = None
        self.callback_errors: list[str] = []
        self._cond = threading.Condition()  # guards everything below
        self._waker: Waker = waker if waker is not None else TimerFdWaker(tsc_hz)
        self._planned: int | None = None  # tick the waker is armed for
        self._stopping = False
        self._taken: set[HostTimer] = set()  # expired this wake-up, callback not started
        self._running: HostTimer | None = None
        self._running_thread: int | None = None
        self._finished = 0  # callbacks returned so far (tells a waiter its callback ended)
        self._thread = threading.Thread(target=self._run, name="host-timer", daemon=True)
        self._spin_ticks = SPIN_LIMIT_NS * tsc_hz // 1_000_000_000

    # --- TimerBase ------------------------------------------------------------------------

    def arm(self, timer: HostTimer, expires: int) -> None:
        """``hrtimer_start``: (re)arm ``timer``; an expiry taken but not started is dropped."""
        with self._cond:
            self._taken.discard(timer)
            self.queue.arm(timer, expires)
            self._reprogram_locked()

    def cancel(self, timer: HostTimer) -> bool:
        """``hrtimer_cancel``: disarm ``timer`` and wait until its callback is not running
        (disarming again whatever the callback re-armed); returns whether an expiry was
        stopped. Called from the timer's own callback it cannot wait: it only disarms."""
        with self._cond:
            cancelled = self._try_to_cancel_locked(timer)
            while self._running is timer and self._running_thread != threading.get_ident():
                self.stats.cancel_waits += 1
                finished = self._finished
                while self._running is timer and self._finished == finished:
                    self._cond.wait()
                cancelled = self._try_to_cancel_locked(timer) or cancelled
            return cancelled

    def _try_to_cancel_locked(self, timer: HostTimer) -> bool:
        if timer in self._taken:
            self._taken.discard(timer)
            return True
        return self.queue.cancel(timer)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    @property
    def scheduling(self) -> str:
        """The policy the thread runs under, as the kernel reports it (not as asked)."""
        return scheduling_of(self.native_id if self._thread.is_alive() else None)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._waker.wake_now()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)
        self._waker.close()

    # --- the loop -------------------------------------------------------------------------

    def _reprogram_locked(self) -> None:
        wake = self.queue.next_wakeup()
        if wake == self._planned:
            return
        self._planned = wake
        self._waker.arm_at(wake)

    def _run(self) -> None:
        self.problems = apply_to_current_thread(self.policy)
        self.native_id = threading.get_native_id()  # once set, its scheduling is final
        try:
            while self.run_once():
                pass
        except BaseException as exc:  # reported by whoever owns the thread
            self.error = exc

    def run_once(self) -> bool:
        """One wake-up: sleep, take the timers due, run their callbacks; False once the
        thread is stopping."""
        self._waker.wait()
        now = self.clock()
        self.stats.wakeups += 1
        with self._cond:
            if self._stopping:
                return False
            now, due = self._take_due_locked(now)
        for timer in due:
            self._run_callback(timer, now)
        with self._cond:
            self._reprogram_locked()
        return True

    def _take_due_locked(self, now: int) -> tuple[int, list[HostTimer]]:
        """Take the timers due at ``now`` (spinning to the planned tick when woken just
        early, sleeping again when woken too early); returns the tick they run at."""
        stats = self.stats
        planned = self._planned
        if planned is not None and now < planned:
            stats.early_wakeups += 1
            while now < planned and planned - now <= self._spin_ticks:
                now = self.clock()
            if now < planned:
                self._waker.resync()
                self._planned = None
                self._reprogram_locked()
                return now, []
        if planned is not None:
            late = now - planned
            stats.late_ticks_total += late
            stats.late_ticks_max = max(stats.late_ticks_max, late)
        due = self.queue.expire(now)
        self._taken.update(due)
        self._planned = None
        if stats.wakeups % RESYNC_EVERY_WAKEUPS == 0:
            self._waker.resync()
        return now, due

    def _run_callback(self, timer: HostTimer, now: int) -> None:
        """Run one taken timer's callback, unless it was cancelled or re-armed meanwhile."""
        with self._cond:
            if timer not in self._taken:
                return
            self._taken.discard(timer)
            self._running = timer
            self._running_thread = threading.get_ident()
            self.stats.expiries += 1
        try:
            timer.callback(now)
        except Exception as exc:  # one guest's failure must not stop the others
            self.callback_errors.append(f"{timer.name}: {exc!r}")
        finally:
            with self._cond:
                self._running = None
                self._running_thread = None
                self._finished += 1
                self._cond.notify_all()
