"""``tickless sim table1``, ``tickless sim fit`` and ``tickless sim profiles``: platform
profiles, where they come from, and how well they predict the paper's Table 1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich import box
from rich.table import Table

from tickless.cli.common import OUTPUT_FILE, SEED, console, count_option, err_console, progress_bar
from tickless.results.paper import PAPER_EVENTS, paper_rows
from tickless.results.schema import load_results, write_json_atomic

if TYPE_CHECKING:
    from tickless.sim.cost import CostModel
    from tickless.sim.cost_fit import FitInput
    from tickless.sim.table1 import Table1Row

WIDE_TABLE_COLUMNS = 150


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    group.add_command(table1)
    group.add_command(fit)
    group.add_command(profiles)


def _paper_sd(sd_us: float) -> str:
    return f"{sd_us:.3f}" if sd_us < 1000 else f"{sd_us:.0f}"  # as printed in the paper


@click.command()
@count_option(f"Timer events per simulated row (the paper used {PAPER_EVENTS}).", minimum=2)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Simulator seed.")
@click.option("--json", "json_path", type=OUTPUT_FILE, help="Write every row and the summary here.")
def table1(count: int, seed: int, json_path: Path | None) -> None:
    """Simulate every row of the paper's Table 1 and print it beside the paper's.

    Each platform is fitted on its idle 50 us row only, and the disk-handler cost on
    Linux's heavy-IO 50 us row; every other row is a prediction. The error columns are
    simulated minus paper; "sd x" is simulated sd over the paper's.
    """
    from tickless.sim.table1 import simulate_table1, summarize_errors, table1_to_json

    total = len(paper_rows())
    with progress_bar("simulating Table 1", total, True) as update:
        rows = simulate_table1(count=count, seed=seed, progress=update)
    console.print(_table1_table(rows, count, seed))
    console.print("Error of the mean, |sim - paper| / paper:", style="bold")
    for g in summarize_errors(rows):
        console.print(
            f"  {g.group} ({g.rows} rows): median {g.median_abs_pct:.1f} %, "
            f"max {g.max_abs_pct:.1f} % ({g.worst}), within 10 %: {g.within_10pct}/{g.rows}; "
            f"sd sim/paper: median {g.median_sd_ratio:.2f}, within 2x: {g.sd_within_2x}/{g.rows}",
            highlight=False,
        )
    if json_path:
        write_json_atomic(json_path, table1_to_json(rows, count, seed))
        err_console.print(f"table written to {json_path}")


def _table1_table(rows: list[Table1Row], count: int, seed: int) -> Table:
    """Paper and simulated rows side by side; the CIs only where the terminal is wide."""
    wide = console.width >= WIDE_TABLE_COLUMNS  # the CIs only fit a wide terminal
    table = Table(
        title=f"Table 1, paper vs simulator ({count} events a row, seed {seed}), µs",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1) if wide else (0, 0),
    )
    table.add_column("d", justify="right")
    table.add_column("load")
    table.add_column("platform", no_wrap=True)
    for name in ("paper mean", "paper sd", "paper CI") if wide else ("paper mean", "paper sd"):
        table.add_column(name, justify="right")
    for name in ("sim mean", "sim sd", "sim 99% CI") if wide else ("sim mean", "sim sd"):
        table.add_column(name, justify="right")
    for name in ("err", "err %", "sd x") if wide else ("err %", "sd x"):
        table.add_column(name, justify="right")
    table.add_column("row")
    previous: tuple[int, str] | None = None
    for r in rows:
        p, s = r.paper, r.sim
        if previous is not None and previous != (p.interval_us, p.load):
            table.add_section()
        previous = (p.interval_us, p.load)
        paper_cells = [f"{p.mean_us:.3f}", _paper_sd(p.sd_us)]
        sim_cells = [f"{s.mean_ns / 1000:.3f}", f"{s.sd_ns / 1000:.3f}"]
        if wide:
            paper_cells.append(f"[{p.ci99_low_us:.3f}, {p.ci99_high_us:.3f}]")
            sim_cells.append(f"[{s.ci99_low_ns / 1000:.3f}, {s.ci99_high_ns / 1000:.3f}]")
        error_cells = [f"{r.mean_error_pct:+.1f}", f"{r.sd_ratio:.2f}"]
        if wide:
            error_cells.insert(0, f"{r.mean_error_us:+.3f}")
        table.add_row(
            str(p.interval_us),
            p.load,
            p.platform,
            *paper_cells,
            *sim_cells,
            *error_cells,
            r.status if wide else r.status[:4],
            style="dim" if r.fitted else None,
        )
    return table


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", help="Profile name (default: fitted-<result file name>).")
@click.option(
    "--record",
    "index",
    type=click.IntRange(0),
    help="Which record of a multi-record result file to fit on (0 is the first).",
)
@click.option("--out", type=OUTPUT_FILE, help="Write the profile here (default: print it).")
def fit(results: tuple[Path, ...], name: str | None, index: int | None, out: Path | None) -> None:
    """Fit a model of this host from the JSON records of real runs.

    From one `tickless measure` record: a platform profile. The run's delivery latencies
    (lateness) become its delivery model; `tickless measure --backend sim --platform
    PROFILE.json --interval X` then predicts other intervals. Use an idle, tickless run of
    --timer lguest, lapic or host (pv and precise wake early and spin: no delivery to fit).

    From one or more `tickless idle` records (e.g. 10 and 100 guests): a fleet cost model,
    CPU per interrupt, hypercall, host wake-up, guest and second, by least squares;
    `tickless sim fleet --cost-model MODEL.json --guests 1000` then predicts a fleet size
    the fit never saw.
    """
    if any(_is_idle_file(p) for p in results):
        _fit_cost(results, name, out)
        return
    if len(results) != 1:
        raise click.UsageError("a platform profile is fitted on one measure record")
    result = results[0]
    from tickless.sim.platforms import fit_from_record
    from tickless.sim.profile import ProfileError, profile_to_json

    records = load_results(result)
    if index is None and len(records) > 1:
        raise click.ClickException(
            f"{result} holds {len(records)} records: choose one with --record 0..{len(records) - 1}"
        )
    chosen = index or 0
    if chosen >= len(records):
        raise click.ClickException(f"{result} holds {len(records)} records, no record {chosen}")
    record = records[chosen]
    try:
        profile = fit_from_record(record, name or f"fitted-{result.stem}", str(result))
    except ProfileError as exc:
        raise click.ClickException(f"{result}: {exc}") from None
    payload = profile_to_json(profile)
    d = profile.delivery
    if out is None:
        click.echo(json.dumps(payload, indent=2))
        return
    write_json_atomic(out, payload)
    console.print(
        f"profile {profile.name!r}: delivery {d.mean_ns / 1000:.3f} µs mean, "
        f"{d.sd_ns / 1000:.3f} µs sd, floor {d.floor_ns / 1000:.3f} µs "
        f"(from {record.stats.count} events every {record.interval_ns / 1000:g} µs)",
        highlight=False,
    )
    err_console.print(f"profile written to {out}")
    err_console.print(f"predict: tickless measure --backend sim --platform {out} --interval 200us")


def _is_idle_file(path: Path) -> bool:
    """Whether ``path`` holds ``tickless idle`` records (not readable: not, let the
    profile path say why)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    items = data if isinstance(data, list) else [data]
    return any(isinstance(d, dict) and d.get("kind") == "idle" for d in items)


