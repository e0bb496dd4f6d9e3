"""Several guests at once: N guests, each a stream of one-shot events every d, on pv and
on lapic in the same run (issue 9: ten 1 kHz guests, total host CPU of pv <= lapic's).

    python benchmarks/pv_guests.py [--guests 10] [--interval 1ms] [--count 5000]
"""

from __future__ import annotations

import argparse

from tickless.backends import measure
from tickless.results.spec import MeasureSpec
from tickless.units import parse_duration_ns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", type=int, default=10)
    parser.add_argument("--interval", default="1ms")
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--paths", default="pv,lapic,lguest")
    args = parser.parse_args()
    interval_ns = parse_duration_ns(args.interval)
    print(
        f"{args.guests} guests x {args.count} events every {args.interval}\n"
        f"{'path':6} {'lateness mean us':>17} {'p99 us':>8} {'max us':>9} {'early':>6} "
        f"{'per-guest mean us':>18} {'exits':>7} {'wakeups':>8} {'CPU % total':>12} "
        f"{'per guest':>10}"
    )
    cpu = {}
    for timer in args.paths.split(","):
        spec = MeasureSpec(
            timer=timer, interval_ns=interval_ns, count=args.count, guests=args.guests
        )
        r = measure(spec)
        means = [row.lateness_mean_ns / 1e3 for row in r.guest_rows]
        cpu[timer] = 100 * r.host.cpu_s / r.host.duration_s
        print(
            f"{timer:6} {r.lateness.mean_ns / 1e3:17.3f} {r.lateness.p99_ns / 1e3:8.1f} "
            f"{r.lateness.max_ns / 1e3:9.1f} {r.lateness.early_count:6d} "
            f"{min(means):8.1f}-{max(means):<9.1f} {r.host.exits:7d} {r.host.wakeups:8d} "
            f"{cpu[timer]:12.1f} {cpu[timer] / args.guests:10.2f}",
            flush=True,
        )
    if "pv" in cpu and "lapic" in cpu:
        ok = "met" if cpu["pv"] <= cpu["lapic"] else "NOT met"
        print(f"host CPU of pv <= lapic: {ok} ({cpu['pv']:.1f} % vs {cpu['lapic']:.1f} %)")


if __name__ == "__main__":
    main()
