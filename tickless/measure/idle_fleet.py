"""Booting a fleet of idle guests: each guest starts as soon as it exists (so guests boot
while later ones are still being created), the host waits until every one runs its
workload, and periodic fleets ramp up step by step until ticks start to be missed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tickless.devices.config import GuestConfig
from tickless.errors import GuestStopped
from tickless.host.cputime import process_cpu_s
from tickless.measure.fleet_limits import vcpu_stacks
from tickless.measure.kvm import console_tail
from tickless.results.idle import RampStep
from tickless.timers.timeline import Timeline
from tickless.vmm.host import VmmHost
from tickless.vmm.machine import GuestMachine

Progress = Callable[[str, float], None]  # (what the run is doing, fraction done)
POLL_S = 0.05
RAMP_SETTLE_S = 0.05  # after a step's guests are ready: let their first ticks be asked for


def rss_mib() -> float:
    """This process's resident memory (VmRSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def failed(machines: Sequence[GuestMachine]) -> GuestMachine | None:
    return next((m for m in machines if not m.running and not m.outcome.ok), None)


def stopped(m: GuestMachine) -> GuestStopped:
    return GuestStopped(f"{m.name} stopped: {m.outcome.reason}" + console_tail(m.outcome.console))


@dataclass
class BootCost:
    """What booting the fleet took: wall time until the last guest ran its workload, and
    the process's CPU meanwhile (the steady window starts after it)."""

    boot_s: float = 0.0
    cpu_s: float = 0.0


def boot_guests(
    host: VmmHost,
    configs: Sequence[GuestConfig],
    machines: list[GuestMachine],
    timeout_s: float,
    progress: Progress | None = None,
    cost: BootCost | None = None,
    timeline: Timeline | None = None,
) -> None:
    """Create and start a guest for each of ``configs`` (appended to ``machines``), then
    wait until every one has started its workload; a guest that stops first is an error."""
    t0, cpu0 = time.monotonic(), process_cpu_s()
    new: list[GuestMachine] = []
    total = len(machines) + len(configs)
    with vcpu_stacks():
        for cfg in configs:
            machine = host.boot(cfg, f"guest{len(machines)}", timeline=timeline)
            machines.append(machine)
            new.append(machine)
            machine.start()
            if progress is not None and len(new) % 32 == 0:
                progress("booting", (len(machines) - len(new) / 2) / total)
    pending = [m for m in new if not int(m.shared.ready)]
    while pending:
        time.sleep(POLL_S)
        bad = failed(pending)
        if bad is not None:
            raise stopped(bad)
        pending = [m for m in pending if not int(m.shared.ready)]
        if progress is not None:
            progress("booting", (len(machines) - len(pending)) / total)
        if time.monotonic() - t0 > timeout_s:
            host.stop_all(f"did not boot in {timeout_s:g} s")
            raise stopped(pending[0])
    if cost is not None:
        cost.boot_s += time.monotonic() - t0
        cost.cpu_s += process_cpu_s() - cpu0


def ramp_step(machines: Sequence[GuestMachine], hz: int) -> RampStep:
    """Ticks every guest took in a short window against ``guests x hz x window``: long
    enough that one tick more or less at either end is under 2 % of a guest's count."""
    window_s = max(0.5, 50.0 / hz)
    time.sleep(RAMP_SETTLE_S)
    before = [int(m.shared.irq_count) for m in machines]
    t0, cpu0 = time.monotonic(), process_cpu_s()
    time.sleep(window_s)
    after = [int(m.shared.irq_count) for m in machines]
    took_s = time.monotonic() - t0
    bad = failed(machines)
    if bad is not None:
        raise stopped(bad)
    return RampStep(
        guests=len(machines),
        window_s=took_s,
        ticks_expected=len(machines) * hz * took_s,
        ticks_delivered=sum(a - b for a, b in zip(after, before, strict=True)),
        cpu_percent_of_core=100.0 * (process_cpu_s() - cpu0) / took_s,
    )


def boot_fleet(
    host: VmmHost,
    configs: Sequence[GuestConfig],
    step: int,
    periodic_hz: int | None,
    miss_threshold: float,
    timeout_s: float,
    progress: Progress | None = None,
    timeline: Timeline | None = None,
) -> tuple[list[GuestMachine], BootCost, list[RampStep], int | None]:
    """Boot ``configs`` ``step`` at a time; with ``periodic_hz``, measure the ticks after
    each step and stop adding guests at the first step that misses more than
    ``miss_threshold`` of them (returned as the saturation point)."""
    machines: list[GuestMachine] = []
    cost, ramp = BootCost(), []
    for first in range(0, len(configs), step):
        batch = configs[first : first + step]
        boot_guests(host, batch, machines, timeout_s, progress, cost, timeline)
        if periodic_hz is None or step >= len(configs):
            continue
        ramp.append(ramp_step(machines, periodic_hz))
        if progress is not None:
            progress("ramping up", len(machines) / len(configs))
        if ramp[-1].missed_fraction > miss_threshold:
            return machines, cost, ramp, len(machines)
    return machines, cost, ramp, None


def run_to_end(
    machines: Sequence[GuestMachine],
    origin_ns: int,
    duration_ns: int,
    progress: Callable[[float], None] | None = None,
) -> bool:
    """Until every guest has run its ``duration_ns`` of guest time from ``origin_ns`` and
    stopped by itself (DONE): a warped group outruns any poll of the host's. Reports the
    fraction of guest time done; True when Ctrl-C cut it short."""
    timeline = machines[0].timeline
    try:
        while any(m.running for m in machines):
            machines[0].join(POLL_S)
            bad = failed(machines)
            if bad is not None:
                raise stopped(bad)
            if progress is not None:
                done = (timeline.now_ns() - origin_ns) / duration_ns
                progress(min(1.0, max(0.0, done)))
    except KeyboardInterrupt:
        return True
    return False
