"""A sweep's table on disk: one Parquet file (one row per point, settings and results as
columns) and the same table as CSV beside it.

Both are rewritten atomically after every finished point (``tickless.atomicfile``), so a
reader, a Ctrl-C or a crash finds the table as of the last finished point, never a torn
file; the Parquet file is the one a rerun resumes from. Rewriting the whole table is
O(rows) per point, nothing next to a point's run for the few hundred points of a sweep.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tickless.atomicfile import write_bytes_atomic
from tickless.errors import InputError
from tickless.sweep.runners import Scalar

__all__ = ["KEY", "STATUS", "SweepStore", "csv_path_for", "read_rows"]

Row = dict[str, Scalar]
KEY = "sweep_point"  # the point's identity: a hash of its command and full settings
STATUS = "sweep_status"  # "ok" or "failed"
OK, FAILED = "ok", "failed"


def csv_path_for(path: Path) -> Path:
    return Path(path).with_suffix(".csv")


def read_rows(path: Path) -> list[Row]:
    """The rows of a sweep file; anything else (not Parquet, not a sweep's) is refused."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    if KEY not in table.column_names:
        raise InputError(f"{path}: a Parquet file, but not a sweep's (no {KEY} column)")
    rows: list[Row] = table.to_pylist()
    return rows


def _column(values: list[Scalar]) -> Any:
    """One Arrow column; values whose types do not mix (a number in one row, text in
    another) are kept as text rather than refused."""
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _table(rows: Iterable[Row]) -> Any:
    import pyarrow as pa

    rows = list(rows)
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    columns = {n: _column([row.get(n) for row in rows]) for n in names}
    return pa.table(columns) if columns else pa.table({KEY: pa.array([], pa.string())})


def _encoded(table: Any) -> tuple[bytes, bytes]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    parquet = pa.BufferOutputStream()
    pq.write_table(table, parquet)
    csv = pa.BufferOutputStream()
    pacsv.write_csv(table, csv)
    return parquet.getvalue().to_pybytes(), csv.getvalue().to_pybytes()


class SweepStore:
    """The rows of one sweep file, keyed by point; ``add`` writes the table at once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.csv_path = csv_path_for(self.path)
        if self.csv_path == self.path:
            raise InputError(f"{path}: name the Parquet file (.parquet); the CSV goes beside it")
        existing = read_rows(self.path) if self.path.exists() else []
        self.rows: dict[str, Row] = {str(r[KEY]): r for r in existing}

    def finished(self) -> set[str]:
        """Points done; a failed point is run again by a rerun (its row is replaced)."""
        return {k for k, r in self.rows.items() if r.get(STATUS) == OK}

    def failed(self) -> list[Row]:
        return [r for r in self.rows.values() if r.get(STATUS) == FAILED]

    def add(self, row: Row) -> None:
        self.rows[str(row[KEY])] = row
        self.write()

    def write(self) -> None:
        """Parquet first: it is what a rerun reads; the CSV follows it."""
        parquet, csv = _encoded(_table(self.rows.values()))
        write_bytes_atomic(self.path, parquet)
        write_bytes_atomic(self.csv_path, csv)
