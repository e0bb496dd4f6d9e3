"""``tickless sweep``: a grid of ``measure``, ``idle`` or ``sim fleet`` settings, run on Dask,
collected into one Parquet table (and a CSV beside it) that a rerun resumes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from tickless.cli.common import (
    OUTPUT_FILE,
    err_console,
    exit_interrupted,
    progress_bar,
    require_kvm,
)
from tickless.sweep.grid import load_grid_file, merge, parse_param

if TYPE_CHECKING:
    from tickless.sweep.point import Outcome, Point
    from tickless.sweep.store import SweepStore

EXAMPLES = """
\b
Examples:
  tickless sweep sim fleet --param guests=100,1000,10000 --param slop=0,50us,1ms \\
      --param mode=periodic,nohz-idle,nohz-full --duration 10s --out fleet.parquet
  tickless sweep measure --param timer=pv,lapic --param interval=50us,100us,1ms \\
      --count 2000 --out timers.parquet
  tickless sweep idle --grid idle.toml --out idle.parquet --scheduler tcp://10.0.0.5:8786
  tickless report fleet.parquet --out fleet.html --figures figs/

\b
A grid file (TOML; .yaml/.yml files are read as YAML) holds one NAME = VALUE or
NAME = [VALUES] line per setting; a value with a comma in it (a mixed fleet,
"periodic,nohz-full") can only be given there. For a repeatable option one value
joins its repeats with '+': --param load=idle,io,cpu+io.
"""


def _scheduler_address(value: str | None) -> str | None:
    """A scheduler's address as Dask takes it (PROTOCOL://HOST:PORT), checked before any
    connection is tried."""
    if value is None:
        return None
    scheme, sep, rest = value.partition("://")
    host, colon, port = rest.rpartition(":")
    if not (sep and scheme and host and colon and port.isdigit() and 0 < int(port) < 65536):
        raise click.BadParameter(
            f"{value!r} is not an address like tcp://HOST:PORT", param_hint="'--scheduler'"
        )
    return value


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": True},
    epilog=EXAMPLES,
)
@click.argument("command_args", nargs=-1, type=click.UNPROCESSED, metavar="COMMAND [OPTIONS]")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=V1,V2,...",
    help="A setting to sweep: an option of COMMAND and its values (repeatable; the grid "
    "is every combination).",
)
@click.option(
    "--grid",
    "grid_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A TOML or YAML file of settings to sweep (with or without --param).",
)
@click.option(
    "--out",
    "out_path",
    type=OUTPUT_FILE,
    required=True,
    help="The Parquet table (one row per point); the CSV goes beside it. An existing "
    "one is resumed: its finished points are skipped.",
)
@click.option(
    "--scheduler",
    metavar="tcp://HOST:PORT",
    callback=lambda ctx, param, value: _scheduler_address(value),
    help="Run on this Dask cluster (KVM points need workers started with "
    "--resources kvm=1, one per host). Default: a local cluster, one worker per CPU.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 1024),
    help="Workers of the local cluster.  [default: one per CPU]",
)
def sweep(
    command_args: tuple[str, ...],
    params: tuple[str, ...],
    grid_path: Path | None,
    out_path: Path,
    scheduler: str | None,
    workers: int | None,
) -> None:
    """Run COMMAND (measure, idle or sim fleet) over a grid of settings, as one table.

    Options after COMMAND are COMMAND's own and apply to every point; --param names them
    without dashes and gives the values to sweep, parsed as COMMAND parses them. Simulator
    points run in parallel; points on KVM run one at a time per host, after the simulated
    ones. Each finished point is written at once (Parquet and CSV, atomically): Ctrl-C or
    a crash loses nothing finished, and the same command run again resumes. A point that
    fails is recorded with its error and the sweep goes on; a rerun retries it.
    """
    from tickless.cli.sweep_points import build_points, find_command

    command, fixed = find_command(command_args)
    grids = [load_grid_file(grid_path)] if grid_path else []
    grids.append(dict(parse_param(p) for p in params))
    points = build_points(command, fixed, merge(grids))
    if any(p.timing for p in points) and scheduler is None:
        require_kvm()
    _run(command.name, points, out_path, scheduler, workers)


def _run(
    name: str, points: list[Point], out_path: Path, scheduler: str | None, workers: int | None
) -> None:
    from tickless.sweep.executor import connect, dashboard_link, run_points
    from tickless.sweep.store import SweepStore

    store = SweepStore(out_path)
    done = store.finished()
    todo = [p for p in points if p.key not in done]
    err_console.print(
        f"{len(points)} points of {name}: {len(points) - len(todo)} already in {out_path}, "
        f"{len(todo)} to run",
        highlight=False,
    )
    finished = 0
    if todo:
        try:
            with connect(scheduler, workers) as client:
                link = dashboard_link(client)
                if link:
                    err_console.print(f"Dask dashboard: {link}", highlight=False)
                with progress_bar(f"sweep {name}", len(todo), True) as update:

                    def on_done(point: Point, outcome: Outcome) -> None:
                        nonlocal finished
                        store.add(point.row(outcome))
                        finished += 1
                        update(finished)

                    run_points(client, todo, on_done)
        except KeyboardInterrupt:
            err_console.print(
                f"interrupted: {finished} of {len(todo)} points were written to {out_path}; "
                "run the same command again to resume",
                highlight=False,
            )
            exit_interrupted()
    _summary(store, points, out_path)


def _summary(store: SweepStore, points: list[Point], out_path: Path) -> None:
    keys = {p.key for p in points}
    failed = [r for r in store.failed() if r["sweep_point"] in keys]
    ok = len(keys) - len(failed)
    err_console.print(
        f"{ok} of {len(keys)} points in {out_path} (and {store.csv_path})", highlight=False
    )
    for row in failed:
        label = " ".join(f"{n}={row[n]}" for n in str(row["sweep_swept"]).split(",") if n)
        err_console.print(f"failed: {label or row['sweep_command']}: {row['sweep_error']}")
    if failed:
        raise click.ClickException(
            f"{len(failed)} of {len(keys)} points failed (their errors are in the sweep_error "
            "column); run the same command again to retry them"
        )
