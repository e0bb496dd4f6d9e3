"""The precise timer channel under the paper's heavy I/O (issues 4 and 22). Goals, not tests.

    ./run bench precise_timer [--io-cpu same|other|both] [--intervals 10,50,100,150]
                                       [--count 4500]

Per interval and I/O steering (``--io-cpu``: the I/O interrupts go to the precise channel's
vCPU, or to the guest's other vCPU): precise idle, precise under 1,733 I/O interrupts/s
(with ``--explain``: each late event's cause, and sd / p99 of the events the platform did
not disturb), and KVM's LAPIC timer under the same load and steering. Then the I/O
accounting (arrivals = covered + pending; interrupts, coalesced, held, forced) and each
"must show" bound of issue 22 with what was reached. Run it under the timing lock; a run
of both steerings takes several minutes: ``--io-cpu same`` and ``--io-cpu other`` split it.
"""

from __future__ import annotations

import argparse

from tickless.axes import parse_loads
from tickless.backends import measure
from tickless.results.io_counts import IoCounts
from tickless.results.paper import INTERVALS_US, PAPER_EVENTS
from tickless.results.schema import ResultRecord
from tickless.results.spec import MeasureSpec


def run(timer: str, d_us: int, count: int, load: str, io_cpu: str) -> ResultRecord:
    spec = MeasureSpec(
        timer=timer,
        interval_ns=d_us * 1000,
        count=count,
        loads=parse_loads(load),
        io_cpu=io_cpu,
        explain=timer == "precise",
    )
    return measure(spec)


def us(ns: float) -> str:
    return f"{ns / 1000:.3f}"


def row(d: int, cpu: str, idle: ResultRecord, pio: ResultRecord, lio: ResultRecord) -> str:
    c, io = pio.late_causes, pio.io
    assert c is not None and io is not None and lio.io is not None
    return (
        f"{d:4} {cpu:5} | {us(idle.stats.sd_ns):>7} {us(idle.lateness.p99_ns):>7} | "
        f"{us(pio.stats.sd_ns):>7} {us(pio.lateness.p99_ns):>7} "
        f"{us(c.undisturbed_sd_ns):>7} {us(c.undisturbed_p99_ns):>7} "
        f"{c.late:4}={c.io}+{c.preemption}+{c.loop_late}+{c.unexplained} | "
        f"{io.arrivals:5} {io.delivered:5} {io.coalesced:5} {io.held:5} {io.forced:4} "
        f"{io.pending:3} {io.achieved_per_s:6.0f} {io.handled_cpu0:5} "
        f"{io.cost_mean_ns / 1e3:5.1f} | "
        f"{us(lio.stats.sd_ns):>8} {lio.io.achieved_per_s:6.0f} "
        f"{lio.stats.sd_ns / max(pio.stats.sd_ns, 1):6.1f}"
    )