def _idle_inputs(paths: tuple[Path, ...]) -> list[FitInput]:
    from tickless.jsonfields import read_json_file
    from tickless.results.idle import IdleResult
    from tickless.sim.cost_fit import FitInput

    inputs = []
    for path in paths:
        data = read_json_file(path, click.ClickException)
        items = data if isinstance(data, list) else [data]
        for i, d in enumerate(items):
            label = path.name if len(items) == 1 else f"{path.name}[{i}]"
            try:
                inputs.append(FitInput(IdleResult.from_json_dict(d), label))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise click.ClickException(f"{label}: not an idle record ({exc})") from None
    return inputs


def _fit_cost(paths: tuple[Path, ...], name: str | None, out: Path | None) -> None:
    from tickless.sim.cost_fit import FitError, fit_cost_model

    try:
        model = fit_cost_model(_idle_inputs(paths), name or f"fitted-{paths[0].stem}")
    except FitError as exc:
        raise click.ClickException(str(exc)) from None
    payload = model.to_json_dict()
    if out is None:
        click.echo(json.dumps(payload, indent=2))
        return
    write_json_atomic(out, payload)
    console.print(cost_model_line(model), highlight=False)
    for note in model.fit["notes"]:
        console.print(f"  {note}", highlight=False)
    err_console.print(f"cost model written to {out}")
    err_console.print(
        f"predict: tickless sim fleet --cost-model {out} --mode nohz-full --guests 1000"
    )


def cost_model_line(model: CostModel) -> str:
    """The fitted parameters in one line, in µs."""
    return (
        f"cost model {model.name!r}: {model.per_interrupt_ns / 1000:.1f} µs per interrupt, "
        f"{model.per_hypercall_ns / 1000:.1f} µs per hypercall, "
        f"{model.per_wakeup_ns / 1000:.1f} µs per host wake-up, "
        f"{model.baseline_ns_per_s / 1000:.1f} µs/s per guest, "
        f"{model.fixed_ns_per_s / 1000:.1f} µs/s fixed"
    )


@click.command()
@click.argument("platform", required=False)
@click.option("--out", type=OUTPUT_FILE, help="Write the chosen profile's JSON here.")
def profiles(platform: str | None, out: Path | None) -> None:
    """List the built-in platform profiles, or show one (a name or a JSON file) as JSON."""
    from tickless.sim.platforms import builtin_profiles, resolve_platform
    from tickless.sim.profile import profile_to_json

    if platform is None:
        if out is not None:
            raise click.UsageError("--out needs a PLATFORM to write")
        table = Table(title="Built-in platform profiles (delivery fitted on idle 50 µs), µs")
        table.add_column("platform", no_wrap=True)
        for name in ("delivery mean", "sd", "floor", "min delta", "slop", "hold-back"):
            table.add_column(name, justify="right")
        table.add_column("per device IRQ", justify="right")
        for p in builtin_profiles().values():
            d = p.delivery
            table.add_row(
                p.name,
                f"{d.mean_ns / 1000:.3f}",
                f"{d.sd_ns / 1000:.3f}",
                f"{d.floor_ns / 1000:.3f}",
                f"{p.min_delta_ns / 1000:g}",
                f"{p.host_slop_ns / 1000:g}",
                f"{p.hold_back_ns / 1000:.1f}",
                f"{p.irq_overhead_ns / 1000:.1f}",
            )
        console.print(table)
        return
    payload = profile_to_json(resolve_platform(platform))
    if out is None:
        click.echo(json.dumps(payload, indent=2))
    else:
        write_json_atomic(out, payload)
        err_console.print(f"profile written to {out}")
