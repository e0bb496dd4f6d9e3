"""A long run that keeps its record: cron's and cosim's commands share how it is shown,
written and ended on Ctrl-C."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tickless.cli.common import err_console, exit_interrupted, progress_bar


class KeptRecord(Protocol):
    """A record a long run keeps on Ctrl-C (cron's, cosim's)."""

    partial: bool

    def to_json_dict(self) -> dict[str, Any]: ...


K = TypeVar("K", bound=KeptRecord)


def run_and_keep(
    label: str,
    run: Callable[[Callable[[float], None]], K],
    render: Callable[[K], None],
    json_path: Path | None,
) -> K:
    """Run with a progress bar, print the record, write it atomically (a Ctrl-C's partial
    record too: nothing measured is lost), then exit as interrupted if it was."""
    from tickless.results.schema import write_json_atomic

    with progress_bar(label, 1.0, show=True) as progress:
        record = run(progress)
    render(record)
    if json_path is not None:
        write_json_atomic(json_path, record.to_json_dict())
        err_console.print(f"result written to {json_path}")
    if record.partial:
        exit_interrupted()
    return record
