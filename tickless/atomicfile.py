"""Writing result files so that a reader sees the old file or the complete new one, never a
torn write: results are never lost half-way."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from tickless.errors import TicklessError


class OutputError(TicklessError):
    """An output file could not be written (no such directory, no permission, disk full)."""


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Temp file in the target directory (same filesystem, so ``os.replace`` is atomic),
    fsync, rename over ``path``, then fsync the directory (best effort). A failure (a full
    disk included) removes the temp file and becomes an ``OutputError`` naming the path and
    saying whether an old file was kept, so the user knows what is on disk."""
    path = Path(path)
    existed = path.exists()
    if existed and not path.is_file():  # renaming over /dev/null or a FIFO would replace it
        raise OutputError(f"cannot write {path}: it exists and is not a regular file")
    try:
        _write(path, data)
    except OSError as exc:
        kept = f"the old {path} was kept" if existed else "no file was written"
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; {kept}") from exc


def ensure_directory(path: Path) -> None:
    """Create ``path`` (and its parents) for output files; failing is an ``OutputError``."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write to {path}: {exc.strerror or exc}") from exc


def _write(path: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            try:  # mkstemp creates 0600; keep an existing file's mode, else the usual 0644
                mode = stat.S_IMODE(path.stat().st_mode)
            except FileNotFoundError:
                mode = 0o644
            os.fchmod(tmp.fileno(), mode)
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:  # a full disk, Ctrl-C or SIGTERM: no temp file is left behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    with contextlib.suppress(OSError):  # some filesystems refuse a directory fsync
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
