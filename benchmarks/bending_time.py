"""Time that bends (issue 10), on real guests: what dilation, warp and a shared timeline do.

    ./run bench bending_time [--quick]

1. Dilation: a guest waits 1 s of guest time (one event, 1 s, on pv and on lguest) at
   dilation 0.1 (goal: 10 s +-1 % of wall time) and 10 (goal: 0.1 s +-5 %); wall time
   from the guest's start (``shared.ready``, polled every 0.2 ms) to its DONE, boot
   excluded.
2. Warp: ``idle --guests 1 --duration 1000s --warp-idle`` (goal: under 5 s of wall time,
   1,000 runs of the 1 s timer, none early).
3. Determinism and a shared timeline: four cron guests (1 s and 300 ms timers), 200 s
   warped twice with one seed, and 4 s unwarped at dilation 1: the sequence hashes.
"""

from __future__ import annotations

import argparse
import time
from fractions import Fraction

from tickless.axes import TimerPath
from tickless.devices.config import GuestConfig
from tickless.measure.cron import run_cron
from tickless.measure.idle import run_idle
from tickless.results.cron import CronSpec
from tickless.results.idle import IdleSpec
from tickless.vmm.host import VmmHost

S = 1_000_000_000


def wait_one_second(timer: TimerPath, rate: Fraction) -> tuple[float, int]:
    """Wall seconds one 1 s guest-time event took, and the guest's own interval (ns)."""
    with VmmHost() as host:
        machine = host.boot(GuestConfig(timer=timer, interval_ns=S, count=1, rate=rate))
        machine.start()
        while not int(machine.shared.ready):
            time.sleep(0.0002)
        t0 = time.monotonic()
        while machine.running:
            machine.join(0.0002)
        wall = time.monotonic() - t0
        stamps = machine.timestamps_ns(1)
        return wall, int(stamps[1] - stamps[0])


def dilation(quick: bool) -> None:
    print("1. dilation: one 1 s event of guest time")
    print(
        f"{'timer':7} {'dilation':>8} {'wall s':>9} {'goal s':>7} {'error':>8} "
        f"{'guest interval':>15}"
    )
    for timer in (TimerPath.PV, TimerPath.LGUEST):
        for rate in (Fraction(1, 10), Fraction(10)) if not quick else (Fraction(10),):
            wall, interval = wait_one_second(timer, rate)
            goal = 1 / float(rate)
            print(
                f"{timer.value:7} {rate!s:>8} {wall:9.4f} {goal:7.2f} "
                f"{100 * (wall - goal) / goal:+7.2f}% {interval / 1e9:14.6f}s"
            )


def warp() -> None:
    print("\n2. idle --guests 1 --duration 1000s --warp-idle")
    t0 = time.monotonic()
    r = run_idle(IdleSpec(guests=1, duration_ns=1000 * S, warp_idle=True))
    total = time.monotonic() - t0
    print(
        f"guest {r.guest_time_s:.3f} s, warped {r.warped_s:.3f} s, wall {r.wall_time_s:.3f} s "
        f"(whole command {total:.2f} s); timer runs {r.timer_runs} (1 s, 4 s timers), "
        f"early {r.early_timer_runs}; host timer wake-ups {r.host_timer_wakeups}"
    )


def group(quick: bool) -> None:
    print("\n3. four cron guests on one timeline (1 s and 300 ms timers, seed 5)")
    print(
        f"{'run':24} {'runs':>6} {'early':>5} {'order':>5} {'late max us':>11} {'guest s':>8} "
        f"{'wall s':>7} {'wake-ups':>8}  sha256"
    )
    base = dict(periods_ns=(S, 300 * 1_000_000), guests=4, seed=5)
    runs = [("warped 200 s, first", 200, True), ("warped 200 s, again", 200, True)]
    runs.append(("dilation 1, 4 s", 4, False))
    runs.append(("warped 4 s", 4, True))
    for label, seconds, warp_idle in runs[2:] if quick else runs:
        r = run_cron(CronSpec(**base, duration_ns=seconds * S, warp_idle=warp_idle))  # type: ignore[arg-type]
        print(
            f"{label:24} {r.runs:6d} {r.early:5d} {r.out_of_order:5d} "
            f"{r.lateness_max_ns / 1e3:11.1f} {r.guest_time_s:8.2f} {r.wall_time_s:7.2f} "
            f"{r.host_wakeups:8d}  {r.sequence_sha256[:16]}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 10 s and 200 s runs")
    args = parser.parse_args()
    dilation(args.quick)
    warp()
    group(args.quick)


if __name__ == "__main__":
    main()
