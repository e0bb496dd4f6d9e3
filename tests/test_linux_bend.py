"""Time that bends, in the Linux guest (issue "Time that bends", point 7): its `tickless`
clocksource reads the PV clock page and its clock-event device is lguest's, so a dilated,
warped or frozen clock must reach Linux's timers with no driver change; the idle warp
needs the driver's cpuidle state, which calls BLOCK(0) before it halts.

Slow like the other Linux tests (a boot is seconds of emulated ring 0). Nothing here
depends on how fast or how loaded the host is: assertions are in guest time, in counts,
or wall-clock lower bounds a slow host only makes easier (a clock cannot run faster than
its rate); how long things take is a figure (``benchmarks/bending_time.py``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_linux_guest import _measure
from test_time_bending import CLOCK_TOLERANCE, bracket, run_guest

from tickless.axes import GuestKind, TimerPath
from tickless.backends import measure
from tickless.cli import main
from tickless.devices.config import GuestConfig
from tickless.devices.pvclock import PvclockDevice
from tickless.guest.abi import PvclockVcpuTimeInfo, Scenario
from tickless.host.tsc import rdtsc
from tickless.timers.clock import PvclockScale
from tickless.vmm.machine import GuestMachine

pytestmark = [pytest.mark.kvm, pytest.mark.linux]
MS = 1_000_000
S = 1_000_000_000


def linux_config(**kwargs: object) -> GuestConfig:
    base: dict[str, object] = {
        "guest": GuestKind.LINUX,
        "timer": TimerPath.LGUEST,
        "hz": 100,
    }
    return GuestConfig(**{**base, **kwargs})  # type: ignore[arg-type]


def page_now(machine: GuestMachine) -> int:
    """The guest's PV clock now, computed from the page in guest memory (what the
    `tickless` clocksource reads), not from the host's copy of the clock."""
    device = next(d for d in machine.devices if isinstance(d, PvclockDevice))
    raw = PvclockVcpuTimeInfo.from_buffer_copy(device.page.info)
    assert raw.version % 2 == 0, "the page is being updated"
    scale = PvclockScale(raw.tsc_to_system_mul, raw.tsc_shift)
    return int(raw.system_time) + scale.apply(max(0, rdtsc() - raw.tsc_timestamp))


# --- dilation: a Linux guest at half speed ---------------------------------------------------


def test_a_dilated_linux_guest_measures_guest_time_and_takes_twice_the_wall_time() -> None:
    """50 x 10 ms at --dilation 0.5: Linux's hrtimers run on the dilated clock, so its
    intervals are 10 ms of guest time and more (never early), some under 20 ms (an hrtimer
    on an undilated clock, 10 ms of wall time, is 20 ms of guest time at the least), and
    they take at least twice their guest time in wall time."""
    spec = dataclasses.replace(_measure(TimerPath.LGUEST), count=50, rate=Fraction(1, 2))
    record = measure(spec)
    assert record.guest_clocksource == "tickless"
    assert record.guest_clockevent == "tickless"
    assert record.stats.count == 50
    assert record.lateness.early_count == 0
    intervals = np.array(record.intervals_ns)
    assert intervals.min() >= 10 * MS
    assert intervals.min() < 20 * MS, intervals.min()
    guest_s = intervals.sum() / S
    wall_s = record.host.duration_s  # the workload's start to DONE (boot excluded)
    assert wall_s >= 2 * guest_s * 0.995, (wall_s, guest_s)
    assert any("dilation 1/2" in note for note in record.notes), record.notes


# --- idle warp: BLOCK from the idle loop -----------------------------------------------------


