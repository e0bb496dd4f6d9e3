"""Bending time in real guests (kvm marker): dilation measured against the wall clock, a
rate changed while a guest runs, freeze and thaw (by the API and by Ctrl-Z), a periodic
tick across a freeze, the idle warp; and the combinations refused before anything runs
(no KVM needed).

Nothing here depends on how fast or how loaded the host is: guest-time assertions are
exact (no event early, counts), and where the wall clock matters it is read on both sides
of a guest-clock read (``bracket``), so the guest clock's rate is checked between two
bounds a descheduled test thread only widens. How long things take is a figure:
``benchmarks/bending_time.py`` prints it.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from click.testing import CliRunner

from tickless.axes import TickMode, TimerPath
from tickless.backends import measure
from tickless.cli import main
from tickless.devices.config import GuestConfig
from tickless.devices.lguest_clockevent import LguestClockEventDevice
from tickless.errors import InputError
from tickless.host.tsc import rdtsc
from tickless.results.spec import MeasureSpec
from tickless.timers.timeline import TimelineTotals
from tickless.vmm.host import VmmHost
from tickless.vmm.machine import GuestMachine

MS = 1_000_000
S = 1_000_000_000
BOOT_TIMEOUT_S = 120.0  # conditions waited for, generous: a loaded host is slow
RUN_TIMEOUT_S = 300.0


@dataclass
class Run:
    """What a guest left behind, read before its memory went."""

    ok: bool
    reason: str
    timestamps: npt.NDArray[np.int64]  # guest ns: the reference, then one per event
    ready_to_end_s: float  # wall time from the workload's start to the guest's end
    ended_at: float  # time.monotonic() at the guest's end
    totals: TimelineTotals
    extra: dict[str, object]

    @property
    def intervals(self) -> npt.NDArray[np.int64]:
        return np.diff(self.timestamps)


def run_guest(
    config: GuestConfig, during: Callable[[GuestMachine], dict[str, object]] | None = None
) -> Run:
    """Boot ``config``, start it, wait for its workload to begin, call ``during`` (on this
    thread, while the guest runs on its own), wait for its end."""
    with VmmHost() as host:
        machine = host.boot(config)
        machine.start()
        end = time.monotonic() + BOOT_TIMEOUT_S
        while not int(machine.shared.ready):
            assert machine.running, machine.outcome.reason
            assert time.monotonic() < end, "the guest did not start its workload"
            time.sleep(0.0005)
        ready = time.monotonic()
        extra = during(machine) if during is not None else {}
        done = machine.join(RUN_TIMEOUT_S)
        ended = time.monotonic()
        if not done:
            machine.request_stop("test timed out")
            machine.join(5)
        outcome = machine.outcome
        events = outcome.events if outcome.ok else machine.events_recorded
        stamps = machine.timestamps_ns(events) if events else np.zeros(0, np.int64)
        return Run(
            ok=done and outcome.ok,
            reason=outcome.reason,
            timestamps=np.array(stamps, dtype=np.int64),
            ready_to_end_s=ended - ready,
            ended_at=ended,
            totals=machine.timeline.totals(),
            extra=extra,
        )


def guest_now(machine: GuestMachine) -> int:
    """The guest's PV clock now, as the guest computes it."""
    clock = machine.clock
    return clock.ns_at(max(rdtsc(), clock.tsc_timestamp))


@dataclass
class Bracketed:
    """A guest-clock read between two host monotonic reads (all ns)."""

    before_ns: int
    guest_ns: int
    after_ns: int


def bracket(machine: GuestMachine) -> Bracketed:
    before = time.monotonic_ns()
    guest = guest_now(machine)
    return Bracketed(before, guest, time.monotonic_ns())


# TSC against CLOCK_MONOTONIC (NTP slew, the TSC frequency's rounding): far below this.
CLOCK_TOLERANCE = 0.005


def assert_guest_rate(a: Bracketed, b: Bracketed, rate: Fraction) -> None:
    """Between ``a`` and ``b`` the guest clock ran at ``rate`` of the host's: its advance
    lies between ``rate`` times the shortest and the longest host span the reads allow,
    however long the test thread was descheduled between them."""
    advance = b.guest_ns - a.guest_ns
    shortest, longest = b.before_ns - a.after_ns, b.after_ns - a.before_ns
    low = float(rate) * shortest * (1 - CLOCK_TOLERANCE) - 1_000
    high = float(rate) * longest * (1 + CLOCK_TOLERANCE) + 1_000
    assert low <= advance <= high, (
        f"guest clock advanced {advance} ns in {shortest}..{longest} ns of host time (rate {rate})"
    )


