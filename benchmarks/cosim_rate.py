"""Simulated seconds per wall second of guests in lockstep with SimPy (issue 20), beside
the same traffic in real time (dilation 1).

    flock /tmp/tickless-timing.lock ./run bench cosim_rate [--quick] [--guest linux]

For 2 and 10 guests (pairs pinging each other) at 1 ms and 10 ms link latency, the
pingpong runs about one second of guest time (``count`` round trips of 2 x latency per
pair) twice: in lockstep (the clock holds while guests compute and jumps to what the
network delivers next) and in real time (one clock at wall-clock rate, arrivals by host
timers). Wall time counts from the guests' start (booted) to the last pinger's DONE.
Lockstep is faster than real time when guests are idle waiting for the network and
slower when the host's work per quantum (a synchronisation of every guest) exceeds it.
``--guest linux``: each pair's answering guest is a Linux guest (booted before the clock
counts).
"""

from __future__ import annotations

import argparse

from tickless.axes import GuestKind
from tickless.cosim import PingpongSpec, run_pingpong

MS = 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.2 s of guest time per run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--guest", choices=[k.value for k in GuestKind], default="small")
    args = parser.parse_args()
    guest_s = 0.2 if args.quick else 1.0
    print(
        f"{'guests':>6} {'latency':>8} {'mode':>9} {'RTTs':>6} {'RTT mean ms':>11} "
        f"{'quanta':>7} {'guest s':>8} {'wall s':>7} {'sim s/wall s':>12} {'late':>5} "
        f"{'violations':>10}  trace"
    )
    for guests in (2, 10):
        for latency_ms in (1, 10):
            count = max(1, int(guest_s * 1000 / (2 * latency_ms)))
            for realtime in (False, True):
                spec = PingpongSpec(
                    guests=guests,
                    latency_ns=latency_ms * MS,
                    count=count,
                    seed=args.seed,
                    realtime=realtime,
                    guest=GuestKind(args.guest),
                )
                r = run_pingpong(spec)
                print(
                    f"{guests:>6} {latency_ms:>6}ms {r.mode:>9} {int(r.rtt_ns['count']):>6} "
                    f"{r.rtt_ns['mean'] / MS:>11.3f} {r.quanta:>7} {r.guest_time_s:>8.3f} "
                    f"{r.wall_time_s:>7.3f} {r.sim_seconds_per_wall_second:>12.2f} "
                    f"{r.late_deliveries:>5} {r.causality_violations:>10}  {r.trace_hash[:12]}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
