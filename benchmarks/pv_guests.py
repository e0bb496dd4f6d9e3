"""Several guests at once: N guests, each a stream of one-shot events every d, on pv,
lapic and lguest in the same run (issue 9: ten 1 kHz guests, total host CPU of pv <= lapic's).

    ./run bench pv_guests [--guests 10] [--interval 1ms] [--count 3000] [--rounds 3]

CPU on this host moves by +-10 % from one run to the next, so the paths alternate for
``--rounds`` rounds and the summary compares medians (and counts the rounds pv won).
"""

from __future__ import annotations

import argparse
import statistics

from tickless.backends import measure
from tickless.results.schema import ResultRecord
from tickless.results.spec import MeasureSpec
from tickless.units import parse_duration_ns


def _row(timer: str, r: ResultRecord, guests: int) -> tuple[str, float]:
    means = [row.lateness_mean_ns / 1e3 for row in r.guest_rows]
    cpu = 100 * r.host.cpu_s / r.host.duration_s
    line = (
        f"{timer:6} {r.lateness.mean_ns / 1e3:17.3f} {r.lateness.p99_ns / 1e3:8.1f} "
        f"{r.lateness.max_ns / 1e3:9.1f} {r.lateness.early_count:6d} "
        f"{min(means):8.1f}-{max(means):<9.1f} {r.host.exits:7d} {r.host.wakeups:8d} "
        f"{cpu:12.1f} {cpu / guests:10.2f}"
    )
    return line, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", type=int, default=10)
    parser.add_argument("--interval", default="1ms")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paths", default="pv,lapic,lguest")
    args = parser.parse_args()
    interval_ns = parse_duration_ns(args.interval)
    paths = args.paths.split(",")
    print(
        f"{args.guests} guests x {args.count} events every {args.interval}, "
        f"{args.rounds} rounds\n"
        f"{'path':6} {'lateness mean us':>17} {'p99 us':>8} {'max us':>9} {'early':>6} "
        f"{'per-guest mean us':>18} {'exits':>7} {'wakeups':>8} {'CPU % total':>12} "
        f"{'per guest':>10}"
    )
    cpu: dict[str, list[float]] = {timer: [] for timer in paths}
    late: dict[str, list[float]] = {timer: [] for timer in paths}
    for _ in range(args.rounds):
        for timer in paths:
            spec = MeasureSpec(
                timer=timer, interval_ns=interval_ns, count=args.count, guests=args.guests
            )
            r = measure(spec)
            line, pct = _row(timer, r, args.guests)
            cpu[timer].append(pct)
            late[timer].append(r.lateness.mean_ns / 1e3)
            print(line, flush=True)
    print("medians:")
    for timer in paths:
        print(
            f"  {timer:6} lateness mean {statistics.median(late[timer]):8.2f} us, "
            f"host CPU {statistics.median(cpu[timer]):6.1f} % of a core"
        )
    if "pv" in cpu and "lapic" in cpu:
        pv, lapic = statistics.median(cpu["pv"]), statistics.median(cpu["lapic"])
        won = sum(p <= q for p, q in zip(cpu["pv"], cpu["lapic"], strict=True))
        ok = "met" if pv <= lapic else "NOT met"
        print(
            f"host CPU of pv <= lapic (medians): {ok} ({pv:.1f} % vs {lapic:.1f} %; "
            f"pv lower in {won} of {args.rounds} rounds)"
        )


if __name__ == "__main__":
    main()