def assert_never_early(run: Run, interval_ns: int) -> None:
    """Relative method: each event's deadline is the previous event plus the interval."""
    assert run.ok, run.reason
    assert np.all(run.intervals >= interval_ns), run.intervals.min()


def lguest_device(machine: GuestMachine) -> LguestClockEventDevice:
    (device,) = [d for d in machine.devices if isinstance(d, LguestClockEventDevice)]
    return device


# --- 5. dilation against the wall clock -------------------------------------------------------


@pytest.mark.kvm
@pytest.mark.parametrize(
    ("rate", "interval_ns", "count"),
    [(Fraction(1, 10), 20 * MS, 10), (Fraction(10), 100 * MS, 10)],
    ids=["dilation-0.1", "dilation-10"],
)
@pytest.mark.parametrize("timer", [TimerPath.PV, TimerPath.LGUEST, TimerPath.HPET])
def test_dilation_stretches_wall_time_and_keeps_guest_intervals(
    timer: TimerPath, rate: Fraction, interval_ns: int, count: int
) -> None:
    """The guest clock runs at the rate against the host's (an undilated clock is 10x
    off), every interval is at least the request in guest time, and the run cannot take
    less wall time than its guest time divided by the rate."""

    def watch(machine: GuestMachine) -> dict[str, object]:
        a = bracket(machine)
        time.sleep(0.02)
        return {"a": a, "b": bracket(machine)}

    run = run_guest(
        GuestConfig(timer=timer, interval_ns=interval_ns, count=count, rate=rate), watch
    )
    assert_never_early(run, interval_ns)
    assert len(run.intervals) == count
    assert_guest_rate(run.extra["a"], run.extra["b"], rate)  # type: ignore[arg-type]
    # from the first bracketing read (the guest clock was at most ``a.guest_ns`` then)
    a: Bracketed = run.extra["a"]  # type: ignore[assignment]
    guest_s = (run.timestamps[-1] - a.guest_ns) / S
    wall_s = run.ended_at - a.before_ns / S
    assert wall_s >= guest_s / float(rate) * (1 - CLOCK_TOLERANCE), (
        f"{guest_s:.4f} s of guest time took {wall_s:.4f} s of wall time at dilation {rate}"
    )
    assert run.totals.warps == 0 and run.totals.frozen_ns == 0


# --- 6. refusals, before anything runs --------------------------------------------------------


REFUSED = [
    ["--timer", "host", "--dilation", "2"],
    ["--timer", "lapic", "--dilation", "10"],
    ["--warp-idle", "--timer", "lapic"],
    ["--warp-idle", "--mode", "periodic", "--timer", "lguest"],
    ["--warp-idle", "--load", "io"],
    ["--warp-idle", "--timer", "host"],
    ["--warp-idle", "--wait", "spin"],
]


class RanBeforeRefusing(AssertionError):
    """A tripwire: something ran although the combination is refused."""


