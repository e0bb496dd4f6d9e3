"""The PV deadline device's host rules, pure Python: its advance, its look rule, and one
PAGE channel of the deadline loop run on a ``TimerBase`` (the simulator's model of
``host/src/deadline_loop.c``).

The guest publishes its next absolute deadline (guest PV clock) in its shared page; the
host promises in ``pv_host_armed_ns`` the earliest deadline it will see in time, and the
guest exits ("kicks") only when its new deadline is earlier than that promise. The host
wakes early by an adaptive advance and raises the interrupt; the guest reports how early
it woke (its margin) and spins the rest. After each expiry the host looks at the page
again at ``deadline + look_offset(...)``, so a steady stream re-arms without exits.

The C loop is the real host; these definitions are the one source for its parameters
(``devices/pv_deadline.py`` takes ``pv_advance`` from here) and tests hold ``look_offset``
against the C ``dl_look_offset``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tickless.guest.abi import MAX_DELTA_NS
from tickless.timers.clock import GuestClock
from tickless.timers.hrtimer import HostTimer, TimerBase
from tickless.timers.precise import AdaptiveAdvance

LOOK_DELAY_NS = 2_000  # no steady interval yet: look this long after the deadline
LOOK_INTERVALS = 16  # a steady guest's interval: the shortest of this many (DL_INTERVALS)
LOOK_GUARD_NS = 3_000  # look this much before a steady guest's next wake-up (< SPIN_LIMIT_NS)
SPIN_LIMIT_NS = 4_000  # the loop spins to a wake-up this near instead of sleeping


def pv_advance() -> AdaptiveAdvance:
    """The PV device's advance, tuned per guest from its margins. A late wake-up adds 1/128
    of its shortfall and an early one removes 1/32 of its surplus (the precise channel adds
    a late one's whole shortfall), so the advance settles a little below the wake-up
    chain's mean, not at its envelope: every microsecond of advance is spun by the guest,
    and with more guests than CPUs spinning guests lengthen each other's chains. Measured
    with ten 1 kHz guests on two cores: an envelope-chasing advance cost 40 % of a core more
    than the LAPIC timer, this one a little less (medians 96 % against 101 %), at a fifth of
    its lateness. Deadlines nearer
    than the spin threshold are spun to anyway (``user.c: pv_wait``)."""
    return AdaptiveAdvance(advance_ns=50_000, target_margin_ns=2_000, grow_shift=7, max_ns=200_000)


def look_offset(
    intervals_ns: Sequence[int], advance_ns: int, look_delay_ns: int = LOOK_DELAY_NS
) -> int:
    """How long after an expired deadline the host reads the page again (C
    ``dl_look_offset``). With a steady interval (the shortest recent one: a late event
    lengthens the next interval of a relative stream, never shortens it), just before the
    next expiry is due, so the guest's next deadline is rarely earlier than the promise
    (look + advance); otherwise ``look_delay_ns`` after the deadline. A slot not filled yet
    is 0 and ignored: one interval seen is already an estimate."""
    est = min((i for i in intervals_ns if i), default=None)
    if est is None:
        return look_delay_ns
    guard = min(est // 8, LOOK_GUARD_NS)
    if est > advance_ns + guard + look_delay_ns:
        return est - advance_ns - guard
    return look_delay_ns


@dataclass
class PvPage:
    """The ``pv_*`` fields of the guest's shared page (``guest/abi.py``)."""

    deadline_ns: int = 0  # guest: its next deadline, absolute (0: none)
    host_armed_ns: int = 0  # host: the earliest deadline it will see in time (0: none)
    margin_ns: int = 0  # guest: deadline - wake-up of the last early interrupt
    margin_seq: int = 0  # guest: bumped after each margin
    advance_ns: int = 0  # host: its advance now (the guest spins below it)


@dataclass
class PvStats:
    """What the loop did for the channel (the C ``struct dl_stats`` it models)."""

    fired: int = 0  # interrupts raised
    looks: int = 0  # scheduled looks at the page after an expiry
    kicks: int = 0  # guest kicks (exits) received
    wakeups: int = 0  # loop wake-ups: timer expiries it slept for, and kicks
    late_wakeups: int = 0  # the loop woke only after the deadline itself
    margins: int = 0  # guest margins folded into the advance


class PvDeadlineChannel:
    """One guest's PAGE channel: reads the page at kicks, looks and expiries, raises the
    interrupt ``advance`` early and keeps the promise in ``page.host_armed_ns``."""

    def __init__(
        self,
        clock: GuestClock,
        timers: TimerBase,
        raise_interrupt: Callable[[int], None],
        page: PvPage | None = None,
        advance: AdaptiveAdvance | None = None,
        look_delay_ns: int = LOOK_DELAY_NS,
    ) -> None:
        self.clock = clock
        self.timers = timers
        self.raise_interrupt = raise_interrupt
        self.page = page or PvPage()
        self.advance = advance or pv_advance()
        self.look_delay_ns = look_delay_ns
        self.stats = PvStats()
        self.pending_ns = 0  # the deadline armed (0: none)
        self.last_fired_ns = self.page.deadline_ns
        self.look_ns = 0  # when to read the page again after an expiry (0: not scheduled)
        self.intervals_ns: deque[int] = deque([0] * LOOK_INTERVALS, maxlen=LOOK_INTERVALS)
        self.margin_seq = self.page.margin_seq
        self.page.advance_ns = self.advance.advance_ns
        self.page.host_armed_ns = 0
        self.timer = HostTimer(self._expired, name="pv-deadline")
        self._sleeps = True  # whether the armed wake-up is far enough to sleep for

    def kick(self, now_ticks: int) -> None:
        """The guest's kick (an ioeventfd exit) wakes the loop, which reads the page."""
        self.stats.kicks += 1
        self.stats.wakeups += 1
        self.process(now_ticks)

    def _expired(self, now_ticks: int) -> None:
        self.stats.wakeups += int(self._sleeps)
        self.process(now_ticks)

    def process(self, now_ticks: int) -> None:
        """The C ``process``: look, read the page, fire what is due, promise, re-arm."""
        now_ns = self.clock.ns_at(now_ticks)
        if self.look_ns and now_ns >= self.look_ns:
            self.look_ns = 0
            self.stats.looks += 1
        self._read_page(now_ns)
        advance = self.advance.advance_ns
        if self.pending_ns and now_ns + advance >= self.pending_ns:
            self._fire(now_ticks, now_ns)
        if self.pending_ns:
            wake_ns, promise = self.pending_ns - advance, self.pending_ns
        elif self.look_ns:
            wake_ns, promise = self.look_ns, self.look_ns + advance
        else:
            wake_ns, promise = None, 0
        self.page.host_armed_ns = promise
        if wake_ns is None:
            self.timers.cancel(self.timer)
            return
        self._sleeps = wake_ns - now_ns > SPIN_LIMIT_NS
        self.timers.arm(self.timer, max(self.clock.ticks_at_or_after(wake_ns), now_ticks))

    def _read_page(self, now_ns: int) -> None:
        """What the guest published: a new margin tunes the advance; the deadline (clamped
        to ``MAX_DELTA_NS`` ahead, never one already fired) becomes the pending one."""
        page = self.page
        if page.margin_seq != self.margin_seq:
            self.margin_seq = page.margin_seq
            page.advance_ns = self.advance.update(page.margin_ns)
            self.stats.margins += 1
        deadline = page.deadline_ns
        self.pending_ns = 0
        if deadline == 0 or deadline == self.last_fired_ns:
            return
        if deadline > now_ns + MAX_DELTA_NS:  # far: look again then
            if not self.look_ns or self.look_ns > now_ns + MAX_DELTA_NS:
                self.look_ns = now_ns + MAX_DELTA_NS
            return
        self.pending_ns = deadline

    def _fire(self, now_ticks: int, now_ns: int) -> None:
        deadline = self.pending_ns
        self.raise_interrupt(now_ticks)
        self.stats.fired += 1
        if now_ns >= deadline:
            self.stats.late_wakeups += 1
        self.pending_ns = 0
        if self.last_fired_ns and deadline > self.last_fired_ns:
            self.intervals_ns.append(deadline - self.last_fired_ns)
        self.look_ns = deadline + look_offset(
            self.intervals_ns, self.advance.advance_ns, self.look_delay_ns
        )
        self.last_fired_ns = deadline
