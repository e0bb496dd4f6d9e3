"""tickless report: result files in; one self-contained HTML page, PNGs, cyclictest text out."""

from __future__ import annotations

from pathlib import Path

import click

from tickless.atomicfile import ensure_directory, write_bytes_atomic
from tickless.cli.common import OUTPUT_DIRECTORY, OUTPUT_FILE
from tickless.results.schema import ResultRecord, load_results

_RESULT_PATH = click.Path(dir_okay=False, path_type=Path)


def _load_all(paths: tuple[Path, ...]) -> list[ResultRecord]:
    """Every record of every file, in order; the first unreadable file stops everything."""
    records: list[ResultRecord] = []
    for path in paths:
        loaded = load_results(path)
        if not loaded:
            raise click.ClickException(f"{path}: holds an empty list, no result records")
        records.extend(loaded)
    return records


@click.command()
@click.argument("results", nargs=-1, required=True, type=_RESULT_PATH)
@click.option(
    "--out",
    "out_path",
    type=OUTPUT_FILE,
    default="report.html",
    show_default=True,
    help="The HTML page to write (replaced atomically).",
)
@click.option("--title", help="Title of the page.  [default: tickless: timer precision report]")
@click.option(
    "--figures",
    "figures_dir",
    type=OUTPUT_DIRECTORY,
    help="Also write each run's two PNGs here (created if missing): "
    "NN-TIMER-BACKEND-INTERVAL-LOAD-{difference,latency}.png.",
)
@click.option(
    "--cyclictest-histogram",
    "histogram_path",
    type=OUTPUT_FILE,
    help="Also write the latencies as cyclictest -h text (rt-tests 1.x format), "
    "one column per run.",
)
@click.option(
    "--max-us",
    "max_us",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="Histogram size for --cyclictest-histogram: 1 µs buckets 0..N-1, the rest "
    "counted as overflows (cyclictest's -h N).",
)
def report(
    results: tuple[Path, ...],
    out_path: Path,
    title: str | None,
    figures_dir: Path | None,
    histogram_path: Path | None,
    max_us: int,
) -> None:
    """Build one self-contained HTML page from result files.

    RESULTS are JSON files written by 'tickless measure --json' (or any command writing the
    same records); each holds one record or a list. The page has a summary table in the
    paper's columns (mean measured time, standard deviation, 99% CI of the mean, in µs) with
    the paper's Table 1 rows beside ours for the same interval and load, then for every run
    the paper's figure (measured interval minus d per measurement) and a latency histogram
    on a log scale. Images are embedded, so the page needs nothing else to open.

    A sweep's table (a .parquet file from 'tickless sweep') gives instead a page of the
    sweep's figures: host wake-ups/s and CPU against guests for each combination of the
    other swept settings (mode, slop...), lateness against the interval for each timer.

    \b
    Examples:
      tickless report run.json
      tickless report fleet.parquet --out fleet.html --figures figs/
      tickless report pv.json lapic.json --out table1.html --figures figs/
      tickless report run.json --cyclictest-histogram run.hist --max-us 200
    """
    if any(p.suffix == ".parquet" for p in results):
        _sweep_report(results, out_path, title, figures_dir)
        return
    # Imported here so that 'tickless --help' does not pay for matplotlib.
    from tickless.report.cyclictest import cyclictest_histogram
    from tickless.report.figures import figure_stem, record_figures, write_record_figures
    from tickless.report.html_report import DEFAULT_TITLE, build_report

    records = _load_all(results)
    # Build everything before writing anything: a failure leaves no half-written set behind.
    figures = [record_figures(r) for r in records]
    page = build_report(records, title or DEFAULT_TITLE, figures=figures)
    histogram_text = cyclictest_histogram(records, max_us) if histogram_path else None

    write_bytes_atomic(out_path, page.encode("utf-8"))
    click.echo(f"report written to {out_path} ({len(records)} runs)")
    if figures_dir is not None:
        ensure_directory(figures_dir)
        written = [
            p
            for i, (record, figs) in enumerate(zip(records, figures, strict=True), start=1)
            for p in write_record_figures(figs, figures_dir, figure_stem(record, i))
        ]
        click.echo(f"{len(written)} figures written to {figures_dir}")
    if histogram_path is not None and histogram_text is not None:
        write_bytes_atomic(histogram_path, histogram_text.encode("ascii"))
        click.echo(f"cyclictest histogram written to {histogram_path}")


def _sweep_report(
    results: tuple[Path, ...], out_path: Path, title: str | None, figures_dir: Path | None
) -> None:
    """Sweep tables (``tickless sweep --out``) in, a page of their figures out."""
    from tickless.report.sweep_figures import sweep_figures
    from tickless.report.sweep_report import build_sweep_page
    from tickless.sweep.store import read_rows

    if not all(p.suffix == ".parquet" for p in results):
        raise click.UsageError("give either sweep tables (.parquet) or result JSON files")
    rows = [row for path in results for row in read_rows(path)]
    title = title or f"tickless sweep: {', '.join(p.name for p in results)}"
    figures = sweep_figures(rows, title)
    write_bytes_atomic(out_path, build_sweep_page(rows, figures, title).encode("utf-8"))
    click.echo(f"report written to {out_path} ({len(rows)} points, {len(figures)} figures)")
    if figures_dir is not None:
        ensure_directory(figures_dir)
        for name, png in figures.items():
            write_bytes_atomic(figures_dir / f"{name}.png", png)
        click.echo(f"{len(figures)} figures written to {figures_dir}")
