"""The fleet simulator against a straightforward SimPy implementation of the same model.

    ./run bench sim_vs_simpy            # 200 guests x 2 s at 1000 HZ, both, ratio
    ./run bench sim_vs_simpy --big      # plus 10,000 guests x 60 s (600 M events)

The SimPy side is the test suite's oracle, ``tests/sim_reference.py``: one SimPy process
per host CPU running the real ``TimerQueue`` and each guest's real ``ClockEventDevice``,
guests as Python objects; both sides must count the same events (checked). A leaner SimPy
program (one process per guest sleeping a period, no host queue, no slop: it can only do
periodic ticks) is timed too, as the floor of what SimPy costs per event. Events are host
timer expiries; the engine's compile (or cache load) time is printed and not counted. The
last line is ``ratio: X`` (engine events/s over the same-model SimPy's).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Generator
from pathlib import Path

import simpy

from tickless.sim import fleet
from tickless.units import parse_duration_ns

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from sim_reference import run_reference  # the oracle lives with the tests

SECOND_NS = 1_000_000_000
MIN_ENGINE_WALL_S = 1.0  # repeat the (fast) engine run until this much wall time is timed


def engine_rate(spec: fleet.FleetSpec) -> tuple[float, int, float]:
    """(events/s, events per run, wall s of one run), repeating short runs."""
    runs, wall_s, events = 0, 0.0, 0
    while wall_s < MIN_ENGINE_WALL_S or runs < 3:
        result, _ = fleet.run_fleet(spec, compile_s=0.0)
        wall_s += result.wall_s
        events = result.host_timer_expiries
        runs += 1
    return events * runs / wall_s, events, wall_s / runs


def simpy_rate(spec: fleet.FleetSpec) -> tuple[float, int]:
    t0 = time.perf_counter()
    ref = run_reference(spec)
    wall_s = time.perf_counter() - t0
    events = sum(c.expiries for c in ref.cpus)
    return events / wall_s, events


def simpy_lean_rate(spec: fleet.FleetSpec) -> tuple[float, int]:
    """One SimPy process per guest, ticking every period: no queue, no slop, no device."""
    env = simpy.Environment()
    ticks = [0]

    def guest(phase_ns: int) -> Generator[simpy.Event, None, None]:
        yield env.timeout(phase_ns)
        while True:
            ticks[0] += 1
            yield env.timeout(spec.period_ns)

    for g in range(spec.guests):
        env.process(guest(1 + g * spec.period_ns // spec.guests))
    t0 = time.perf_counter()
    env.run(until=spec.duration_ns + 1)
    return ticks[0] / (time.perf_counter() - t0), ticks[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guests", type=int, default=200)
    parser.add_argument("--duration", default="2s", help="virtual time of the comparison")
    parser.add_argument("--hz", type=int, default=1000)
    parser.add_argument("--mode", default="periodic")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--slop", default="0ns")
    parser.add_argument("--big", action="store_true", help="also 10,000 guests x 60 s")
    args = parser.parse_args()
    spec = fleet.FleetSpec(
        guests=args.guests,
        mode=args.mode,
        hz=args.hz,
        duration_ns=parse_duration_ns(args.duration),
        cpus=args.cpus,
        slop_ns=parse_duration_ns(args.slop, allow_zero=True),
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"host: {os.cpu_count()} CPUs, load average {load}")
    t0 = time.perf_counter()
    fleet.compile_engine()
    print(f"engine compile/load (not counted): {time.perf_counter() - t0:.2f} s")
    print(
        f"fleet: {spec.guests} guests, {spec.mode} at {spec.hz} HZ, "
        f"{spec.duration_ns / SECOND_NS:g} s, {spec.cpus} host CPUs, slop {spec.slop_ns} ns"
    )
    sim_per_s, sim_events, sim_wall_s = engine_rate(spec)
    ref_per_s, ref_events = simpy_rate(spec)
    if sim_events != ref_events:
        raise SystemExit(f"engine counted {sim_events} events, SimPy {ref_events}: they differ")
    print(f"sim:   {sim_per_s:14,.0f} events/s  ({sim_events:,} events, {sim_wall_s:.3f} s a run)")
    print(f"simpy: {ref_per_s:14,.0f} events/s  (real TimerQueue + ClockEventDevice)")
    if spec.mode == "periodic" and spec.slop_ns == 0:
        lean_per_s, _ = simpy_lean_rate(spec)
        print(
            f"simpy-lean: {lean_per_s:9,.0f} events/s  (a process per guest, periodic ticks "
            f"only; sim is {sim_per_s / lean_per_s:,.0f}x this)"
        )
    if args.big:
        big = fleet.FleetSpec(guests=10_000, hz=1000, duration_ns=60 * SECOND_NS, cpus=2)
        result, _ = fleet.run_fleet(big, compile_s=0.0)
        print(
            f"big:   10,000 guests x 60 s at 1000 HZ on 2 CPUs: "
            f"{result.host_timer_expiries:,} events in {result.wall_s:.2f} s wall, "
            f"{result.events_per_wall_s:,.0f} events/s"
        )
    print(f"ratio: {sim_per_s / ref_per_s:.1f}")


if __name__ == "__main__":
    main()
