"""The stock Linux kernel on bent time (issue 19): the must-show figures.

Idle at each dilation (default 10 and 0.1; --duration is guest time, so 0.1 takes ten times
its length of wall time): which clocksource and clock-event device the kernel chose, how its
TSC learnt its rate, each clock's agreement with the timeline (ppm), the clocksources it
marked unstable, printk seconds per wall second against the dilation. Then the paper's method
at 10 ms and dilation 4 beside dilation 1, in guest time. Builds the kernel on first use.

    ./run bench linux_stock [--rates 10,0.1] [--duration 30s] [--guests 10]
                                     [--count 200]
"""

from __future__ import annotations

import argparse
from fractions import Fraction

from tickless.axes import GuestKind, LinuxDrivers, TimerPath
from tickless.backends import measure
from tickless.measure.idle import run_idle
from tickless.results.idle import IdleSpec
from tickless.results.spec import MeasureSpec
from tickless.units import parse_duration_ns

HZ = 100


def _stock_note(notes: list[str]) -> str:
    return next((n for n in notes if n.startswith("stock kernel:")), "stock kernel: ?")


def _idle_row(rate: Fraction, duration_ns: int, guests: int) -> None:
    spec = IdleSpec(
        guests=guests,
        guest=GuestKind.LINUX,
        linux_drivers=LinuxDrivers.STOCK,
        hz=HZ,
        duration_ns=duration_ns,
        rate=rate,
    )
    r = run_idle(spec)
    ratio = r.console_time_ratio
    off = f"{(ratio / float(rate) - 1) * 100:+.3f} % off" if ratio else "too few lines"
    print(
        f"idle, {guests} guests, dilation {rate}: clocksource {r.guest_clocksource}, clock "
        f"event {r.guest_clockevent}, {r.guest_time_s:.1f} s of guest time, steady host "
        f"CPU {r.cpu_percent_of_core:.1f} % of a core (each clock at its worst guest)"
    )
    print(f"  {_stock_note(r.notes)}")
    print(f"  clock_agreement_ppm {r.clock_agreement_ppm}")
    print(f"  clocksource_unstable {r.clocksource_unstable}")
    print(f"  console_time_ratio {ratio} (dilation {float(rate):g}: {off})")


def _measure_row(rate: Fraction, count: int) -> None:
    spec = MeasureSpec(
        guest=GuestKind.LINUX,
        linux_drivers=LinuxDrivers.STOCK,
        timer=TimerPath.LAPIC,
        interval_ns=10_000_000,
        count=count,
        hz=HZ,
        rate=rate,
    )
    r = measure(spec)
    print(
        f"measure 10 ms x {count}, dilation {rate}: mean {r.stats.mean_ns / 1e6:.3f} ms "
        f"(sd {r.stats.sd_ns / 1e6:.3f}) of guest time, {r.lateness.early_count} early, "
        f"{r.guest_clockevent} / {r.guest_clocksource}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="10,0.1", help="idle dilations, comma-separated")
    parser.add_argument("--duration", default="30s", help="idle length in guest time")
    parser.add_argument("--count", type=int, default=200, help="events at 10 ms")
    parser.add_argument("--guests", type=int, default=10, help="idle guests (idle's default)")
    args = parser.parse_args()
    duration_ns = parse_duration_ns(args.duration)
    for text in args.rates.split(","):
        _idle_row(Fraction(text), duration_ns, args.guests)
    for rate in (Fraction(1), Fraction(4)):
        _measure_row(rate, args.count)


if __name__ == "__main__":
    main()
