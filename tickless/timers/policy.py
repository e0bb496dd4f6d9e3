"""The decision arithmetic of the host timer logic, as plain functions.

One source of truth for two callers: the classes of ``tickless.timers`` (``TimerQueue``,
``ClockEventDevice``, ``PreciseTimerChannel``, ``HoldBackWindow``) call these functions on
Python ints and lists, and the simulator compiles the very same function objects with
``numba.njit`` and calls them on int64 numpy arrays. So everything here is integers, tuples
and indexable containers: no classes, no ``None`` (flags instead), no allocation, no imports
beyond constants. numba is never imported here; ``tickless.timers`` must stay importable
without it.

The timer queue is an *indexed* binary min-heap in parallel slots: ``exp[i]`` (expiry),
``seq[i]`` (arming order, the tie-break: equal expiries run in arming order), ``ref[i]``
(which timer: a ``HostTimer`` in Python, a guest index in the simulator) and ``pos``
(timer -> slot, a dict in Python, an array in the simulator), so re-arming and cancelling
are O(log n) and every armed timer is in the heap exactly once (no stale entries, so the
slop walk needs no liveness test).

Names follow Linux's ``kernel/time/`` where it has the same operation (``hrtimer_forward``);
the rest are ours: Linux clamps deltas where the guest ABI refuses them, and keeps timers
in an rbtree (``timerqueue``) where we keep a heap that numba can compile.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from tickless.guest.abi import EINVAL, ETIME, MAX_DELTA_NS, MIN_DELTA_NS, MIN_PERIOD_NS

T = TypeVar("T")
K_contra = TypeVar("K_contra", contravariant=True)


class Slots(Protocol[T]):
    """A fixed-size indexable container: a Python list or a numpy array."""

    def __getitem__(self, i: int, /) -> T: ...

    def __setitem__(self, i: int, value: T, /) -> None: ...


class Positions(Protocol[K_contra]):
    """timer -> heap slot: a dict keyed by ``HostTimer`` or an int array keyed by index."""

    def __setitem__(self, key: K_contra, value: int, /) -> None: ...


# --- the clock-event device and the precise channel ------------------------------------------


def check_max_delta(delta_ns: int) -> int:
    """-EINVAL for an interval longer than a device may be programmed for, else 0 (Linux
    clamps to ``max_delta_ns`` instead; refusing tells the guest its request was odd)."""
    return -EINVAL if delta_ns > MAX_DELTA_NS else 0


def check_delta(delta_ns: int) -> int:
    """0 when ``delta_ns`` may be programmed (0 cancels), else the negative errno the guest
    gets: -EINVAL out of range, -ETIME below ``MIN_DELTA_NS`` (lguest's answer)."""
    if delta_ns < 0:
        return -EINVAL
    if 0 < delta_ns < MIN_DELTA_NS:
        return -ETIME
    return check_max_delta(delta_ns)


def check_period(period_ns: int) -> int:
    """0 when a periodic tick of ``period_ns`` may be programmed (0 stops it), else -EINVAL."""
    if period_ns == 0:
        return 0
    if period_ns < MIN_PERIOD_NS:
        return -EINVAL
    return check_max_delta(period_ns)


def check_deadline(deadline_ns: int, now_ns: int) -> int:
    """0 when an absolute deadline may be programmed, else the negative errno: -ETIME when
    it is not in the future (as ``clockevents_program_event`` answers; the guest runs the
    event itself), -EINVAL when it is further than ``MAX_DELTA_NS``. No minimum: the
    precise channel wakes early and the guest spins to the deadline."""
    delta_ns = deadline_ns - now_ns
    if delta_ns <= 0:
        return -ETIME
    return check_max_delta(delta_ns)


def oneshot_deadline_ns(now_ns: int, delta_ns: int) -> int:
    """The absolute deadline on the guest's clock of an event ``delta_ns`` from now.

    lguest's rule: "now" is the guest's clock when the host handles the hypercall, so any
    delay before that moment is part of the interval (never early, possibly late)."""
    return now_ns + delta_ns


def hrtimer_forward(expires_ns: int, now_ns: int, interval_ns: int) -> tuple[int, int]:
    """Linux's ``hrtimer_forward(timer, now, interval)`` for a periodic expiry handled at
    ``now_ns``: (the next expiry, ticks skipped).

    The next expiry stays on the grid ``expires + k * interval`` and lies after now; ticks
    the host missed while late are skipped (and counted), not delivered in a burst. Linux
    returns the overrun count ``orun``, the number of intervals the expiry moved (1 when
    on time); the ticks skipped are ``orun - 1``. Unlike Linux, an expiry still in the
    future moves by one interval too (a device calls this only once it has expired)."""
    next_ns = expires_ns + interval_ns
    skipped = 0
    if next_ns <= now_ns:
        skipped = (now_ns - next_ns) // interval_ns + 1
        next_ns += skipped * interval_ns
    return next_ns, skipped


# --- injection ------------------------------------------------------------------------------


def hold_back_release_ns(
    now_ns: int, precise_deadline_ns: int, window_ns: int, has_deadline: bool
) -> int:
    """When an ordinary interrupt raised at ``now_ns`` may go in: at once, unless it falls in
    ``[deadline - window, deadline]`` of a pending precise event, then at that deadline."""
    if not has_deadline or window_ns == 0:
        return now_ns
    if precise_deadline_ns - window_ns <= now_ns <= precise_deadline_ns:
        return precise_deadline_ns
    return now_ns


# --- the host timer queue: an indexed min-heap on (exp, seq) ---------------------------------


def heap_sift_up(exp: Slots[int], seq: Slots[int], ref: Slots[T], pos: Positions[T], i: int) -> int:
    """Move slot ``i`` up past every ancestor it runs before; returns its final slot.

    A hole moves instead of swapping pairs, so each level costs one copy and one ``pos``
    write (this is the hot loop of both the timer thread and the simulator)."""
    e, s, r = exp[i], seq[i], ref[i]
    while i > 0:
        parent = (i - 1) >> 1
        pe = exp[parent]
        if pe < e or (pe == e and seq[parent] < s):
            break
        exp[i] = pe
        seq[i] = seq[parent]
        ref[i] = ref[parent]
        pos[ref[i]] = i
        i = parent
    exp[i] = e
    seq[i] = s
    ref[i] = r
    pos[r] = i
    return i


def heap_sift_down(
    exp: Slots[int], seq: Slots[int], ref: Slots[T], pos: Positions[T], n: int, i: int
) -> int:
    """Move slot ``i`` down below every descendant that runs before it; returns its slot."""
    e, s, r = exp[i], seq[i], ref[i]
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        ce = exp[child]
        right = child + 1
        if right < n:
            re = exp[right]
            if re < ce or (re == ce and seq[right] < seq[child]):
                child = right
                ce = re
        if e < ce or (e == ce and s < seq[child]):
            break
        exp[i] = ce
        seq[i] = seq[child]
        ref[i] = ref[child]
        pos[ref[i]] = i
        i = child
    exp[i] = e
    seq[i] = s
    ref[i] = r
    pos[r] = i
    return i


def heap_push(
    exp: Slots[int],
    seq: Slots[int],
    ref: Slots[T],
    pos: Positions[T],
    n: int,
    expires: int,
    order: int,
    timer: T,
) -> int:
    """Put ``timer`` in slot ``n`` (which must exist) and restore order; returns the new n."""
    exp[n] = expires
    seq[n] = order
    ref[n] = timer
    pos[timer] = n
    heap_sift_up(exp, seq, ref, pos, n)
    return n + 1


def heap_rekey(
    exp: Slots[int],
    seq: Slots[int],
    ref: Slots[T],
    pos: Positions[T],
    n: int,
    i: int,
    expires: int,
    order: int,
) -> None:
    """Re-arm the timer in slot ``i``: new expiry and arming order, then restore order.

    The same as removing it and pushing it again (``order`` is the newest), in one sift."""
    exp[i] = expires
    seq[i] = order
    if heap_sift_up(exp, seq, ref, pos, i) == i:
        heap_sift_down(exp, seq, ref, pos, n, i)


def heap_remove(
    exp: Slots[int], seq: Slots[int], ref: Slots[T], pos: Positions[T], n: int, i: int
) -> int:
    """Take slot ``i`` out (the last slot fills the hole); returns the new n.

    The removed timer's ``pos`` entry is left to the caller (a dict deletes it, an array
    marks it -1), and slot ``n - 1`` is garbage afterwards."""
    last = n - 1
    if i != last:
        exp[i] = exp[last]
        seq[i] = seq[last]
        ref[i] = ref[last]
        pos[ref[i]] = i
        if heap_sift_up(exp, seq, ref, pos, i) == i:
            heap_sift_down(exp, seq, ref, pos, last, i)
    return last


def slop_wakeup(exp: Slots[int], n: int, slop: int) -> int:
    """When the host should wake for a non-empty heap: Xen's ``timer_slop``.

    Not at the earliest expiry but at the latest one no more than ``slop`` after it, so
    one wake-up runs them all: no timer runs early, none more than ``slop`` late."""
    earliest = exp[0]
    if slop == 0 or n == 1:
        return earliest
    return heap_latest_within(exp, n, earliest + slop, earliest)


def heap_latest_within(exp: Slots[int], n: int, limit: int, latest: int) -> int:
    """The latest expiry in the heap no later than ``limit`` (``latest`` if none is later).

    Walks only the part of the heap inside the window (a subtree holding the root, by the
    heap order), without a stack: down to a child in the window, else on to the next
    sibling or an ancestor's next sibling."""
    if n == 0 or exp[0] > limit:
        return latest
    i = 0
    while True:
        if exp[i] > latest:
            latest = exp[i]
        child = 2 * i + 1
        if child < n and exp[child] <= limit:
            i = child
            continue
        if child + 1 < n and exp[child + 1] <= limit:
            i = child + 1
            continue
        while True:  # i's subtree is done: the next sibling in the window, or climb
            if i == 0:
                return latest
            if i & 1 and i + 1 < n and exp[i + 1] <= limit:
                i += 1
                break
            i = (i - 1) >> 1