def verdicts(
    d: int, cpu: str, idle: ResultRecord, pio: ResultRecord, lio: ResultRecord
) -> list[str]:
    c, io = pio.late_causes, pio.io
    assert c is not None and io is not None
    p99 = pio.lateness.p99_ns
    lines = []
    ok = lambda good: "met" if good else "NOT met"  # noqa: E731
    if cpu == "same" and d >= 100:
        ratio = lio.stats.sd_ns / max(pio.stats.sd_ns, 1)
        lines += [
            f"d={d} same: p99 lateness {us(p99)} us <= 1: {ok(p99 <= 1000)}",
            f"d={d} same: undisturbed sd {us(c.undisturbed_sd_ns)} us <= 0.3: "
            f"{ok(c.undisturbed_sd_ns <= 300)}",
            f"d={d} same: lapic/precise sd {ratio:.1f} >= 10: {ok(ratio >= 10)} (lapic sd / "
            f"precise undisturbed sd: {lio.stats.sd_ns / max(c.undisturbed_sd_ns, 1):.0f})",
        ]
    elif cpu == "same":
        # The arithmetic: an interrupt costs more than d, so it delays the events it runs
        # over however it is timed; p99 <= 1 us allows 1 % of events late, so at most
        # (events/s / 100) / (late events per interrupt) interrupts a second.
        per_irq = c.io / max(io.delivered, 1)
        allowed_per_s = 1e6 / d / 100 / max(per_irq, 1e-9)
        need = io.requested_per_s / allowed_per_s
        lines.append(
            f"d={d} same: an I/O interrupt cost {io.cost_mean_ns / 1000:.0f} us > d: each "
            f"one made {per_irq:.2f} events late ({c.io} of {c.events}, "
            f"{100 * c.io / max(c.events, 1):.1f} %); coalescing reached "
            f"{io.arrivals / max(io.delivered, 1):.1f} arrivals per interrupt "
            f"({io.interrupts_per_s:.0f} interrupts/s); p99 <= 1 us needs <= "
            f"{allowed_per_s:.0f} interrupts/s, i.e. ~{need:.0f} arrivals per interrupt, "
            f"holding each ~{need / io.requested_per_s * 1e3:.1f} ms (max hold now 1 ms)"
        )
    if cpu == "other":
        idle_p99 = idle.lateness.p99_ns
        lines.append(
            f"d={d} other: p99 lateness {us(p99)} us <= 1: {ok(p99 <= 1000)}; vs precise "
            f"idle {us(idle_p99)} us within 10 %: {ok(p99 <= 1.1 * idle_p99 + 1)}; "
            f"vCPU 0 took {io.handled_cpu0} I/O interrupts"
        )
    lines.append(
        f"d={d} {cpu}: I/O accounted {io.arrivals} = {io.covered} covered + {io.pending} "
        f"pending: {ok(io.accounted)}; lost {io.lost}; achieved {io.achieved_per_s:.0f}/s "
        f"of {io.requested_per_s:.0f} within 5 %: "
        f"{ok(abs(io.achieved_per_s / io.requested_per_s - 1) <= 0.05)}"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=PAPER_EVENTS)
    parser.add_argument("--io-cpu", choices=("same", "other", "both"), default="both")
    parser.add_argument("--intervals", default=",".join(map(str, INTERVALS_US)))
    args = parser.parse_args()
    steerings = ("same", "other") if args.io_cpu == "both" else (args.io_cpu,)
    intervals = [int(x) for x in args.intervals.split(",")]
    print(
        f"{'d us':>4} {'io':5} | {'precise idle':^15} | {'precise, 1,733 I/O IRQ/s':^48} | "
        f"{'I/O accounting':^57} | {'lapic, same load':^23}"
    )
    print(
        f"{'':4} {'cpu':5} | {'sd':>7} {'p99':>7} | {'sd':>7} {'p99':>7} {'sd-und':>7} "
        f"{'p99-und':>7} late=io+pre+loop+? | {'arriv':>5} {'irqs':>5} {'coal':>5} "
        f"{'held':>5} {'forc':>4} {'pnd':>3} {'rate/s':>6} {'cpu0':>5} {'cost':>5} | "
        f"{'sd':>8} {'rate/s':>6} {'ratio':>6}"
    )
    goals: list[str] = []
    pooled: dict[str, list[IoCounts]] = {}
    for cpu in steerings:
        for d in intervals:
            idle = run("precise", d, args.count, "idle", cpu)
            pio = run("precise", d, args.count, "io", cpu)
            lio = run("lapic", d, args.count, "io", cpu)
            print(row(d, cpu, idle, pio, lio), flush=True)
            pooled.setdefault(cpu, []).extend(r.io for r in (pio, lio) if r.io is not None)
            goals += verdicts(d, cpu, idle, pio, lio)
    print(
        "\n(us; sd of intervals, p99 of lateness; -und: the events the platform did not "
        "disturb; cost: injection to the guest's return to ring 3, mean)"
    )
    print("\n".join(goals))
    for cpu, counts in pooled.items():  # a 45 ms run sees ~80 arrivals: +-11 % by chance
        arrivals = sum(c.arrivals for c in counts)
        seconds = sum(c.covered / c.achieved_per_s for c in counts if c.achieved_per_s)
        covered = sum(c.covered for c in counts)
        print(
            f"all {cpu} runs: {arrivals} arrivals, {covered} covered + "
            f"{sum(c.pending for c in counts)} pending, {sum(c.lost for c in counts)} lost; "
            f"achieved {covered / seconds if seconds else 0:.0f}/s of 1733"
        )


if __name__ == "__main__":
    main()
