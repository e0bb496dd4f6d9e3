"""What a fleet run found: counts per guest and per host CPU, and the run's totals, with
the cost model applied; written as the fields of an idle record (``tickless idle --json``)
plus what only a simulation has.

The engine counts in guest time; the rates are per wall second, as a real host sees them.
Without warp the wall time is the guest time over the dilation rate; with warp it is the
host's work: each host CPU runs its VMs' events back to back, flat out, so the busiest CPU
sets it (``guest_time_s``, ``wall_time_s``, ``warped_s``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from tickless.results.idle import (
    IDLE_SCHEMA_VERSION,
    GuestIdleCounts,
    IdleRates,
    fleet_fields,
    time_fields,
)
from tickless.sim import guest_model as gm
from tickless.sim import layout
from tickless.sim.fleet_spec import SECOND_NS, FleetSpec
from tickless.sim.layout import FleetArrays, Int64Array


@dataclass
class FleetGuestCounts(GuestIdleCounts):
    """One simulated guest: the fields of a real idle run's guest, then the simulation's."""

    cpu: int  # the host CPU its vCPU runs on
    mode: str
    workload: str
    useful_interrupts: int  # timer interrupts with something to do
    overruns: int  # periodic ticks its device skipped
    measure_events: int
    mean_lateness_ns: float | None  # None: no measurement events
    max_lateness_ns: int | None
    warped_s: float = 0.0  # guest time its clock jumped over while idle (--warp-idle)


@dataclass
class CpuCounts:
    """One host CPU: its timer queue's work, the I/O that delayed it, the modelled CPU."""

    cpu: int
    guests: int
    host_timer_wakeups: int
    host_timer_expiries: int
    injections: int
    io_interrupts: int
    io_busy_s: float
    wakeups_delayed_by_io: int
    io_delay_s: float
    wakeups_per_s: float
    expiries_per_s: float
    timer_thread_cpu_s: float
    modelled_cpu_s: float
    cpu_percent_of_core: float


