"""Timer paths compared in one run: hypercall round trip, then pv, lapic and host at
50 us x 4500 (the paper's setting). Absolute times are noisy on this machine: compare the
rows of one run with each other.

    python benchmarks/timer_paths.py [--interval 50us] [--count 4500]
"""

from __future__ import annotations

import argparse

import numpy as np

from tickless.backends import measure
from tickless.guest.abi import Scenario
from tickless.results.paper import PAPER_EVENTS
from tickless.results.spec import MeasureSpec
from tickless.units import parse_duration_ns
from tickless.vmm.config import GuestConfig
from tickless.vmm.host import VmmHost


def hypercall_round_trip_us(calls: int = 20_000) -> tuple[float, float]:
    """Mean and p50 of one NOP hypercall as the guest sees it (port exit to Python and back)."""
    with VmmHost() as host:
        machine = host.boot(GuestConfig(scenario=Scenario.HYPERCALL_LOOP, count=calls))
        machine.start()
        machine.join(120)
        if not machine.outcome.ok:
            raise SystemExit(f"hypercall loop failed: {machine.outcome.reason}")
        gaps = np.diff(machine.timestamps_ns(machine.outcome.events)) / 1000
    return float(gaps.mean()), float(np.median(gaps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", default="50us")
    parser.add_argument("--count", type=int, default=PAPER_EVENTS)
    args = parser.parse_args()
    interval_ns = parse_duration_ns(args.interval)

    mean_us, p50_us = hypercall_round_trip_us()
    print(f"hypercall round trip: mean {mean_us:.2f} us, p50 {p50_us:.2f} us")
    print(
        f"{'path':6} {'mean interval us':>17} {'lateness mean us':>17} {'sd us':>8} "
        f"{'p99 us':>8} {'max us':>9} {'early':>6} {'host CPU %':>10}"
    )
    for timer in ("pv", "lapic", "host"):
        r = measure(MeasureSpec(timer=timer, interval_ns=interval_ns, count=args.count))
        cpu_pct = 100 * r.host.cpu_s / r.host.duration_s if r.host.duration_s else 0.0
        print(
            f"{timer:6} {r.stats.mean_ns / 1e3:17.3f} {r.lateness.mean_ns / 1e3:17.3f} "
            f"{r.stats.sd_ns / 1e3:8.3f} {r.lateness.p99_ns / 1e3:8.3f} "
            f"{r.lateness.max_ns / 1e3:9.3f} {r.lateness.early_count:6d} {cpu_pct:10.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
