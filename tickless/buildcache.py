"""A content-addressed cache for artefacts built from source with the host's toolchain.

Artefacts live under ``$TICKLESS_CACHE_DIR`` (default ``~/.cache/tickless``) in
``<kind>-<fingerprint>/``, where the fingerprint hashes everything the build depends on
(sources, flags, compiler version). A build is therefore redone exactly when an input
changes, never needs a manual step, and old versions stay usable side by side.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from tickless.errors import TicklessError

# apt package that provides each tool, for the "not found" message.
_APT_PACKAGES = {"gcc": "gcc", "cc": "gcc", "objcopy": "binutils", "ld": "binutils"}


class BuildError(TicklessError):
    """A build tool is missing or failed; the message carries the tool's stderr."""


def cache_dir() -> Path:
    """Root of the cache: ``$TICKLESS_CACHE_DIR`` if set, else ``~/.cache/tickless``."""
    root = os.environ.get("TICKLESS_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "tickless"


def require_tool(name: str) -> str:
    """Absolute path of a build tool, or a one-line BuildError saying what to install."""
    path = shutil.which(name)
    if path is None:
        package = _APT_PACKAGES.get(name, name)
        raise BuildError(
            f"'{name}' not found: tickless builds its C programs from source; "
            f"install it with 'apt-get install {package}'"
        )
    return path


def tool_version(path: str) -> bytes:
    """``<tool> --version`` output, a fingerprint input so a compiler upgrade rebuilds."""
    proc = subprocess.run([path, "--version"], capture_output=True, check=False)
    return proc.stdout


def run_tool(cmd: Sequence[str]) -> None:
    """Run one build command; on failure raise BuildError with the command and its stderr."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"build failed: {' '.join(cmd)}\n{proc.stderr.strip()}")


def fingerprint(kind: str, inputs: Sequence[bytes]) -> str:
    """Short hash of the inputs; length-prefixed so that no two input lists collide."""
    digest = hashlib.sha256(kind.encode())
    for item in inputs:
        digest.update(len(item).to_bytes(8, "little"))
        digest.update(item)
    return digest.hexdigest()[:16]


def cached_build(
    kind: str,
    fingerprint_inputs: Sequence[bytes],
    build: Callable[[Path], None],
    outputs: tuple[str, ...],
    *,
    force: bool = False,
) -> Path:
    """Return the cache directory holding ``outputs``, running ``build`` first if needed.

    ``build(work_dir)`` must write every name in ``outputs`` into ``work_dir`` (it may leave
    other intermediates there; only ``outputs`` are kept). The work happens in a temporary
    directory under the cache root and is renamed into place, so readers never see a
    half-written artefact and two concurrent builders of the same inputs both succeed.
    """
    if not outputs:
        raise ValueError("cached_build needs at least one output name")
    root = cache_dir()
    out_dir = root / f"{kind}-{fingerprint(kind, fingerprint_inputs)}"
    if not force and _complete(out_dir, outputs):
        return out_dir
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{kind}-build-") as tmp_name:
        work = Path(tmp_name) / "work"
        staged = Path(tmp_name) / "out"
        work.mkdir()
        staged.mkdir()
        build(work)
        for name in outputs:
            if not (work / name).is_file():
                raise BuildError(f"{kind} build did not produce {name}")
            os.replace(work / name, staged / name)
        _install(staged, out_dir, outputs)
    return out_dir


def _complete(out_dir: Path, outputs: tuple[str, ...]) -> bool:
    return all((out_dir / name).is_file() for name in outputs)


def _install(staged: Path, out_dir: Path, outputs: tuple[str, ...]) -> None:
    """Move a finished build into place atomically, tolerating a concurrent builder."""
    try:
        os.rename(staged, out_dir)  # atomic; fails if out_dir exists and is not empty
        return
    except OSError:
        if not out_dir.is_dir():
            raise
    # out_dir already exists: a concurrent builder won, or we are forcing a rebuild, or an
    # earlier version was incomplete. Replace file by file: each os.replace is atomic, so a
    # reader sees either the old or the new file (identical inputs), never a partial one.
    for name in outputs:
        os.replace(staged / name, out_dir / name)
