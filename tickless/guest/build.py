"""Build the guest kernel image from its C and assembly sources with the host's gcc.

Images are cached by :mod:`tickless.buildcache` under a hash of the sources, the generated
ABI header, the flags and the compiler version, so an image is rebuilt exactly when one of
those changes and never needs a manual step.
"""

from __future__ import annotations

from pathlib import Path

from tickless.buildcache import BuildError, cached_build, require_tool, run_tool, tool_version
from tickless.guest import abi, abi_header

SRC_DIR = Path(__file__).parent / "src"
SOURCES = ("entry.S", "kernel.c", "user.c", "fuzz.c", "fuzz_stop.c", "pingpong.c")
HEADERS = ("guest.h", "fuzz.h")
# fmt: off
CFLAGS = (
    "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-ffreestanding", "-nostdlib",
    "-fno-pic", "-no-pie", "-mno-red-zone", "-mgeneral-regs-only", "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables", "-fcf-protection=none", "-static",
)
# fmt: on


def build_image(force: bool = False) -> Path:
    """Return the path of the flat guest image, building it first when needed."""
    gcc, objcopy = require_tool("gcc"), require_tool("objcopy")
    header = abi_header.render_c_header()
    inputs: list[bytes] = []
    for name in (*SOURCES, *HEADERS, "linker.ld"):
        inputs += [name.encode(), (SRC_DIR / name).read_bytes()]
    inputs += [header.encode(), " ".join(CFLAGS).encode(), tool_version(gcc)]

    def build(work: Path) -> None:
        (work / "tickless_abi.h").write_text(header)
        elf, image = work / "kernel.elf", work / "kernel.bin"
        sources = [str(SRC_DIR / s) for s in SOURCES]
        linker = ["-T", str(SRC_DIR / "linker.ld")]
        run_tool([gcc, *CFLAGS, f"-I{work}", f"-I{SRC_DIR}", *linker, "-o", str(elf), *sources])
        run_tool([objcopy, "-O", "binary", str(elf), str(image)])
        size = image.stat().st_size
        if size > abi.IMAGE_MAX_BYTES:
            raise BuildError(f"guest image is {size} bytes, more than {abi.IMAGE_MAX_BYTES}")

    out_dir = cached_build("guest", inputs, build, ("kernel.bin", "kernel.elf"), force=force)
    return out_dir / "kernel.bin"
