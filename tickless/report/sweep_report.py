"""One self-contained HTML page of a sweep: what was swept, how many points finished or
failed, and the figures (embedded PNGs), so the page needs nothing else to open."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

__all__ = ["build_sweep_page"]

_CSS = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}"
    "img{max-width:100%}td,th{padding:.2em .8em;text-align:left}"
    ".failed{color:#a00}"
)


def build_sweep_page(rows: Sequence[dict[str, Any]], figures: dict[str, bytes], title: str) -> str:
    """The page: a summary table, the failed points with their errors, the figures."""
    commands = sorted({str(r.get("sweep_command")) for r in rows})
    swept = sorted({n for r in rows for n in str(r.get("sweep_swept") or "").split(",") if n})
    failed = [r for r in rows if r.get("sweep_status") != "ok"]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1><table>",
        f"<tr><th>command</th><td>{html.escape(', '.join(commands))}</td></tr>",
        f"<tr><th>swept</th><td>{html.escape(', '.join(swept))}</td></tr>",
        f"<tr><th>points</th><td>{len(rows)} ({len(rows) - len(failed)} finished, "
        f"{len(failed)} failed)</td></tr></table>",
    ]
    for row in failed:
        label = " ".join(f"{n}={row.get(n)}" for n in swept)
        parts.append(
            f"<p class='failed'>failed: {html.escape(label)}: "
            f"{html.escape(str(row.get('sweep_error')))}</p>"
        )
    if not figures:
        parts.append("<p>No figure: the table has no setting swept over two or more values "
                     "that a figure plots (guests, interval).</p>")  # fmt: skip
    for name, png in figures.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f"<h2>{html.escape(name)}</h2><img alt='{name}' src='data:image/png;base64,{data}'>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)