@dataclass
class FleetResult(IdleRates):
    """One simulated fleet run, in the fields of ``IdleResult`` (``tickless idle --json``)
    plus what only a simulation has: ``per_cpu``, the model parameters, the cost model."""

    spec: FleetSpec
    duration_s: float  # wall time the rates are over: wall_time_s
    host_timer_wakeups: int
    host_timer_expiries: int
    injections: int
    timer_thread_cpu_s: float  # modelled: host timer wake-ups
    vcpu_cpu_s: float  # modelled: per-guest timer work and baseline
    process_cpu_s: float  # modelled: all of it, I/O handlers and the VMM's fixed cost included
    per_guest: list[FleetGuestCounts]
    per_cpu: list[CpuCounts]
    wall_s: float  # what the simulator itself took (not the simulated host's wall time)
    compile_s: float
    guest_time_s: float  # guest time every VM simulated (less than asked when interrupted)
    wall_time_s: float  # the simulated host's wall time for it
    warped_s: float  # guest time warped, mean over the VMs
    partial: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def injections_per_s(self) -> float:
        return self.injections / self.duration_s

    @property
    def events_per_wall_s(self) -> float:
        """Simulation speed: timer events (injections) per second the simulator took
        (compile excluded)."""
        return self.injections / self.wall_s if self.wall_s > 0 else 0.0

    def _fleet_fields(self) -> dict[str, Any]:
        """The fleet report of ``tickless idle``: a simulated fleet does not boot (no boot
        rate, no RSS); its periodic guests' ticks are counted against HZ, and it saturates
        (modelled) where its guests' modelled CPU would fill every host CPU: the model has
        no feedback, so it reports that count rather than missing ticks itself."""
        s = self.spec
        ticking = [g for g in self.per_guest if g.mode == "periodic"]
        expected = len(ticking) * s.hz * self.guest_time_s  # HZ ticks a guest second
        per_guest_ns = 1e9 * self.process_cpu_s / self.duration_s / s.guests
        fits = int(s.cpus * 1e9 // per_guest_ns) if per_guest_ns > 0 else None
        if s.warp_idle:  # a warped host runs flat out by design: nothing to saturate
            fits = None
        return fleet_fields(
            guests_requested=s.guests,
            boot_rate_guests_per_s=None,
            rss_per_guest_mib=None,
            ticks_expected=expected or None,
            ticks_delivered=sum(g.timer_interrupts for g in ticking),
            saturation_guests=fits + 1 if fits is not None and fits < s.guests else None,
        )

    def to_json_dict(self) -> dict[str, Any]:
        s = self.spec
        return {
            "schema_version": IDLE_SCHEMA_VERSION,
            "kind": "fleet",
            "backend": "sim",
            "guests": s.guests,
            "mode": s.mode,
            "hz": s.hz if any(m != "nohz-full" for m in s.modes) else None,
            "duration_s": self.duration_s,
            "host_timer_wakeups": self.host_timer_wakeups,
            "host_timer_expiries": self.host_timer_expiries,
            "injections": self.injections,
            "timer_thread_cpu_s": self.timer_thread_cpu_s,
            "vcpu_cpu_s": self.vcpu_cpu_s,
            "process_cpu_s": self.process_cpu_s,
            "per_guest": [asdict(g) for g in self.per_guest],
            "machine": {"simulator": "tickless.sim.engine", "numba": numba.__version__},
            "notes": self.notes,
            **self.rate_fields(),
            "injections_per_s": self.injections_per_s,
            **self._fleet_fields(),
            **time_fields(
                rate=s.rate,
                guest_time_s=self.guest_time_s,
                wall_time_s=self.wall_time_s,
                warped_s=self.warped_s,
            ),
            "timer_runs": None,  # the model counts runs per guest (per_guest), not per timer
            "early_timer_runs": None,
            "slop_ns": s.slop_ns,
            "miss_threshold": None,  # the model does not miss ticks: see saturation_guests
            "rss_mib": None,  # nothing boots: no memory, no boot CPU to report
            "host_mem_per_guest_mib": None,
            "boot_cpu_s": 0.0,
            "guest": "model",  # guests are the model's (see "model"), not a kernel that ran
            "guest_kernel": None,
            "guest_clockevent": None,
            "guest_clocksource": None,
            "clock_agreement_ppm": None,  # no kernel, no clocks of its own
            "clocksource_unstable": None,
            "console_time_ratio": None,
            "guest_spin_s": 0.0,  # the model's guests take their interrupts on time
            "host_busy_percent_of_core": None,  # no real host under the model
            "other_tasks_percent_of_core": None,
            "other_tasks_top": {},
            "boot_s": 0.0,
            "assists": {},
            "per_cpu": [asdict(c) for c in self.per_cpu],
            "partial": self.partial,
            "requested_duration_s": s.duration_ns / SECOND_NS,  # guest time
            "warp_idle": s.warp_idle,
            "model": {
                "cpus": s.cpus,
                "slop_ns": s.slop_ns,
                "workload": s.workload,
                "placement": s.placement,
                "period_ns": s.period_ns,
                "housekeeping_ns": list(s.housekeeping_ns),
                "measure_count": s.measure_count,
                "measure_interval_ns": s.measure_interval_ns,
                "io": [src.to_json_dict() for src in s.io],
                "seed": s.seed,
                "cost_model": s.cost.to_json_dict(),
            },
            "simulation": {
                "wall_s": self.wall_s,
                "compile_s": self.compile_s,
                "events_per_wall_s": self.events_per_wall_s,
            },
        }


def _guest_counts(
    spec: FleetSpec, a: FleetArrays, cpu_of: Int64Array, guest_cpu_ns: npt.NDArray[np.float64]
) -> list[FleetGuestCounts]:
    rows, dev = a.rows, a.dev
    irqs = rows[:, gm.IRQS]
    busy = rows[:, gm.WORKLOAD] == gm.CPU
    out = []
    for g in range(spec.guests):
        events = int(rows[g, gm.MEAS_EVENTS])
        out.append(
            FleetGuestCounts(
                name=f"guest{g}",
                timer_interrupts=int(irqs[g]),
                wakeups=0 if busy[g] else int(irqs[g]),
                housekeeping_runs=int(rows[g, gm.HK_RUNS]),
                hypercalls=int(rows[g, gm.HYPERCALLS]),
                exits=int(rows[g, gm.HYPERCALLS] + irqs[g]),
                vcpu_cpu_s=float(guest_cpu_ns[g]) / SECOND_NS,
                cpu=int(cpu_of[g]),
                mode=spec.modes[g % len(spec.modes)],
                workload=spec.workloads[g % len(spec.workloads)],
                useful_interrupts=int(rows[g, gm.USEFUL]),
                overruns=int(dev[g, layout.D_OVERRUNS]),
                measure_events=events,
                mean_lateness_ns=float(rows[g, gm.LATE_SUM_NS]) / events if events else None,
                max_lateness_ns=int(rows[g, gm.LATE_MAX_NS]) if events else None,
            )
        )
    return out


def _cpu_counts(
    spec: FleetSpec,
    a: FleetArrays,
    cpu_of: Int64Array,
    guest_cpu_ns: npt.NDArray[np.float64],
    wall_ns: float,
) -> tuple[list[CpuCounts], list[str]]:
    """Each CPU's counts over ``wall_ns``, and a note for each CPU a real host could not
    have kept up with. The engine's I/O times are guest ns: back to wall at the rate."""
    wall_s = wall_ns / SECOND_NS
    to_wall = 1.0 / float(spec.rate)
    out, notes = [], []
    for c in range(spec.cpus):
        row = a.cpu[c]
        mine = cpu_of == c
        wakeups, expiries = int(row[layout.C_WAKEUPS]), int(row[layout.C_EXPIRIES])
        injections = int(a.warp[mine, layout.W_EVENTS].sum()) if spec.warp_idle else expiries
        wake_ns = spec.cost.wakeup_cpu_ns(wakeups)
        io_busy_ns = int(row[layout.C_IO_BUSY_NS]) * to_wall
        cpu_ns = float(guest_cpu_ns[mine].sum()) + wake_ns + io_busy_ns
        out.append(
            CpuCounts(
                cpu=c,
                guests=int(mine.sum()),
                host_timer_wakeups=wakeups,
                host_timer_expiries=expiries,
                injections=injections,
                io_interrupts=int(row[layout.C_IO_IRQS]),
                io_busy_s=io_busy_ns / SECOND_NS,
                wakeups_delayed_by_io=int(row[layout.C_DELAYED]),
                io_delay_s=int(row[layout.C_DELAY_NS]) * to_wall / SECOND_NS,
                wakeups_per_s=wakeups / wall_s,
                expiries_per_s=expiries / wall_s,
                timer_thread_cpu_s=wake_ns / SECOND_NS,
                modelled_cpu_s=cpu_ns / SECOND_NS,
                cpu_percent_of_core=100.0 * cpu_ns / wall_ns,
            )
        )
        if cpu_ns > wall_ns * (1 + 1e-9):
            notes.append(
                f"cpu {c}: modelled load {100.0 * cpu_ns / wall_ns:,.0f} % of a core: a real "
                "host could not keep up, the simulation assumes it does (no feedback)"
            )
    return out, notes


def _times_ns(
    spec: FleetSpec, a: FleetArrays, cpu_of: Int64Array, partial: bool
) -> tuple[int, float]:
    """Guest time every VM reached, and the host's wall time for it: guest time over the
    rate, or warped, the busiest CPU's work (its VMs' events back to back, baseline aside;
    at least 1 ns, so that a fleet with nothing to do has finite rates)."""
    if not spec.warp_idle:
        guest_ns = a.now_ns if partial else spec.duration_ns
        return guest_ns, guest_ns / float(spec.rate)
    c = spec.cost
    rows = a.rows
    work_ns = c.per_interrupt_ns * rows[:, gm.IRQS] + c.per_hypercall_ns * rows[:, gm.HYPERCALLS]
    per_cpu_ns = np.bincount(cpu_of, weights=work_ns, minlength=spec.cpus)
    return a.now_ns, max(float(per_cpu_ns.max()), 1.0)


def _warp_notes(spec: FleetSpec, warped_s: float, guest_s: float) -> list[str]:
    if not spec.warp_idle:
        return []
    notes = [
        f"idle warp: each guest's clock jumped {warped_s:,.3f} s of its {guest_s:,.3f} s "
        "(mean); no host timer armed, the host runs its events back to back"
    ]
    if spec.slop_ns:
        notes.append("--slop has no effect with --warp-idle: warped guests arm no host timers")
    return notes


def summarize(
    spec: FleetSpec,
    a: FleetArrays,
    cpu_of: Int64Array,
    wall_s: float,
    compile_s: float,
    partial: bool,
) -> FleetResult:
    """Counts of a (possibly partial) run, with the cost model applied."""
    guest_ns, wall_ns = _times_ns(spec, a, cpu_of, partial)
    rows = a.rows
    guest_cpu_ns = spec.cost.guest_cpu_ns(rows[:, gm.IRQS], rows[:, gm.HYPERCALLS], wall_ns)
    per_cpu, notes = _cpu_counts(spec, a, cpu_of, guest_cpu_ns, wall_ns)
    warped_ns = a.warp[:, layout.W_WARPED_NS] if spec.warp_idle else np.zeros(spec.guests)
    warped_s = float(warped_ns.mean()) / SECOND_NS
    notes[:0] = _warp_notes(spec, warped_s, guest_ns / SECOND_NS)
    if partial:
        notes.insert(
            0,
            f"interrupted: simulated {guest_ns / SECOND_NS:.3f} s of guest time of "
            f"{spec.duration_ns / SECOND_NS:g} s; rates are over the simulated part",
        )
    per_guest = _guest_counts(spec, a, cpu_of, guest_cpu_ns)
    for g, w in zip(per_guest, warped_ns.tolist(), strict=True):
        g.warped_s = w / SECOND_NS
    return FleetResult(
        spec=spec,
        duration_s=wall_ns / SECOND_NS,
        host_timer_wakeups=int(a.cpu[:, layout.C_WAKEUPS].sum()),
        host_timer_expiries=int(a.cpu[:, layout.C_EXPIRIES].sum()),
        injections=sum(c.injections for c in per_cpu),
        timer_thread_cpu_s=sum(c.timer_thread_cpu_s for c in per_cpu),
        vcpu_cpu_s=float(guest_cpu_ns.sum()) / SECOND_NS,
        # The VMM's own loop runs on no CPU in particular: the process's, not a CPU's.
        process_cpu_s=sum(c.modelled_cpu_s for c in per_cpu)
        + spec.cost.fixed_cpu_ns(wall_ns) / SECOND_NS,
        per_guest=per_guest,
        per_cpu=per_cpu,
        wall_s=wall_s,
        compile_s=compile_s,
        guest_time_s=guest_ns / SECOND_NS,
        wall_time_s=wall_ns / SECOND_NS,
        warped_s=warped_s,
        partial=partial,
        notes=notes,
    )
