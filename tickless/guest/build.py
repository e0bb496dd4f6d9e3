"""Build the guest kernel image from its C and assembly sources with the host's gcc.

Images are cached under ``$TICKLESS_CACHE_DIR`` (default ``~/.cache/tickless``) by a hash
of the sources, the generated ABI header, the flags and the compiler version, so an image
is rebuilt exactly when one of those changes and never needs a manual step.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tickless.guest import abi

SRC_DIR = Path(__file__).parent / "src"
SOURCES = ("entry.S", "kernel.c", "user.c")
HEADERS = ("guest.h",)
CFLAGS = (
    "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-ffreestanding", "-nostdlib",
    "-fno-pic", "-no-pie", "-mno-red-zone", "-mgeneral-regs-only", "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables", "-fcf-protection=none", "-static",
)


class GuestBuildError(RuntimeError):
    """gcc, ld or objcopy failed or are missing."""


def cache_dir() -> Path:
    root = os.environ.get("TICKLESS_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "tickless"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise GuestBuildError(
            f"'{name}' not found: the guest kernel is built from source; install it with "
            "'apt-get install gcc binutils'"
        )
    return path


def _fingerprint(header: str, gcc: str) -> str:
    digest = hashlib.sha256()
    for name in (*SOURCES, *HEADERS, "linker.ld"):
        digest.update(name.encode())
        digest.update((SRC_DIR / name).read_bytes())
    digest.update(header.encode())
    digest.update(" ".join(CFLAGS).encode())
    version = subprocess.run([gcc, "--version"], capture_output=True, text=True, check=False)
    digest.update(version.stdout.encode())
    return digest.hexdigest()[:16]


def build_image(force: bool = False) -> Path:
    """Return the path of the flat guest image, building it first when needed."""
    gcc, objcopy = _tool("gcc"), _tool("objcopy")
    header = abi.render_c_header()
    out_dir = cache_dir() / f"guest-{_fingerprint(header, gcc)}"
    image = out_dir / "kernel.bin"
    if image.exists() and not force:
        return image
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "tickless_abi.h").write_text(header)
        elf = tmp / "kernel.elf"
        cmd = [gcc, *CFLAGS, f"-I{tmp}", f"-I{SRC_DIR}", "-T", str(SRC_DIR / "linker.ld"),
               "-o", str(elf), *(str(SRC_DIR / s) for s in SOURCES)]
        _run(cmd)
        _run([objcopy, "-O", "binary", str(elf), str(tmp / "kernel.bin")])
        size = (tmp / "kernel.bin").stat().st_size
        if size > abi.IMAGE_MAX_BYTES:
            raise GuestBuildError(f"guest image is {size} bytes, more than {abi.IMAGE_MAX_BYTES}")
        staged = tmp / "out"
        staged.mkdir()
        shutil.move(str(tmp / "kernel.bin"), staged / "kernel.bin")
        shutil.move(str(elf), staged / "kernel.elf")
        try:
            os.replace(staged, out_dir)
        except OSError:
            if not image.exists():  # a concurrent build won the race: fine; else re-raise
                raise
    return image


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise GuestBuildError(f"guest build failed: {' '.join(cmd)}\n{proc.stderr.strip()}")
