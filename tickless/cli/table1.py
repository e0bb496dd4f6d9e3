"""tickless table1: our Table 1, every timer path x interval x load."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tickless.axes import GuestKind, Load, TimerPath, choices
from tickless.cli.common import (
    console,
    err_console,
    exit_interrupted,
    json_option,
    progress_bar,
    require_kvm,
)
from tickless.errors import TicklessError
from tickless.results.paper import INTERVALS_US, PAPER_EVENTS
from tickless.results.schema import ResultRecord, to_json_dict, write_json_atomic

if TYPE_CHECKING:
    from tickless.results.spec import MeasureSpec
    from tickless.results.table1 import Table1Plan


@click.command()
@click.option(
    "--quick", is_flag=True, help=f"300 events per run instead of the paper's {PAPER_EVENTS}."
)
@click.option(
    "--timer",
    "timers",
    multiple=True,
    type=click.Choice(choices(TimerPath)),
    help="Only these timer paths (repeatable). Default: all eight (a setting a path cannot "
    "run, such as the RTC at 10 µs, is listed and left out).",
)
@click.option(
    "--interval-us",
    "intervals_us",
    multiple=True,
    type=click.IntRange(1, 1_000_000),
    help="Only these intervals in µs (repeatable). Default: the paper's "
    + ", ".join(map(str, INTERVALS_US))
    + ".",
)
@click.option(
    "--load",
    "loads",
    multiple=True,
    type=click.Choice(choices(Load)),
    help="Only these loads (repeatable). Default: idle, cpu, io.",
)
@click.option(
    "--guest",
    "guests",
    multiple=True,
    type=click.Choice(choices(GuestKind)),
    help="Which guests' rows (repeatable). Default: small. linux adds a Linux kernel's pv, lguest, "
    "lapic, hpet and pit rows (idle load), booting one guest per row.",
)
@json_option("Write every row as a result record (a JSON list), rewritten after each run.")
def table1(
    quick: bool,
    timers: tuple[str, ...],
    intervals_us: tuple[int, ...],
    loads: tuple[str, ...],
    guests: tuple[str, ...],
    json_path: Path | None,
) -> None:
    """Run every timer path at the paper's intervals, idle and loaded, and print our
    Table 1 beside the paper's. Ctrl-C keeps the rows finished so far."""
    from tickless.report.table1 import render_table1
    from tickless.results.spec import MeasurementInterrupted
    from tickless.results.table1 import QUICK_COUNT, Table1Plan

    plan = Table1Plan(
        timers=tuple(map(TimerPath, timers)) or Table1Plan.timers,
        intervals_us=intervals_us or Table1Plan.intervals_us,
        loads=tuple(map(Load, loads)) or Table1Plan.loads,
        count=QUICK_COUNT if quick else PAPER_EVENTS,
        guests=tuple(map(GuestKind, guests)) or Table1Plan.guests,
    )
    require_kvm()
    records: list[ResultRecord] = []

    def keep(record: ResultRecord) -> None:
        records.append(record)
        if json_path:
            write_json_atomic(json_path, [to_json_dict(r) for r in records])

    interrupted = False
    try:
        with progress_bar(f"table1: {plan.runs} runs", plan.runs, True) as update:
            run_table1(plan, keep, on_run_start=lambda spec: update(len(records)))
    except (KeyboardInterrupt, MeasurementInterrupted):  # the run in progress is dropped
        interrupted = True
    except TicklessError as exc:  # keep the finished rows, say how far it got
        if records:
            render_table1(records, console)
        raise click.ClickException(f"{exc} (after {len(records)} of {plan.runs} runs)") from None
    if records:
        render_table1(records, console)
    for reason in plan.skipped():  # under the table, where the missing rows are noticed
        err_console.print(f"left out: {reason}")
    if json_path and records:
        err_console.print(f"{len(records)} rows written to {json_path}")
    if interrupted:
        err_console.print(f"interrupted after {len(records)} of {plan.runs} runs")
        exit_interrupted()


def run_table1(
    plan: Table1Plan,
    on_record: Callable[[ResultRecord], None],
    on_run_start: Callable[[MeasureSpec], None] | None = None,
) -> list[ResultRecord]:
    """Run the plan; each record goes to ``on_record`` as soon as it exists (so Ctrl-C
    loses at most the run in progress)."""
    from tickless.backends import measure

    records = []
    for spec in plan.specs():
        if on_run_start is not None:
            on_run_start(spec)
        record = measure(spec)
        records.append(record)
        on_record(record)
    return records
