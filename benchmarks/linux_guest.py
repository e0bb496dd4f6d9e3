"""A Linux 6.12 guest on our PV clocksource and clock-event device: the issue's figures.

Boot time to the workload, the paper's method at 10 ms in the kernel (lguest and, beside it,
lapic, and Linux's own HPET and i8253 drivers on the timer zoo's chips, also at dilation 0.5
and 4, with the wall clock Linux read from the zoo's CMOS RTC), idle timer interrupts per
second (tickless, and periodic at HZ=100) with the host CPU ratio, and four guests idling
at once. Builds the kernel on first use (~2 min).

    ./run bench linux_guest [--idle 20s] [--count 200]
"""

from __future__ import annotations

import argparse
from fractions import Fraction

from tickless.axes import GuestKind, TickMode, TimerPath
from tickless.backends import measure
from tickless.measure.idle import run_idle
from tickless.results.idle import IdleResult, IdleSpec
from tickless.results.spec import MeasureSpec
from tickless.units import parse_duration_ns

HZ = 100
RTC_EPOCH_NS = 978_307_200 * 10**9  # 2001-01-01T00:00:00Z: the zoo rows' CMOS RTC at start


def _boot_note(notes: list[str]) -> str:
    return next((n for n in notes if n.startswith("boot:")), "boot: ?")


def _linux_spec(timer: TimerPath, count: int, rate: Fraction = Fraction(1)) -> MeasureSpec:
    return MeasureSpec(
        guest=GuestKind.LINUX,
        timer=timer,
        interval_ns=10_000_000,
        count=count,
        hz=HZ,
        rate=rate,
        rtc_epoch_ns=RTC_EPOCH_NS,
    )


def _rtc_line(realtime_at_boot_ns: int | None) -> str:
    """Linux's wall clock at the guest's start against the RTC's epoch."""
    if realtime_at_boot_ns is None:
        return "no wall clock reported"
    offset_s = (realtime_at_boot_ns - RTC_EPOCH_NS) / 1e9
    return f"Linux's wall clock at start = RTC epoch {offset_s:+.3f} s"


def _idle(mode: TickMode, guests: int, duration_ns: int) -> IdleResult:
    spec = IdleSpec(guests=guests, guest=GuestKind.LINUX, mode=mode, hz=HZ, duration_ns=duration_ns)
    return run_idle(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", default="20s", help="idle run length (after boot)")
    parser.add_argument("--count", type=int, default=200, help="events at 10 ms")
    args = parser.parse_args()
    idle_ns = parse_duration_ns(args.idle)

    print(
        f"{'linux measure':14} {'clockevent':>15} {'mean ms':>9} {'sd ms':>8} "
        f"{'99% CI ms':>21} {'max ms':>8} {'early':>6}"
    )
    lateness_ns: dict[TimerPath, float] = {}
    for timer in (TimerPath.LGUEST, TimerPath.LAPIC, TimerPath.HPET, TimerPath.PIT):
        r = measure(_linux_spec(timer, args.count))
        lateness_ns[timer] = r.lateness.mean_ns
        s = r.stats
        ci = f"[{s.ci99_low_ns / 1e6:.3f}, {s.ci99_high_ns / 1e6:.3f}]"
        print(
            f"{timer.value:14} {r.guest_clockevent!s:>15} {s.mean_ns / 1e6:9.3f} "
            f"{s.sd_ns / 1e6:8.3f} {ci:>21} {s.max_ns / 1e6:8.3f} "
            f"{r.lateness.early_count:6d}   ({_boot_note(r.notes)}; {r.guest_kernel}, "
            f"clocksource {r.guest_clocksource})",
            flush=True,
        )
        driver = next((n for n in r.notes if n.startswith("linux driver:")), "")
        if timer is TimerPath.LGUEST and driver:
            print(f"  {driver}")
        if r.guest_realtime_at_boot is not None and timer in (TimerPath.HPET, TimerPath.PIT):
            print(f"  {_rtc_line(r.guest_realtime_at_boot)}")

    print(
        f"\n{'linux zoo':14} {'dilation':>8} {'clockevent':>10} {'mean ms':>9} "
        f"{'mean - 10 ms':>12} {'undilated lateness':>18} {'early':>6}  boot wall clock"
    )
    for timer in (TimerPath.HPET, TimerPath.PIT):
        for rate in (Fraction(1, 2), Fraction(4)):
            r = measure(_linux_spec(timer, args.count, rate))
            excess_ms = (r.stats.mean_ns - 10_000_000) / 1e6
            print(
                f"{timer.value:14} {float(rate):8g} {r.guest_clockevent!s:>10} "
                f"{r.stats.mean_ns / 1e6:9.3f} {excess_ms:12.3f} "
                f"{lateness_ns[timer] / 1e6:18.3f} {r.lateness.early_count:6d}  "
                f"{_rtc_line(r.guest_realtime_at_boot)}",
                flush=True,
            )

    tickless = _idle(TickMode.TICKLESS, 1, idle_ns)
    periodic = _idle(TickMode.PERIODIC, 1, idle_ns)
    print(
        f"\n{'linux idle':14} {'IRQ/s/guest':>12} {'wake-ups/s':>11} {'host CPU %':>11} "
        f"{'boot s':>7}  clockevent"
    )
    for name, r in (("tickless", tickless), (f"periodic {HZ}HZ", periodic)):
        print(
            f"{name:14} {r.interrupts_per_guest_per_s:12.2f} {r.wakeups_per_s:11.1f} "
            f"{r.cpu_percent_of_core:11.2f} {r.boot_s:7.1f}  {r.guest_clockevent}",
            flush=True,
        )
    ratio = periodic.process_cpu_s / max(tickless.process_cpu_s, 1e-9)
    print(f"host CPU periodic / tickless: {ratio:.1f}x")

    four = _idle(TickMode.TICKLESS, 4, idle_ns)
    rates = [g.timer_interrupts / four.duration_s for g in four.per_guest]
    print(
        f"\nfour Linux guests, tickless idle: IRQ/s per guest "
        f"{', '.join(f'{x:.2f}' for x in rates)}; boot of all four {four.boot_s:.1f} s; "
        f"host CPU {four.cpu_percent_of_core:.2f} % of a core"
    )


if __name__ == "__main__":
    main()
