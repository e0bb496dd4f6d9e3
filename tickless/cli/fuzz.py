"""tickless fuzz: untrusted guests making random calls; the host must survive them all."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.table import Table

from tickless.cli.common import (
    SEED,
    console,
    err_console,
    exit_interrupted,
    json_option,
    progress_bar,
    require_kvm,
)
from tickless.errors import InputError
from tickless.measure.fuzz_record import MAX_CALLS

if TYPE_CHECKING:
    from tickless.measure.fuzz_record import FuzzRecord

TOP = 12  # rows of stops and rejections shown (the JSON has them all)


@click.command()
@click.option(
    "--calls",
    type=click.IntRange(1, MAX_CALLS),
    default=100_000,
    show_default=True,
    help="Random calls to make, guest after guest (~1,800 a second here: 100,000 take a minute).",
)
@click.option(
    "--seed",
    type=SEED,
    default=1,
    show_default=True,
    help="Call i does what (seed, i) says: the same seed gives the same counts.",
)
@click.option(
    "--runaway/--no-runaway",
    default=True,
    show_default=True,
    help="Include calls that loop with interrupts off until the watchdog stops the guest "
    "(about 1 in 10,000; each costs the watchdog's 0.5 s bound).",
)
@click.option(
    "--runaway-armed",
    is_flag=True,
    help="Those loops leave the guest's timers and I/O load running, so the host keeps "
    "injecting interrupts the guest never takes: the watchdog's harder case.",
)
@json_option("Write the fuzz record (kind 'fuzz') here.")
def fuzz(calls: int, seed: int, runaway: bool, runaway_armed: bool, json_path: Path | None) -> None:
    """Boot guests that make random hypercalls, port and MMIO accesses, scribble the pages
    the host reads, raise exceptions and loop with interrupts off, until CALLS calls are
    made. Counts stops and rejections by reason; host exceptions and hangs must be 0 (exit
    status 1 otherwise)."""
    from tickless.measure.fuzz import FuzzSpec, run_fuzz

    try:
        spec = FuzzSpec(calls=calls, seed=seed, runaway=runaway, runaway_armed=runaway_armed)
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    if runaway_armed and not runaway:
        raise click.UsageError("--runaway-armed needs --runaway")
    require_kvm()
    with progress_bar(f"fuzz seed {seed}", calls, True) as update:
        record = run_fuzz(spec, progress=update)
    _show(record)
    if json_path:
        from tickless.results.schema import write_json_atomic

        write_json_atomic(json_path, record.to_json_dict())
        err_console.print(
            f"{'partial ' if record.interrupted else ''}record written to {json_path}"
        )
    if record.interrupted:
        err_console.print(f"interrupted after {record.calls:,} of {record.calls_asked:,} calls")
        exit_interrupted()
    if record.aborted:
        raise click.ClickException(f"fuzz run aborted: {record.aborted}")
    if record.host_exceptions or record.hangs:
        raise click.ClickException(
            f"the host failed: {record.host_exceptions} host exceptions, {record.hangs} hangs"
        )


def _show(record: FuzzRecord) -> None:
    table = Table(title=f"fuzz, seed {record.seed}: {record.calls:,} calls", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("guests booted", f"{record.guests:,}")
    table.add_row("calls/s", f"{record.calls_per_s:,.0f} ({record.wall_s:.1f} s)")
    table.add_row("hypercalls rejected", f"{sum(record.rejected.values()):,}")
    table.add_row("host exceptions (must be 0)", str(record.host_exceptions))
    table.add_row("hangs (must be 0)", str(record.hangs))
    console.print(table)
    _show_counts("guest stops by reason", record.stops)
    _show_counts("rejected hypercalls by call and errno", record.rejected)
    for detail in record.host_exception_details + record.hang_details:
        err_console.print(detail, highlight=False, markup=False)


def _show_counts(title: str, counts: Counter[str]) -> None:
    table = Table(title=title)
    table.add_column("reason")
    table.add_column("n", justify="right")
    for reason, n in counts.most_common(TOP):
        table.add_row(escape(reason), f"{n:,}")
    if len(counts) > TOP:
        rest = sum(n for _, n in counts.most_common()[TOP:])
        table.add_row(f"({len(counts) - TOP} more reasons)", f"{rest:,}")
    console.print(table)
