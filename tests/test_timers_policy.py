"""The shared decision arithmetic (``tickless.timers.policy``), in plain Python: the heap
keeps its order under any sequence of operations, the slop choice is Xen's rule, periodic
deadlines stay on their grid, and the classes really call these functions."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickless.guest.abi import EINVAL, ETIME, MAX_DELTA_NS, MIN_DELTA_NS, MIN_PERIOD_NS
from tickless.timers import policy
from tickless.timers.clock import GuestClock
from tickless.timers.clockevents import ClockEventDevice
from tickless.timers.hrtimer import HostTimer, TimerQueue
from tickless.timers.injection import HoldBackWindow
from tickless.timers.precise import PreciseTimerChannel


class Heap:
    """The policy heap on Python lists, with a dict for positions, as TimerQueue holds it."""

    def __init__(self) -> None:
        self.exp: list[int] = []
        self.seq: list[int] = []
        self.ref: list[str] = []
        self.pos: dict[str, int] = {}
        self.order = 0

    def arm(self, name: str, expires: int) -> None:
        n = len(self.exp)
        if name in self.pos:
            i = self.pos[name]
            policy.heap_rekey(self.exp, self.seq, self.ref, self.pos, n, i, expires, self.order)
        else:
            self.exp.append(0)
            self.seq.append(0)
            self.ref.append("")
            policy.heap_push(self.exp, self.seq, self.ref, self.pos, n, expires, self.order, name)
        self.order += 1

    def remove(self, name: str) -> None:
        i = self.pos.pop(name)
        policy.heap_remove(self.exp, self.seq, self.ref, self.pos, len(self.exp), i)
        for slots in (self.exp, self.seq, self.ref):
            slots.pop()

    def check(self, model: dict[str, tuple[int, int]]) -> None:
        """Heap order holds, positions are right, and it holds exactly the model."""
        n = len(self.exp)
        for i in range(1, n):
            parent = (i - 1) // 2
            assert (self.exp[parent], self.seq[parent]) < (self.exp[i], self.seq[i])
        assert {r: i for i, r in enumerate(self.ref)} == self.pos
        assert {r: (self.exp[i], self.seq[i]) for i, r in enumerate(self.ref)} == model


heap_ops = st.lists(
    st.tuples(st.sampled_from(["arm", "remove"]), st.integers(0, 7), st.integers(0, 50)),
    max_size=80,
)


@settings(max_examples=300)
@given(heap_ops)
def test_heap_against_model(program: list[tuple[str, int, int]]) -> None:
    """Any mix of push, re-key and remove keeps the heap ordered on (expiry, arming) and
    ``pos`` exact; emptying it yields the model's timers in that order."""
    heap, model = Heap(), {}
    for op, k, value in program:
        name = f"t{k}"
        if op == "arm":
            model[name] = (value, heap.order)
            heap.arm(name, value)
        elif name in model:
            del model[name]
            heap.remove(name)
        heap.check(model)
    popped = []
    while heap.exp:
        popped.append((heap.exp[0], heap.seq[0]))
        heap.remove(heap.ref[0])
    assert popped == sorted(model.values())


@settings(max_examples=300)
@given(
    st.lists(st.integers(0, 1000), min_size=1, max_size=60),
    st.integers(0, 300),
    st.integers(-10, 1200),
)
def test_slop_choice_is_xens_rule(expiries: list[int], slop: int, limit: int) -> None:
    """slop_wakeup = the latest expiry within slop of the earliest; heap_latest_within =
    the latest expiry no later than any limit: the walk sees every one in the window."""
    heap = Heap()
    for i, e in enumerate(expiries):
        heap.arm(f"t{i}", e)
    n, earliest = len(heap.exp), min(expiries)
    assert policy.slop_wakeup(heap.exp, n, slop) == max(e for e in expiries if e <= earliest + slop)
    inside = [e for e in expiries if e <= limit]
    assert policy.heap_latest_within(heap.exp, n, limit, -1) == max(inside, default=-1)


