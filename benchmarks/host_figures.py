"""The figures the KVM tests once asserted, printed: they depend on how fast and how loaded
the host is, so the tests now check design properties (counts, guest time, order) and this
prints the numbers beside the bound a test used to hold them to. Goals, not tests.

    ./run bench host_figures

Run it alone on the machine (``flock /tmp/tickless-timing.lock ...``) for figures of the
machine; under load, for figures of the load. Each line: what, the figure, the old bound.
The Linux guest's rates are ``benchmarks/linux_guest.py``'s, dilation and warp wall times
``benchmarks/bending_time.py``'s, the simulator's prediction error ``sim_fit_kvm.py``'s.
"""

from __future__ import annotations

import re
import time

import numpy as np

from tickless.axes import TickMode
from tickless.backends import measure
from tickless.devices.config import GuestConfig
from tickless.guest.abi import Scenario
from tickless.host.load import HostCpuLoad
from tickless.measure.cron import run_cron
from tickless.measure.idle import run_idle
from tickless.results.cron import CronSpec
from tickless.results.idle import IdleSpec
from tickless.results.spec import MeasureSpec
from tickless.vmm.host import VmmHost

S = 1_000_000_000
MS = 1_000_000


def line(what: str, figure: str, old_bound: str) -> None:
    print(f"{what:58} {figure:>22}   (test once asserted {old_bound})")


def warps() -> None:
    r = run_idle(IdleSpec(guests=1, duration_ns=1000 * S, warp_idle=True))
    line("idle --warp-idle 1000 s: host timer wake-ups", f"{r.host_timer_wakeups}", "< 625")
    line(
        "idle --warp-idle 1000 s: wall / guest time",
        f"{r.wall_time_s / r.guest_time_s:.5f}",
        "< 0.1",
    )
    c = run_cron(CronSpec(periods_ns=(200 * MS,), duration_ns=2 * S, guests=2, rate=4))  # type: ignore[arg-type]
    line("cron, dilation 4, 2 s of guest time: wall s", f"{c.wall_time_s:.3f}", "0.25..2.0")


def paths() -> None:
    pv = measure(MeasureSpec(timer="pv", interval_ns=MS, count=300))
    kicks = re.search(r"kicked the host (\d+) times", " ".join(pv.notes))
    line(
        "pv 1 ms x 300: exits (DONE + kicks)",
        f"{pv.host.exits} ({kicks and kicks[1]} kicks)",
        "<= 30",
    )
    ex = measure(MeasureSpec(timer="pv", interval_ns=2 * MS, count=100, explain=True))
    assert ex.explain is not None
    line("pv 2 ms x 100 --explain: events by interrupt", f"{len(ex.explain.event_index)}", ">= 90")
    lg = measure(MeasureSpec(timer="lguest", interval_ns=100_000, count=500))
    line("lguest 100 us x 500: timer thread wake-ups", f"{lg.host.wakeups}", "<= 500")
    for timer in ("pv", "lguest", "lapic"):
        ab = measure(MeasureSpec(timer=timer, interval_ns=200_000, count=300, method="absolute"))
        err_us = (ab.stats.mean_ns - 200_000) / 1e3
        line(f"{timer} 200 us x 300 absolute: mean - d, us", f"{err_us:+.1f}", "|.| < 20")
    per = measure(
        MeasureSpec(timer="lguest", interval_ns=50_000, count=50, mode=TickMode.PERIODIC, hz=1000)
    )
    line(
        "lguest periodic 1000 HZ, 50 us asked: median ms",
        f"{np.median(per.intervals_ns) / MS:.3f}",
        "0.9..1.1",
    )
    pr = measure(MeasureSpec(timer="precise", interval_ns=300_000, count=300))
    line("precise 300 us x 300: injections", f"{pr.host.injections}", ">= 290")


def loads() -> None:
    with VmmHost() as host:
        m = host.boot(GuestConfig(interval_ns=200_000, count=4000, io_rate_per_s=1733.0))
        m.start()
        m.join(300)
        assert m.io is not None
        rate = m.io.stats.rate_per_s(int(m.shared.io_irq_count))
        line("I/O load asked 1733/s: handled per s", f"{rate:.0f}", "1560..1906")
    with HostCpuLoad() as load, VmmHost() as host:
        m = host.boot(GuestConfig(interval_ns=100_000, count=3000, second_vcpu_busy=True))
        t0 = time.monotonic()
        m.start()
        m.join(300)
        wall_s = time.monotonic() - t0
        host.stop_all("done")
        share = m.ap_cpu_ns / 1e9 / wall_s
    line("stress-ng beside: vCPU 1's CPU share of the run", f"{share:.2f}", "> 0.25")
    assert load.report is not None
    line("stress-ng beside: its cores busy", f"{load.report.cores_busy:.2f}", "> 0.5")


def fleets() -> None:
    r = run_idle(IdleSpec(guests=100, duration_ns=3 * S, slop_ns=20 * MS))
    rates = [g.timer_interrupts / r.duration_s for g in r.per_guest]
    line(
        "100 idle guests 3 s: IRQs/s per guest, min..max",
        f"{min(rates):.2f}..{max(rates):.2f}",
        "0.6..1.4",
    )
    d = r.to_json_dict()
    ratio = d["host_wakeups_per_s"] / d["guest_timer_irqs_per_s"]
    line("100 idle guests, 20 ms slop: host wake-ups / guest IRQs", f"{ratio:.2f}", "< 0.8")
    ramp = run_idle(
        IdleSpec(guests=40, mode=TickMode.PERIODIC, hz=5000, ramp_step=4, duration_ns=500 * MS)
    )
    line("periodic 5000 HZ ramp to 40 guests: saturation", f"{ramp.saturation_guests}", "< 40")
    p = run_idle(IdleSpec(guests=3, mode=TickMode.PERIODIC, hz=250, duration_ns=400 * MS))
    line(
        "3 periodic guests at 250 HZ: host expiries/s",
        f"{p.to_json_dict()['expiries_per_s']:.0f}",
        "600..800",
    )


def watchdog() -> None:
    with VmmHost(watchdog_s=1.0) as host:
        t0 = time.monotonic()
        runaway = host.boot(GuestConfig(scenario=Scenario.RUNAWAY_RING3))
        runaway.start()
        runaway.join(120)
        line(
            "watchdog 1 s: a ring-3 runaway stopped after, s", f"{time.monotonic() - t0:.2f}", "< 5"
        )


def main() -> None:
    warps()
    paths()
    loads()
    fleets()
    watchdog()


if __name__ == "__main__":
    main()
