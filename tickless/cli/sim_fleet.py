"""``tickless sim fleet``: what a fleet of guests' timers costs the host, simulated.

The simulated counterpart of ``tickless idle``: same questions, same JSON fields (plus
``backend: "sim"``, ``kind: "fleet"``, ``per_cpu`` and the model), for fleets far larger
than a real machine here can hold.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from tickless.cli.common import (
    SEED,
    DilationParam,
    console,
    count_option,
    err_console,
    exit_interrupted,
    json_option,
    progress_bar,
    settings_of,
    slop_option,
)
from tickless.report.fleet import fleet_table
from tickless.results.schema import write_json_atomic
from tickless.units import DURATION, format_duration_ns, parse_duration_ns

if TYPE_CHECKING:
    from tickless.sim.fleet import FleetResult, FleetSpec, IoSource

PROGRESS_EVENTS = 5_000_000  # runs expected to simulate more than this get a progress bar


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    group.add_command(fleet)


def parse_io(text: str) -> IoSource:
    """``RATE,HANDLER[,CPU]``, e.g. ``1733/s,5us,0``: Poisson I/O interrupts on a CPU."""
    from tickless.sim.fleet import IoSource

    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise click.BadParameter(
            f"{text!r}: expected RATE,HANDLER[,CPU] such as 1733/s,5us,0", param_hint="'--io'"
        )
    rate_text = parts[0].removesuffix("/s")
    try:
        rate = float(rate_text)
        handler_ns = parse_duration_ns(parts[1], allow_zero=True)
        cpu = int(parts[2]) if len(parts) == 3 else 0
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: {exc}", param_hint="'--io'") from None
    return IoSource(rate_per_s=rate, handler_ns=handler_ns, cpu=cpu)


def parse_housekeeping(text: str) -> tuple[int, ...]:
    if text.strip() in ("", "none"):
        return ()
    try:
        return tuple(parse_duration_ns(p.strip()) for p in text.split(","))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--housekeeping'") from None


def fleet_spec(**kwargs: Any) -> FleetSpec:
    """The spec, or one line saying what is wrong; ``mode`` None: periodic, or nohz-full
    (one-shot at the timers' exact times) when the guests warp."""
    from tickless.sim.fleet import FleetSpec, check_memory

    if kwargs.get("mode") is None:
        kwargs["mode"] = "nohz-full" if kwargs.get("warp_idle") else "periodic"
    try:
        spec = FleetSpec(**kwargs)
        check_memory(spec)
    except (ValueError, MemoryError) as exc:
        raise click.UsageError(str(exc)) from None
    return spec


def fleet_spec_from_options(params: dict[str, Any]) -> FleetSpec:
    """The spec the options ask for (the command's and a sweep point's: one path): options
    stored under a field's name, the two that are parsed from text, given here."""
    from tickless.sim.fleet import FleetSpec

    return fleet_spec(
        **settings_of(FleetSpec, params),
        housekeeping_ns=parse_housekeeping(params["housekeeping"]),
        io=tuple(parse_io(t) for t in params["io_text"]),
    )


@click.command()
@click.option("--guests", type=int, default=10, show_default=True, help="Guests in the fleet.")
@click.option("--hz", type=int, default=1000, show_default=True, help="Guest tick rate.")
@click.option(
    "--mode",
    default=None,
    help="periodic, nohz-idle or nohz-full; a comma list mixes them (dealt round-robin). "
    "Default: periodic, or nohz-full with --warp-idle.",
)
@click.option(
    "--duration",
    "duration_ns",
    type=DURATION,
    default="60s",
    show_default=True,
    help="Guest time to simulate, warped or not: at --dilation R it takes duration/R of "
    "wall time unwarped, and a 1000s --warp-idle run simulates 1000 s of guest time in "
    "however little wall time its events cost.",
)
@click.option(
    "--dilation",
    "rate",
    type=DilationParam(),
    default="1",
    show_default=True,
    help="Guest seconds per wall second (0.1: guest clocks at a tenth of wall speed). Guest "
    "timers are in guest time; host costs, --slop and --io in wall time.",
)
@click.option(
    "--warp-idle",
    is_flag=True,
    help="A VM whose vCPU idles on a deadline jumps its guest clock to it at once (BLOCK "
    "hypercall; no host timer, no host wake-up); each VM is its own timeline. Tickless "
    "guests only.",
)
@click.option("--cpus", type=int, default=2, show_default=True, help="Host CPUs.")
@slop_option("Host timer slop per CPU queue (Xen's timer_slop).")
@click.option(
    "--workload",
    default="idle",
    show_default=True,
    help="idle (sparse housekeeping timers), cpu (busy) or measure (N events every d); "
    "a comma list mixes them.",
)
@click.option(
    "--placement",
    default="round-robin",
    show_default=True,
    help="vCPUs onto host CPUs: round-robin, block, or cpu:N (all pinned to CPU N).",
)
@click.option(
    "--housekeeping",
    default="1s,4s",
    show_default=True,
    help="Periods of each guest's own timers (at most two; 'none': no timers).",
)
@count_option("measure workload: events per guest.", name="measure_count")
@click.option(
    "--interval",
    "measure_interval_ns",
    type=DURATION,
    default="1ms",
    show_default=True,
    help="measure workload: d, the interval between events.",
)
@click.option(
    "--io",
    "io_text",
    multiple=True,
    metavar="RATE,HANDLER[,CPU]",
    help="Host I/O interrupts, e.g. 1733/s,5us,0 (repeatable).",
)
@click.option(
    "--seed",
    type=SEED,
    default=0,
    show_default=True,
    help="Phases and I/O arrivals are drawn from it: a run is deterministic.",
)
@click.option(
    "--cost-model",
    default="box",
    show_default=True,
    help="Host CPU per timer event: box (fitted on this host), kvm-2007, or a JSON file "
    "tickless sim fit wrote from idle records (see tickless/sim/cost.py).",
)
@json_option("Write the result (kind 'fleet', idle-result fields) here.")
def fleet(
    guests: int,
    hz: int,
    mode: str | None,
    duration_ns: int,
    rate: Fraction,
    warp_idle: bool,
    cpus: int,
    slop_ns: int,
    workload: str,
    placement: str,
    housekeeping: str,
    measure_count: int,
    measure_interval_ns: int,
    io_text: tuple[str, ...],
    seed: int,
    cost_model: str,
    json_path: Path | None,
) -> None:
    """Simulate a fleet of guests and count what their timers cost the host.

    Host timer events/s, injections/s and wake-ups/s, per guest and per host CPU, and the
    host CPU that costs under a cost model calibrated on real runs. Ctrl-C stops early and
    reports what was simulated so far.
    """
    from tickless.sim.fleet import compile_engine, run_fleet

    spec = fleet_spec_from_options(click.get_current_context().params)
    try:
        with err_console.status("compiling the simulator (cached after the first run)"):
            compile_s = compile_engine()
        show = spec.expected_events() > PROGRESS_EVENTS
        with progress_bar(f"{guests:,} guests, {spec.mode}", 1.0, show) as update:
            result, _ = run_fleet(spec, progress=update, compile_s=compile_s)
    except KeyboardInterrupt:
        err_console.print("interrupted before anything was simulated")
        exit_interrupted()
    _print(result)
    if json_path:
        write_json_atomic(json_path, result.to_json_dict())
        err_console.print(f"result written to {json_path}")
    if result.partial:
        exit_interrupted()


def _print(r: FleetResult) -> None:
    s = r.spec
    title = f"{s.guests:,} simulated guests, {s.mode}"
    if any(m != "nohz-full" for m in s.modes):
        title += f" at {s.hz} HZ"
    title += f", {s.workload}, {r.guest_time_s:g} s of guest time"
    if s.rate != 1 or s.warp_idle:
        title += f" ({r.wall_time_s:.4g} s wall{', warped' if s.warp_idle else ''})"
    title += f" on {s.cpus} host CPU(s)"
    if s.rate != 1:
        title += f", dilation {s.rate}"
    if s.slop_ns:
        title += f", slop {format_duration_ns(s.slop_ns)}"
    table = Table(title=title)
    table.add_column("host-side count")
    table.add_column("value", justify="right")
    irqs = [g.timer_interrupts / r.duration_s for g in r.per_guest]
    useful = sum(g.useful_interrupts for g in r.per_guest)
    total = sum(g.timer_interrupts for g in r.per_guest)
    table.add_row("host timer events/s (expiries)", f"{r.expiries_per_s:,.1f}")
    table.add_row("injections/s", f"{r.injections_per_s:,.1f}")
    table.add_row("host timer wake-ups/s", f"{r.wakeups_per_s:,.1f}")
    table.add_row("  per guest", f"{r.wakeups_per_s / s.guests:,.2f}")
    table.add_row("timer interrupts/s per guest", f"{r.interrupts_per_guest_per_s:,.2f}")
    if s.guests > 1:
        table.add_row("  min / max over guests", f"{min(irqs):,.2f} / {max(irqs):,.2f}")
    table.add_row("  with something to do", f"{100 * useful / total:.1f} %" if total else "-")
    cost_label = f"modelled host CPU ({s.cost.name})"
    table.add_row(cost_label, f"{r.cpu_percent_of_core:,.1f} % of a core")
    per_guest_ms = 1000 * r.vcpu_cpu_s / s.guests / r.duration_s
    table.add_row("  per guest", f"{per_guest_ms:.3f} ms/s")
    measured = [g for g in r.per_guest if g.measure_events]
    if measured:
        events = sum(g.measure_events for g in measured)
        late_ns = sum((g.mean_lateness_ns or 0.0) * g.measure_events for g in measured) / events
        table.add_row(
            "measure: events, mean lateness", f"{events:,}, {format_duration_ns(late_ns)}"
        )
    console.print(table)
    console.print(fleet_table("the fleet report (as tickless idle prints it)", r.to_json_dict()))
    cpus = Table(title="per host CPU")
    for name in ("cpu", "guests", "wake-ups/s", "injections/s", "I/O irqs/s", "modelled CPU"):
        cpus.add_column(name, justify="right")
    for c in r.per_cpu[:32]:
        cpus.add_row(
            str(c.cpu),
            f"{c.guests:,}",
            f"{c.wakeups_per_s:,.1f}",
            f"{c.injections / r.duration_s:,.1f}",
            f"{c.io_interrupts / r.duration_s:,.1f}",
            f"{c.cpu_percent_of_core:,.1f} %",
        )
    console.print(cpus)
    if len(r.per_cpu) > 32:
        console.print(f"({len(r.per_cpu) - 32} more host CPUs in --json)")
    console.print(
        f"simulated {r.guest_time_s:g} s of guest time in {r.wall_s:.2f} s "
        f"({r.events_per_wall_s / 1e6:.2f} M timer events/s; compile/load {r.compile_s:.2f} s)"
    )
    for note in r.notes:
        console.print(f"note: {note}")