@given(
    st.integers(-(10**12), 10**12),
    st.integers(MIN_PERIOD_NS, 10**9),
    st.integers(0, 10**12),
)
def test_hrtimer_forward_stays_on_grid(last: int, period: int, late: int) -> None:
    """The next tick lies after now, on the grid last + k*period, no more than a period
    ahead; the ticks skipped in between are counted (Linux's overrun count minus one)."""
    now = last + late
    nxt, skipped = policy.hrtimer_forward(last, now, period)
    assert now < nxt <= now + period
    assert (nxt - last) % period == 0
    assert skipped == (nxt - last) // period - 1


@pytest.mark.parametrize(
    ("period", "code"),
    [
        (0, 0),
        (MIN_PERIOD_NS, 0),
        (MIN_PERIOD_NS - 1, -EINVAL),
        (-1, -EINVAL),
        (MAX_DELTA_NS, 0),
        (MAX_DELTA_NS + 1, -EINVAL),
    ],
)
def test_check_period(period: int, code: int) -> None:
    assert policy.check_period(period) == code


def test_check_delta_edges() -> None:
    assert policy.check_delta(MIN_DELTA_NS - 1) == -ETIME
    assert policy.check_delta(MIN_DELTA_NS) == 0
    assert policy.check_delta(-1) == -EINVAL


@pytest.mark.parametrize(
    ("delta", "code"),
    [
        (-(10**9), -ETIME),
        (0, -ETIME),
        (1, 0),
        (MIN_DELTA_NS - 1, 0),  # no minimum: the guest spins to the deadline
        (MAX_DELTA_NS, 0),
        (MAX_DELTA_NS + 1, -EINVAL),
    ],
)
def test_check_deadline(delta: int, code: int) -> None:
    """An absolute deadline: past or now is -ETIME, beyond the maximum delta -EINVAL."""
    now_ns = 7 * 10**12
    assert policy.check_deadline(now_ns + delta, now_ns) == code


def test_classes_call_the_shared_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    """TimerQueue, ClockEventDevice, PreciseTimerChannel and HoldBackWindow decide through
    ``policy``: replace its functions and the classes' answers change with them."""
    calls: list[str] = []

    def spy(name: str):  # type: ignore[no-untyped-def]
        real = getattr(policy, name)

        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(name)
            return real(*args, **kwargs)

        monkeypatch.setattr(policy, name, wrapper)

    for name in (
        "check_delta",
        "check_period",
        "check_deadline",
        "oneshot_deadline_ns",
        "hrtimer_forward",
        "hold_back_release_ns",
        "heap_push",
        "heap_remove",
        "slop_wakeup",
    ):
        spy(name)
    queue = TimerQueue(slop_ticks=10)
    clock = GuestClock.create(10**9, now_ticks=0)
    dev = ClockEventDevice(clock, queue, lambda now: None)
    dev.set_periodic(MIN_PERIOD_NS, 0)
    other = HostTimer(lambda now: None)
    queue.arm(other, 5)
    assert queue.next_wakeup() == 5
    for timer in queue.expire(MIN_PERIOD_NS):
        timer.callback(MIN_PERIOD_NS)
    dev.set_next_event(1000, MIN_PERIOD_NS)
    PreciseTimerChannel(clock, queue, lambda now: None).set_deadline(10**6, 0, None)
    HoldBackWindow(100).release_at(950, 1000)
    assert set(calls) == {
        "check_delta",
        "check_period",
        "check_deadline",
        "oneshot_deadline_ns",
        "hrtimer_forward",
        "hold_back_release_ns",
        "heap_push",
        "heap_remove",
        "slop_wakeup",
    }


def test_timers_import_without_numba() -> None:
    """tickless.timers stays free of numba (only tickless.sim may import it)."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'numba' or name.startswith('numba.'):\n"
        "            raise ImportError('numba blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import tickless.timers.policy, tickless.timers.hrtimer, tickless.timers.clockevents\n"
        "import tickless.timers.injection, tickless.timers.precise\n"
        "assert 'numba' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