@pytest.mark.parametrize("args", REFUSED, ids=" ".join)
def test_unsupported_combinations_are_refused_in_one_line(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tickless.backends
    import tickless.kvm.system
    import tickless.vmm.host

    def ran(*a: object, **k: object) -> None:
        raise RanBeforeRefusing("the command ran before refusing its input")

    monkeypatch.setattr(tickless.kvm.system.KvmSystem, "__init__", ran)
    monkeypatch.setattr(tickless.vmm.host.VmmHost, "__init__", ran)
    monkeypatch.setattr(tickless.backends, "measure", ran)
    result = CliRunner().invoke(main, ["measure", "--count", "5", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.output
    banner = ("Usage: ", "Try '")
    lines = [line for line in result.stderr.splitlines() if line and not line.startswith(banner)]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr


def test_the_refusals_hold_in_the_guest_config_too() -> None:
    """The machine's own config refuses what the CLI refuses (the Python API path)."""
    for bad in [
        {"timer": TimerPath.LAPIC, "rate": Fraction(10)},
        {"timer": TimerPath.LAPIC, "warp_idle": True},
        {"timer": TimerPath.LGUEST, "mode": TickMode.PERIODIC, "warp_idle": True},
        {"io_rate_per_s": 1000.0, "warp_idle": True},
    ]:
        with pytest.raises(InputError):
            GuestConfig(count=5, **bad)  # type: ignore[arg-type]


# --- 7. a rate changed while the guest runs ---------------------------------------------------


@pytest.mark.kvm
@pytest.mark.parametrize("timer", [TimerPath.PV, TimerPath.LGUEST])
def test_a_rate_change_mid_run_never_jumps_nor_goes_back(timer: TimerPath) -> None:
    """200 x 5 ms; after ~0.3 s the group's rate goes to 1/2 from this (another) thread.
    The guest's timestamps never go backwards, no event is early, the clock does not jump
    at the change (its advance across it is bounded by the host time the reads took), it
    runs at 1 before and 1/2 after, and the rest takes at least twice its guest time."""
    interval = 5 * MS

    def change(machine: GuestMachine) -> dict[str, object]:
        a = bracket(machine)
        time.sleep(0.1)
        b = bracket(machine)
        machine.timeline.set_rate(Fraction(1, 2))
        c = bracket(machine)
        time.sleep(0.1)
        return {"a": a, "b": b, "c": c, "d": bracket(machine)}

    run = run_guest(GuestConfig(timer=timer, interval_ns=interval, count=200), change)
    assert_never_early(run, interval)
    assert np.all(np.diff(run.timestamps) > 0)
    a, b, c, d = (run.extra[k] for k in "abcd")
    assert_guest_rate(a, b, Fraction(1))  # type: ignore[arg-type]
    assert_guest_rate(c, d, Fraction(1, 2))  # type: ignore[arg-type]
    # across the change: at most the host time between the reads at rate 1, no jump
    assert 0 <= c.guest_ns - b.guest_ns <= c.after_ns - b.before_ns + 1_000  # type: ignore[attr-defined]
    later = run.intervals[run.timestamps[:-1] >= c.guest_ns]  # type: ignore[attr-defined]
    assert len(later) >= 1, "the guest ended before the change"
    # the rest of the run in wall time: at least twice its guest time (a rate that did not
    # apply would take half that); the guest clock read ``c`` came after ``c.before_ns``
    rest_guest_s = (run.timestamps[-1] - c.guest_ns) / S  # type: ignore[attr-defined]
    rest_wall_s = run.ended_at - c.before_ns / S  # type: ignore[attr-defined]
    assert rest_wall_s >= 2 * rest_guest_s * (1 - CLOCK_TOLERANCE), (rest_wall_s, rest_guest_s)
    assert run.totals.rate_changes == 1


# --- 8. freeze and thaw by the API ------------------------------------------------------------


@pytest.mark.kvm
@pytest.mark.parametrize("timer", [TimerPath.PV, TimerPath.LGUEST, TimerPath.HPET])
def test_a_frozen_guest_clock_stands_still(timer: TimerPath) -> None:
    """100 x 10 ms, frozen >= 0.5 s of wall time in the middle: the guest clock stands
    still while frozen (two reads 0.4 s apart agree) and moves across the freeze by no
    more than the host time outside it, no event lands while frozen, none is early, the
    guest's span of events is its wall time less the freeze, and the guest finishes."""
    interval = 10 * MS

    def freeze(machine: GuestMachine) -> dict[str, object]:
        time.sleep(0.3)
        g0 = bracket(machine)
        machine.freeze()
        frozen_at = time.monotonic_ns()
        assert machine.frozen and machine.timeline.frozen
        time.sleep(0.1)  # the vCPU has left KVM_RUN by now
        events_a, clock_a = machine.events_recorded, guest_now(machine)
        time.sleep(0.4)
        events_b, clock_b = machine.events_recorded, guest_now(machine)
        thaw_at = time.monotonic_ns()
        machine.thaw()
        g1 = bracket(machine)
        outside_ns = (frozen_at - g0.before_ns) + (g1.after_ns - thaw_at)
        return {
            "g": g1.guest_ns - g0.guest_ns,
            "outside_ns": outside_ns,
            "events": (events_a, events_b),
            "clock": (clock_a, clock_b),
        }

    run = run_guest(GuestConfig(timer=timer, interval_ns=interval, count=100), freeze)
    assert_never_early(run, interval)
    assert len(run.intervals) == 100
    x = run.extra
    assert x["clock"][0] == x["clock"][1]  # type: ignore[index]
    assert x["events"][0] == x["events"][1]  # type: ignore[index]
    # across the freeze the clock moved only while not frozen (a 0.5 s jump fails)
    assert 0 <= int(x["g"]) <= int(x["outside_ns"]) * (1 + CLOCK_TOLERANCE) + 1_000, x  # type: ignore[call-overload]
    assert run.totals.frozen_ns >= 0.5 * S  # the sleeps between freeze and thaw
    span_ns = int(run.timestamps[-1] - run.timestamps[0])
    assert span_ns <= (run.ready_to_end_s * S - run.totals.frozen_ns) * (1 + CLOCK_TOLERANCE)


@pytest.mark.kvm
def test_a_lapic_guest_cannot_be_frozen() -> None:
    with VmmHost() as host:
        machine = host.boot(GuestConfig(timer=TimerPath.LAPIC, interval_ns=MS, count=5))
        with pytest.raises(InputError, match="lapic"):
            machine.freeze()
        assert not machine.frozen and not machine.timeline.frozen


# --- 9. a periodic tick across a freeze -------------------------------------------------------


@pytest.mark.kvm
def test_a_periodic_tick_is_not_caught_up_after_a_freeze() -> None:
    """HZ 1000 (1 ms ticks) frozen for >= 150 periods: while frozen no tick comes and
    no expiry or overrun is counted (a frozen clock misses nothing); after the thaw, over
    a window, every period the tick grid advanced is one expiry or one counted overrun,
    and no more expiries come than the window holds periods (a catch-up burst of the
    ~150 frozen periods would), whatever the host's load."""

    def counts(machine: GuestMachine) -> tuple[int, int, int, int]:
        """(interrupts, expiries, overruns, next tick), read until two reads agree (the
        timer thread updates them one after another)."""
        device = lguest_device(machine).clockevent
        previous = None
        while True:
            now = (
                int(machine.shared.irq_count),
                device.stats.expiries,
                device.stats.overruns,
                int(device.next_event_ns or 0),
            )
            if now == previous:
                return now
            previous = now

    def freeze(machine: GuestMachine) -> dict[str, object]:
        time.sleep(0.2)
        machine.freeze()
        time.sleep(0.02)
        frozen_a = counts(machine)
        time.sleep(0.15)
        frozen_b = counts(machine)
        machine.thaw()
        t0 = time.monotonic_ns()  # before the first counter read: the window only grows
        start = counts(machine)
        time.sleep(0.1)
        end = counts(machine)
        t1 = time.monotonic_ns()
        return {"frozen": (frozen_a, frozen_b), "start": start, "end": end, "host_ns": t1 - t0}

    config = GuestConfig(
        timer=TimerPath.LGUEST, mode=TickMode.PERIODIC, hz=1000, interval_ns=5 * MS, count=120
    )
    run = run_guest(config, freeze)
    assert_never_early(run, 5 * MS)
    x = run.extra
    frozen_a, frozen_b = x["frozen"]  # type: ignore[misc]
    assert frozen_a == frozen_b, x  # no interrupt, expiry, overrun or grid move while frozen
    irqs, expiries, overruns, grid_ns = (e - s for s, e in zip(x["start"], x["end"], strict=True))  # type: ignore[call-overload]
    assert grid_ns % MS == 0 and expiries + overruns == grid_ns // MS, x
    assert expiries <= int(x["host_ns"]) * (1 + CLOCK_TOLERANCE) / MS + 1, x  # type: ignore[call-overload]
    assert irqs <= expiries + 1, x  # one interrupt per expiry at most (one may be pending)


# --- 10. the idle warp ------------------------------------------------------------------------


@pytest.mark.kvm
@pytest.mark.parametrize("timer", [TimerPath.PV, TimerPath.LGUEST])
def test_warp_skips_idle_time(timer: TimerPath) -> None:
    """50 x 1 s with --warp-idle: at least 50 s of guest time, no event early, each
    deadline reached by one warp, and the note says how much was warped: the guest time
    not warped over is at most the wall time the run took (the clock runs at 1 otherwise),
    so the warps account for the rest."""
    spec = MeasureSpec(timer=timer, interval_ns=S, count=50, warp_idle=True)
    record = measure(spec)
    assert record.lateness.early_count == 0
    assert len(record.intervals_ns) == 50 and min(record.intervals_ns) >= S
    (note,) = [n for n in record.notes if n.startswith("time: ")]
    m = re.match(
        r"time: ([0-9.]+) s of guest time in ([0-9.]+) s of wall time.*"
        r"warped over ([0-9.]+) s of idle guest time in ([0-9]+) warps",
        note,
    )
    assert m is not None, note
    guest_s, wall_s, warped_s, warps = (float(g) for g in m.groups())
    assert guest_s >= 50 and warps == 50, note  # each deadline reached by one warp
    assert warped_s > 0 and guest_s - warped_s <= wall_s + 0.002, note  # 3 decimals each


@pytest.mark.kvm
@pytest.mark.parametrize("timer", [TimerPath.PV, TimerPath.LGUEST])
def test_a_warped_guest_that_blocked_while_frozen_warps_at_the_thaw(timer: TimerPath) -> None:
    """The group's clock frozen for 50 ms (``Timeline.freeze``: what a group's clock gets
    when one of its guests is frozen, whose vCPUs the others' freeze does not pause) while
    a 200 x 1 s warped guest runs on: it blocks meanwhile, and the thaw must warp it (it
    is all idle). Without that it sits out its 1 s wait in wall time, and that deadline
    is reached without a warp."""

    def freeze(machine: GuestMachine) -> dict[str, object]:
        end = time.monotonic() + 10
        while machine.events_recorded < 20:  # a few warps in (the whole run takes ~30 ms)
            assert time.monotonic() < end and machine.running
            time.sleep(0.0002)
        machine.timeline.freeze()
        time.sleep(0.05)  # it blocks meanwhile (its vCPU runs: only the clock is frozen)
        events, blocked = machine.events_recorded, machine.member.deadline_ns is not None
        machine.timeline.thaw()  # warps it at once: its member runs again
        return {"events": events, "blocked": blocked}

    config = GuestConfig(timer=timer, interval_ns=S, count=200, warp_idle=True)
    run = run_guest(config, freeze)
    assert_never_early(run, S)
    assert run.extra["events"] < 200 and run.extra["blocked"], run.extra  # type: ignore[operator]
    # one warp per deadline: a thawed all-idle guest that waited for its timer in wall
    # time instead of warping would reach one deadline without a warp
    assert run.totals.warps == 200, run.totals


# --- 11. Ctrl-Z -------------------------------------------------------------------------------


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


@pytest.mark.kvm
def test_ctrl_z_freezes_guest_time(tmp_path: Path) -> None:
    """A measuring ``tickless`` gets SIGTSTP once under way, stays stopped ~1 s, then
    SIGCONT: it finishes, nothing is early, its record says it was frozen, and the
    freeze is not in its guest time."""
    out = tmp_path / "r.json"
    args = ["measure", "--interval", "50ms", "--count", "40", "--json", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickless", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    killer = threading.Timer(120, proc.kill)  # a hung run fails, it does not hang
    killer.start()
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if line.rstrip().endswith(" %"):  # something has been measured
                proc.send_signal(signal.SIGTSTP)
                break
        else:
            pytest.fail("no progress line: " + "".join(seen))
        end = time.monotonic() + 5
        while _state(proc.pid) != "T":
            assert time.monotonic() < end, "the process did not stop on SIGTSTP"
            time.sleep(0.01)
        time.sleep(1.0)
        assert _state(proc.pid) == "T"
        proc.send_signal(signal.SIGCONT)
        seen.append(proc.stderr.read())
        assert proc.wait() == 0, "".join(seen)
    finally:
        killer.cancel()
        proc.kill()
        proc.wait()
    record = json.loads(out.read_text())
    assert record["lateness"]["early_count"] == 0
    intervals = record["intervals_ns"]
    assert len(intervals) == 40
    assert min(intervals) >= 50 * MS
    (note,) = [n for n in record["notes"] if n.startswith("time: ")]
    m = re.search(r"time: ([0-9.]+) s of guest time in ([0-9.]+) s of wall time", note)
    frozen = re.search(r"frozen for ([0-9.]+) s", note)
    assert m is not None and frozen is not None, note
    guest_s, wall_s, frozen_s = float(m.group(1)), float(m.group(2)), float(frozen.group(1))
    assert frozen_s >= 1.0, note  # stopped for at least the test's 1 s sleep
    # the stop is not guest time: guest time is the wall time less the freeze (3 decimals)
    assert guest_s <= wall_s - frozen_s + 0.002, note
