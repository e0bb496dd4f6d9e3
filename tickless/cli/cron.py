"""tickless cron: guests that live by timers, on one dilated, warpable timeline."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import click
from rich.table import Table

from tickless.axes import TimerPath
from tickless.cli.common import (
    RUN_DURATION,
    SEED,
    console,
    json_option,
    require_kvm,
    time_options,
)
from tickless.cli.kept import run_and_keep
from tickless.errors import InputError
from tickless.results.cron import CronRecord, CronSpec
from tickless.units import DurationParam, format_duration_ns

PERIOD = DurationParam(max_ns=3600 * 10**9)


@click.command()
@click.option(
    "--every",
    "periods_ns",
    type=PERIOD,
    multiple=True,
    default=("1s",),
    show_default=True,
    help="A timer's period (repeat for more timers, up to 8: --every 1s --every 250ms). "
    "Each guest runs every timer; first runs are drawn from --seed, distinct in the group.",
)
@click.option(
    "--guests",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Guests started together on one timeline: one clock, warped only when all of "
    "their vCPUs are idle, so their timers interleave as they would in real time.",
)
@click.option(
    "--duration",
    "duration_ns",
    type=RUN_DURATION,
    default="10s",
    show_default=True,
    help="Guest time the schedules run for (with --warp-idle it takes far less wall time).",
)
@click.option(
    "--timer",
    type=click.Choice([TimerPath.PV.value, TimerPath.LGUEST.value]),
    default=TimerPath.PV.value,
    show_default=True,
    help="The device the guests wait on when not warping.",
)
@click.option(
    "--resolution",
    "resolution_ns",
    type=PERIOD,
    default="10ms",
    show_default=True,
    help="First runs are drawn on this grid: runs of deadlines this far apart must keep "
    "their order (closer ones may swap, as host wake-up noise allows).",
)
@time_options
@click.option("--seed", type=SEED, default=0, show_default=True, help="Draws the first runs.")
@json_option("Write the record (every run: guest, timer, deadline, ran) as JSON here.")
def cron(
    periods_ns: tuple[int, ...],
    guests: int,
    duration_ns: int,
    timer: str,
    resolution_ns: int,
    rate: Fraction,
    warp_idle: bool,
    seed: int,
    json_path: Path | None,
) -> None:
    """Run guests that live by timers and check, in guest time, when each timer ran.

    Every run is recorded with its deadline and the time it ran on the guests' shared
    clock. The run fails if any timer ran early. The record's sequence hash is the same
    for two runs with the same --seed and --warp-idle (deterministic runs).

    \b
    Examples:
      tickless cron --every 1s --duration 1000s --warp-idle    1,000 s of guest time, fast
      tickless cron --every 1s --duration 10s --dilation 0.1   10 s of guest time in 100 s
      tickless cron --guests 4 --every 1s --every 300ms --warp-idle --duration 60s
    """
    try:
        spec = CronSpec(
            periods_ns=periods_ns,
            duration_ns=duration_ns,
            guests=guests,
            rate=rate,
            warp_idle=warp_idle,
            seed=seed,
            timer=TimerPath(timer),
            resolution_ns=resolution_ns,
        )
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    require_kvm()
    from tickless.measure.cron import run_cron

    record = run_and_keep(
        "guest time", lambda progress: run_cron(spec, progress), render, json_path
    )
    if record.early:
        raise click.ClickException(f"{record.early} timer runs were early in guest time")


def render(record: CronRecord) -> None:
    table = Table(title=f"cron: {record.guests} guest(s), every {_periods(record)}")
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("timer runs", f"{record.runs:,}"),
        ("early (guest time)", str(record.early)),
        (
            "lateness mean / max",
            f"{record.lateness_mean_ns / 1e3:.1f} / {record.lateness_max_ns / 1e3:.1f} µs",
        ),
        ("out of deadline order", str(record.out_of_order)),
        ("interrupts early / timed", f"{record.interrupt_early} / {record.interrupts}"),
        ("interrupt lateness mean / max", _irq_us(record)),
        ("spin CPU time", f"{record.spin_cpu_s:.3f} s"),
        ("guest time", f"{record.guest_time_s:.3f} s"),
        ("wall time", f"{record.wall_time_s:.3f} s"),
        ("warped", f"{record.warped_s:.3f} s in {record.warps:,} warps"),
        ("dilation", record.dilation),
        ("host timer wake-ups", f"{record.host_wakeups:,}"),
        ("sequence sha256", record.sequence_sha256[:16]),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    for note in record.notes:
        console.print(f"note: {note}")


def _irq_us(record: CronRecord) -> str:
    """When the interrupts arrived (before the spin; "early" on pv is the advance)."""
    mean, late_max = record.interrupt_lateness_mean_ns, record.interrupt_lateness_max_ns
    if mean is None or late_max is None:
        return "n/a"
    return f"{mean / 1e3:.1f} / {late_max / 1e3:.1f} µs"


def _periods(record: CronRecord) -> str:
    return ", ".join(format_duration_ns(p) for p in record.periods_ns)
