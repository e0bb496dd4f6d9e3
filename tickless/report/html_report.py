"""One self-contained HTML page for a set of runs: our Table 1 beside the paper's, and figures.

Everything is inline (CSS, PNGs as base64 ``data:`` URIs), so the page can be mailed or
archived as one file and opened offline. All text from records is escaped: timer names, notes
and machine facts come from files we did not necessarily write. Real (kvm/host) and simulated
(sim) records go through the same code, so they render alike.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence

from tickless.report.figures import record_figures, record_title
from tickless.results.paper import LOADS, PAPER_EVENTS, PaperRow, nearest_setting_us, paper_rows
from tickless.results.schema import ResultRecord
from tickless.units import format_duration_ns

__all__ = ["DEFAULT_TITLE", "build_report"]

DEFAULT_TITLE = "tickless: timer precision report"

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.group th { background: #dde6f3; text-align: left; }
tr.paper td { color: #555; background: #fafafa; }
tr.early td { background: #fde0dc; }
.note { color: #555; font-size: 0.9em; }
figure { display: inline-block; margin: 0.5em; } img { max-width: 100%; height: auto; }
"""

_FIGURE_CAPTIONS = {
    "difference": "Measured interval minus the expected interval d, per measurement "
    "(the paper's figure style).",
    "latency": "Latency (lateness against the deadline) histogram; counts on a log scale.",
}
_COLUMNS = (
    "run",
    "timer",
    "backend",
    "platform",
    "load",
    "count",
    "mean measured time µs",
    "standard deviation µs",
    "99% CI of the mean µs",
    "early events",
    "host CPU",
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _us(ns: float) -> str:
    return f"{ns / 1000:.3f}"


def _paper_sd(sd_us: float) -> str:
    return f"{sd_us:.3f}" if sd_us < 1000 else f"{sd_us:.0f}"  # as printed in the paper


def _host_cpu(record: ResultRecord) -> str:
    host = record.host
    if host.duration_s <= 0:
        return "n/a"
    return f"{100 * host.cpu_s / host.duration_s:.1f} % of a core"


def _load_order(load: str) -> tuple[int, str]:
    """The paper's loads first in its order, then any others alphabetically."""
    return (LOADS.index(load) if load in LOADS else len(LOADS), load)


def _groups(records: Sequence[ResultRecord]) -> list[tuple[int, str, list[int]]]:
    """(interval_ns, load, indexes into records), sorted like the paper's table."""
    groups: dict[tuple[int, str], list[int]] = {}
    for i, record in enumerate(records):
        groups.setdefault((record.interval_ns, record.load), []).append(i)
    keys = sorted(groups, key=lambda k: (k[0], _load_order(k[1])))
    return [(interval_ns, load, groups[(interval_ns, load)]) for interval_ns, load in keys]


def _row(cells: Iterable[tuple[str, bool]], css_class: str = "") -> str:
    attr = f' class="{css_class}"' if css_class else ""
    tds = "".join(f'<td class="num">{c}</td>' if num else f"<td>{c}</td>" for c, num in cells)
    return f"<tr{attr}>{tds}</tr>"


def _our_row(index: int, record: ResultRecord) -> str:
    s = record.stats
    early = record.lateness.early_count
    cells = [
        (f'<a href="#run-{index}">run {index}</a>', False),
        (_e(record.path_label), False),
        (_e(record.backend), False),
        (_e(record.platform if record.platform is not None else "real"), False),
        (_e(record.load), False),
        (str(s.count), True),
        (_us(s.mean_ns), True),
        (_us(s.sd_ns), True),
        (f"[{_us(s.ci99_low_ns)}, {_us(s.ci99_high_ns)}]", True),
        (str(early), True),
        (_e(_host_cpu(record)), True),
    ]
    return _row(cells, "early" if early else "")


def _paper_row(row: PaperRow) -> str:
    cells = [
        (f"paper: {_e(row.platform)}", False),
        ("", False),
        ("", False),
        (_e(row.platform), False),
        (_e(row.load), False),
        (str(PAPER_EVENTS), True),
        (f"{row.mean_us:.3f}", True),
        (_paper_sd(row.sd_us), True),
        (f"[{row.ci99_low_us:.3f}, {row.ci99_high_us:.3f}]", True),
        ("", True),
        ("", True),
    ]
    return _row(cells, "paper")


def _summary_table(records: Sequence[ResultRecord]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in _COLUMNS)
    body = []
    for interval_ns, load, indexes in _groups(records):
        label = f"d = {format_duration_ns(interval_ns)}, load {load}"
        body.append(f'<tr class="group"><th colspan="{len(_COLUMNS)}">{_e(label)}</th></tr>')
        body.extend(_our_row(i + 1, records[i]) for i in indexes)
        setting_us = nearest_setting_us(interval_ns)
        rows = paper_rows(setting_us, load) if setting_us is not None and load in LOADS else []
        if rows:
            body.extend(_paper_row(row) for row in rows)
        else:
            why = f'the paper has no rows for d = {format_duration_ns(interval_ns)}, load "{load}"'
            body.append(f'<tr class="paper"><td colspan="{len(_COLUMNS)}">{_e(why)}</td></tr>')
    return f"<table>\n<tr>{head}</tr>\n" + "\n".join(body) + "\n</table>"


def _details(record: ResultRecord) -> str:
    s, late = record.stats, record.lateness
    facts = [
        ("mode", record.mode if record.hz is None else f"{record.mode} ({record.hz} Hz)"),
        ("method", f"{record.method} deadlines"),
        (
            "min / p50 / p99 / p99.9 / max µs",
            " / ".join(_us(v) for v in (s.min_ns, s.p50_ns, s.p99_ns, s.p999_ns, s.max_ns)),
        ),
        (
            "lateness mean / sd / p99 / max µs",
            " / ".join(_us(v) for v in (late.mean_ns, late.sd_ns, late.p99_ns, late.max_ns)),
        ),
        ("host timer wake-ups/s", f"{record.host.wakeups_per_s:.1f}"),
        ("host CPU", _host_cpu(record)),
        *sorted(record.machine.items()),
        ("tool version", record.tool_version),
        ("created (UTC)", record.created_utc),
    ]
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    notes = "".join(f'<p class="note">note: {_e(n)}</p>' for n in record.notes)
    return f"<table>{rows}</table>{notes}"


def _figures_html(index: int, record: ResultRecord, figures: dict[str, bytes]) -> str:
    parts = []
    for kind, png in figures.items():
        caption = _FIGURE_CAPTIONS.get(kind, kind)
        data = base64.b64encode(png).decode("ascii")
        alt = f"run {index}: {caption}"
        parts.append(
            f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    return "\n".join(parts)


def build_report(
    records: Sequence[ResultRecord],
    title: str = DEFAULT_TITLE,
    *,
    figures: Sequence[dict[str, bytes]] | None = None,
) -> str:
    """The whole page as a string. Pass ``figures`` (one dict per record) to reuse PNGs
    already rendered, e.g. when they are also written to files; else they are drawn here."""
    if figures is not None and len(figures) != len(records):
        raise ValueError(f"{len(figures)} figure sets for {len(records)} records")
    pngs = list(figures) if figures is not None else [record_figures(r) for r in records]
    sections = []
    for i, (record, figs) in enumerate(zip(records, pngs, strict=True), start=1):
        sections.append(
            f'<section id="run-{i}">\n<h2>Run {i}: {_e(record_title(record))}</h2>\n'
            f"{_details(record)}\n{_figures_html(i, record, figs)}\n</section>"
        )
    runs = "\n".join(sections) if sections else "<p>No result records.</p>"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{_e(title)}</h1>
<h2>Summary</h2>
<p class="note">Our runs beside Table 1 of Adamczyk &amp; Chydzinski, PLoS ONE 10(7): e0130887
(2015), grouped by interval d and load. Mean, standard deviation (uncorrected, as in the paper)
and confidence interval are of the measured interval between consecutive timer events, in µs.
The paper's "99%" intervals are about ±1.96·sd/√n wide (n = {PAPER_EVENTS}), i.e. 95% normal
intervals; ours are true 99% Student-t intervals, so about 1.3x wider for the same data.</p>
{_summary_table(records)}
{runs}
</body>
</html>
"""
