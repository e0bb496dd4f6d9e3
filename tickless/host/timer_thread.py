"""The host timer thread: runs a TimerQueue against real time.

It sleeps on a timerfd until the queue's next wake-up, checks the TSC (the guest's clock
counter) so that no timer runs before its tick, and runs the expired timers' callbacks,
which inject guest interrupts. Other threads arm timers through it; an arming earlier
than the current wake-up reprograms the timerfd at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from tickless.host.realtime import RealtimePolicy, apply_to_current_thread
from tickless.host.timerfd import TimerFd
from tickless.host.tsc import TscMonotonicMap, rdtsc
from tickless.timers.hrtimer import HostTimer, TimerQueue

SPIN_LIMIT_TICKS_NS = 5_000  # woke this little too early: spin instead of sleeping again


@dataclass
class TimerThreadStats:
    wakeups: int = 0  # returns from the timerfd (host timer interrupts seen by us)
    expiries: int = 0  # timers run
    early_wakeups: int = 0  # woke before the TSC reached the wake-up tick
    late_ticks_total: int = 0  # sum over wake-ups of (TSC at wake - planned tick)
    late_ticks_max: int = 0


class HostTimerThread:
    """A real-time thread owning a TimerQueue; implements ``TimerBase`` for devices."""

    def __init__(
        self,
        tsc_hz: int,
        slop_ticks: int = 0,
        policy: RealtimePolicy | None = None,
        clock: Callable[[], int] = rdtsc,
    ) -> None:
        self.tsc_hz = tsc_hz
        self.queue = TimerQueue(slop_ticks)
        self.policy = policy or RealtimePolicy()
        self.clock = clock
        self.stats = TimerThreadStats()
        self.problems: list[str] = []
        self.native_id: int | None = None
        self._lock = threading.Lock()
        self._map = TscMonotonicMap(tsc_hz)
        self._timerfd = TimerFd()
        self._planned: int | None = None  # tick the timerfd is armed for
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="host-timer", daemon=True)
        self._spin_ticks = SPIN_LIMIT_TICKS_NS * tsc_hz // 1_000_000_000
        self.error: BaseException | None = None
        self.callback_errors: list[str] = []

    # --- TimerBase ------------------------------------------------------------------------

    def arm(self, timer: HostTimer, expires: int) -> None:
        with self._lock:
            self.queue.arm(timer, expires)
            self._reprogram_locked()

    def cancel(self, timer: HostTimer) -> bool:
        with self._lock:
            return self.queue.cancel(timer)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._timerfd.arm_at(1)  # wake it now
        self._thread.join(timeout=5)
        self._timerfd.close()

    # --- the loop -------------------------------------------------------------------------

    def _reprogram_locked(self) -> None:
        wake = self.queue.next_wakeup()
        if wake == self._planned:
            return
        self._planned = wake
        if wake is None:
            self._timerfd.arm_at(None)
        else:
            # Round up to the next microsecond: arriving a little late beats spinning.
            self._timerfd.arm_at(self._map.monotonic_ns_at(wake) + 1_000)

    def _run(self) -> None:
        self.native_id = threading.get_native_id()
        self.problems = apply_to_current_thread(self.policy)
        try:
            self._loop()
        except BaseException as exc:  # reported by whoever owns the thread
            self.error = exc

    def _loop(self) -> None:
        stats = self.stats
        while True:
            self._timerfd.wait()
            now = self.clock()
            stats.wakeups += 1
            with self._lock:
                if self._stopping:
                    return
                planned = self._planned
                if planned is not None and now < planned:
                    stats.early_wakeups += 1
                    while now < planned and planned - now <= self._spin_ticks:
                        now = self.clock()
                    if now < planned:
                        self._map.refresh()
                        self._planned = None
                        self._reprogram_locked()
                        continue
                if planned is not None:
                    late = now - planned
                    stats.late_ticks_total += late
                    stats.late_ticks_max = max(stats.late_ticks_max, late)
                due = self.queue.expire(now)
                stats.expiries += len(due)
                self._planned = None
                if stats.wakeups % 64 == 0:
                    self._map.refresh()
            for timer in due:
                try:
                    timer.callback(now)
                except Exception as exc:  # one guest's failure must not stop the others
                    self.callback_errors.append(f"{timer.name}: {exc!r}")
            with self._lock:
                self._reprogram_locked()