def test_idle_warp_runs_100s_of_linux_guest_time_in_a_few_seconds(tmp_path: Path) -> None:
    """`tickless idle --guest linux --warp-idle --duration 100s`: the record shows at
    least 100 s of guest time, and the guest time not warped over is at most the wall
    time the run took (unwarped, the run would take 100 s of wall time after boot)."""
    out = tmp_path / "idle.json"
    args = ["idle", "--guest", "linux", "--guests", "1", "--hz", "100"]
    args += ["--warp-idle", "--duration", "100s", "--json", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    d = json.loads(out.read_text())
    assert d["guest_clockevent"] == "tickless"
    assert d["guest_time_s"] >= 100.0
    assert d["warped_s"] > 0
    assert d["guest_time_s"] - d["warped_s"] <= d["wall_time_s"] * 1.005, d
    # housekeeping counted over the host's window, which starts when it sees the guest
    # ready (warps may have begun): at most the 1 s and 4 s timers' 125 runs
    (guest,) = d["per_guest"]
    assert 0 < guest["housekeeping_runs"] <= 125, guest


def test_a_warped_linux_guest_blocks_each_idle_and_runs_every_timer() -> None:
    """100 s of guest time under warp, counted by the guest from its workload's start: the
    1 s and 4 s housekeeping timers ran 99 + 24 times (their 100th and 25th runs fall a
    hair after the end, which stops them), every idle made a BLOCK, each warp was
    ended by the timer interrupt the host raised at once, and the guest time not warped
    over is at most the wall time."""

    def counters(machine: GuestMachine) -> dict[str, int]:
        shared = machine.shared
        return {
            "callbacks": int(shared.timer_callbacks),  # from the workload's start
            "blocks": int(shared.blocks),  # these three from boot: count the differences
            "irqs": int(shared.irq_count),
            "wakeups": int(shared.wakeups),
        }

    def until_done(machine: GuestMachine) -> dict[str, object]:
        c0 = counters(machine)  # ~1 ms after the workload's start
        machine.join(300)
        c1 = counters(machine)
        return {
            "callbacks": c1["callbacks"],
            **{k: c1[k] - c0[k] for k in ("blocks", "irqs", "wakeups")},
            "start_ns": int(machine.timestamps_ns(0)[0]),
        }

    duration = 100 * S
    config = linux_config(scenario=Scenario.IDLE, duration_ns=duration, warp_idle=True)
    run = run_guest(config, until_done)
    assert run.ok, run.reason
    x = run.extra
    assert 123 <= int(x["callbacks"]) <= 125, x  # type: ignore[call-overload]
    # a BLOCK per idle, so one per wake-up at least (of the 1 s timer: the 4 s timer's
    # runs share its interrupts), and nearly every interrupt woke an idle CPU. Not many
    # more: with sched_clock left on kvm-clock (host time), the fair deadline server's
    # replenishment timer re-armed every warped second, ~300 interrupts instead of ~105.
    blocks, irqs, wakeups = (int(x[k]) for k in ("blocks", "irqs", "wakeups"))  # type: ignore[call-overload]
    assert 99 <= wakeups <= irqs <= blocks + 5, x  # a few come while it runs, not idle
    assert blocks <= 150, x
    assert run.totals.warped_ns >= 90 * S, run.totals
    assert run.totals.guest_ns - int(x["start_ns"]) >= duration  # type: ignore[call-overload]
    unwarped_ns = run.totals.guest_ns - run.totals.warped_ns
    assert unwarped_ns <= run.totals.wall_ns * 1.005, run.totals


def test_without_warp_linux_never_blocks() -> None:
    """--warp-idle off: no cpuidle driver, Linux idles as before, no BLOCK exit at all."""

    def watch(machine: GuestMachine) -> dict[str, object]:
        machine.join(300)  # it ends by itself after 3 s of guest time
        return {"blocks": int(machine.shared.blocks), "cb": int(machine.shared.timer_callbacks)}

    config = linux_config(scenario=Scenario.IDLE, duration_ns=3 * S)
    run = run_guest(config, watch)
    assert run.ok, run.reason
    assert run.extra["blocks"] == 0
    assert int(run.extra["cb"]) >= 2  # type: ignore[call-overload]
    assert run.totals.warps == 0


# --- freeze ------------------------------------------------------------------------------


def test_a_frozen_linux_guest_stands_still_and_runs_on_after_the_thaw() -> None:
    """150 x 10 ms, frozen >= 1 s of wall time in the middle: the PV clock page Linux
    reads does not move, no event lands and no interrupt comes while frozen, the guest
    clock moves across the freeze only by the host time outside it, the events' span in
    guest time is at most the wall time less the freeze, and the guest finishes."""

    def freeze(machine: GuestMachine) -> dict[str, object]:
        time.sleep(0.5)
        g0 = bracket(machine)
        machine.freeze()
        frozen_at = time.monotonic_ns()
        time.sleep(0.1)  # the vCPU has left KVM_RUN by now
        a = (page_now(machine), machine.events_recorded, int(machine.shared.irq_count))
        time.sleep(1.0)
        b = (page_now(machine), machine.events_recorded, int(machine.shared.irq_count))
        thaw_at = time.monotonic_ns()
        machine.thaw()
        g1 = bracket(machine)
        outside_ns = (frozen_at - g0.before_ns) + (g1.after_ns - thaw_at)
        return {"across_ns": g1.guest_ns - g0.guest_ns, "outside_ns": outside_ns, "a": a, "b": b}

    config = linux_config(interval_ns=10 * MS, count=150)
    run = run_guest(config, freeze)
    assert run.ok, run.reason
    assert len(run.intervals) == 150
    assert run.extra["a"] == run.extra["b"]  # clock, events, interrupts: all stood still
    across, outside = (int(run.extra[k]) for k in ("across_ns", "outside_ns"))  # type: ignore[call-overload]
    assert 0 <= across <= outside * (1 + CLOCK_TOLERANCE) + 1_000, run.extra
    assert run.intervals.min() >= 10 * MS
    assert run.totals.frozen_ns >= 1.0 * S  # the sleeps between freeze and thaw
    # a freeze Linux saw as time would be in the span of its events
    span_ns = int(run.timestamps[-1] - run.timestamps[0])
    assert span_ns <= (run.ready_to_end_s * S - run.totals.frozen_ns) * (1 + CLOCK_TOLERANCE)
