"""Build the Linux guest: Debian's Linux 6.12 source, our config fragment, our drivers.

The kernel is built into the content-addressed cache (:mod:`tickless.buildcache`) under a
hash of everything it depends on: the source tarball's identity, the config fragment, the
driver sources, the kernel variant of the ABI header, HZ and the compiler. It is rebuilt
exactly when one of those changes (~1.5 min on 2 cores). The tarball is unpacked once into
the cache; each build hard-links a private copy of that tree, adds ``drivers/tickless`` and
builds out of tree, so the pristine tree is never written and serves every HZ.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tickless.buildcache import (
    BuildError,
    cache_dir,
    cached_build,
    fingerprint,
    require_tool,
    run_tool,
    tool_version,
)
from tickless.errors import InputError
from tickless.guest import abi_header

LINUX_DIR = Path(__file__).parent / "linux"
FRAGMENT = LINUX_DIR / "tickless.config"
DRIVER_DIR = LINUX_DIR / "drivers" / "tickless"
SOURCE_PACKAGE = "linux-source-6.12"
TARBALL = Path("/usr/src") / f"{SOURCE_PACKAGE}.tar.xz"
HZ_CHOICES = (100, 250, 1000)
_ALL_HZ = (100, 250, 300, 1000)  # Kconfig's HZ choice: exactly one is set
# What the build needs besides the source: tool -> apt package.
_TOOLS = {
    "make": "make",
    "gcc": "gcc",
    "flex": "flex",
    "bison": "bison",
    "bc": "bc",
    "xz": "xz-utils",
}
_LIBELF_HEADER = Path("/usr/include/gelf.h")  # objtool links libelf (libelf-dev)
_PACKAGES = (SOURCE_PACKAGE, "flex", "bison", "bc", "libelf-dev", "make", "gcc", "xz-utils")
# How the drivers join the tree; part of the fingerprint, since changing it changes vmlinux.
_MAKEFILE_HOOK = "obj-$(CONFIG_TICKLESS_GUEST)\t+= tickless/\n"
_KCONFIG_HOOK = 'source "drivers/tickless/Kconfig"\n\n'
OUTPUTS = ("vmlinux", "config", "System.map")
STOCK_OPTION = "CONFIG_TICKLESS_CLOCKS"  # off: the stock kernel keeps Linux's own clocks


def _progress(message: str) -> None:
    print(f"tickless: {message}", file=sys.stderr, flush=True)


def fragment_options(
    hz: int = 100, fragment: Path = FRAGMENT, *, stock: bool = False
) -> dict[str, str]:
    """CONFIG_ name -> "y" / "n" / value, from the fragment, with HZ set to ``hz`` and,
    for the stock kernel, without our clocks (``CONFIG_TICKLESS_CLOCKS``)."""
    if hz not in HZ_CHOICES:
        raise InputError(f"HZ must be one of {', '.join(map(str, HZ_CHOICES))}, not {hz}")
    options: dict[str, str] = {}
    for number, raw in enumerate(fragment.read_text().splitlines(), 1):
        line = raw.strip()
        if line.startswith("# CONFIG_") and line.endswith(" is not set"):
            options[line[2:].split()[0]] = "n"
        elif line.startswith("CONFIG_") and "=" in line:
            name, value = line.split("=", 1)
            options[name] = value
        elif line and not line.startswith("#"):
            raise BuildError(f"{fragment}:{number}: not a config line: {line}")
    for other in _ALL_HZ:
        options.pop(f"CONFIG_HZ_{other}", None)
    for other in _ALL_HZ:
        options[f"CONFIG_HZ_{other}"] = "y" if other == hz else "n"
    if stock:
        options[STOCK_OPTION] = "n"
    return options


def missing_options(options: dict[str, str], config_text: str) -> list[str]:
    """The options of the fragment a generated .config did not keep, as fragment lines."""
    have: dict[str, str] = {}
    for line in config_text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            name, value = line.split("=", 1)
            have[name] = value
    missing = []
    for name, want in options.items():
        got = have.get(name, "n")
        if got != want:
            missing.append(f"# {name} is not set" if want == "n" else f"{name}={want}")
    return missing


def _tarball_identity(tarball: Path) -> bytes:
    """Package version, size and mtime: cheap, and changes whenever Debian ships a new one."""
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", SOURCE_PACKAGE],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        stat = tarball.stat()
    except OSError as exc:
        raise BuildError(f"cannot read {tarball}: {exc.strerror}") from None
    return f"{proc.stdout.strip()} {stat.st_size} {stat.st_mtime_ns}".encode()


def fingerprint_inputs(
    hz: int,
    *,
    gcc: str,
    tarball: Path = TARBALL,
    linux_dir: Path = LINUX_DIR,
    stock: bool = False,
) -> list[bytes]:
    """Everything vmlinux depends on; the cache key hashes this list."""
    inputs = [b"hz", str(hz).encode(), b"tarball", _tarball_identity(tarball)]
    if stock:  # after the tarball: today's tickless keys stay what they were
        inputs += [b"stock"]
    for path in sorted(p for p in linux_dir.rglob("*") if p.is_file()):
        if "__pycache__" in path.parts:
            continue
        inputs += [path.relative_to(linux_dir).as_posix().encode(), path.read_bytes()]
    inputs += [abi_header.render_c_header(kernel=True).encode(), tool_version(gcc)]
    inputs += [_MAKEFILE_HOOK.encode(), _KCONFIG_HOOK.encode(), " ".join(OUTPUTS).encode()]
    return inputs


def kernel_key(hz: int, *, gcc: str, tarball: Path = TARBALL, linux_dir: Path = LINUX_DIR) -> str:
    """The cache key of the vmlinux for these inputs (what ``linux-<key>/`` is named)."""
    return fingerprint(
        "linux", fingerprint_inputs(hz, gcc=gcc, tarball=tarball, linux_dir=linux_dir)
    )


def ensure_build_deps() -> None:
    """Install the kernel source and build tools when missing (as root), else say what to."""
    missing = [pkg for tool, pkg in _TOOLS.items() if shutil.which(tool) is None]
    if not _LIBELF_HEADER.exists():
        missing.append("libelf-dev")
    if not TARBALL.exists():
        missing.insert(0, SOURCE_PACKAGE)
    if not missing:
        return
    if os.geteuid() != 0:
        raise BuildError(
            f"the Linux guest is built from {TARBALL} and needs its tools: install them with "
            f"'apt-get install {' '.join(_PACKAGES)}'"
        )
    apt = require_tool("apt-get")
    _progress(f"installing {' '.join(missing)} (apt-get) to build the Linux guest")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", *_PACKAGES]):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if proc.returncode != 0:
            raise BuildError(f"{' '.join(cmd)} failed: {_tail(proc.stdout + proc.stderr)}")
    if not TARBALL.exists():
        raise BuildError(f"{SOURCE_PACKAGE} is installed but {TARBALL} is missing")


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def source_tree(tarball: Path = TARBALL) -> Path:
    """The unpacked, never-modified source tree for this tarball, unpacked once."""
    root = cache_dir()
    tree_dir = root / f"linux-source-{fingerprint('linux-source', [_tarball_identity(tarball)])}"
    if (tree_dir / ".unpacked").is_file():
        return next(p for p in tree_dir.iterdir() if p.is_dir())
    root.mkdir(parents=True, exist_ok=True)
    _progress(f"unpacking {tarball} into {tree_dir} (once)")
    with tempfile.TemporaryDirectory(dir=root, prefix=".linux-source-") as tmp:
        staged = Path(tmp) / "tree"
        staged.mkdir()
        run_tool([require_tool("tar"), "-xf", str(tarball), "-C", str(staged)])
        (staged / ".unpacked").write_text(str(tarball) + "\n")
        try:
            os.rename(staged, tree_dir)
        except OSError:
            if not (tree_dir / ".unpacked").is_file():  # not a concurrent unpacker's win
                raise
    return next(p for p in tree_dir.iterdir() if p.is_dir())


def _private_tree(pristine: Path, dest: Path, header: str) -> None:
    """A hard-linked copy of the tree with our drivers hooked in (no pristine file written)."""
    proc = subprocess.run(["cp", "-al", str(pristine), str(dest)], capture_output=True, check=False)
    if proc.returncode != 0:  # another filesystem: a plain copy
        shutil.rmtree(dest, ignore_errors=True)
        run_tool(["cp", "-a", str(pristine), str(dest)])
    drivers = dest / "drivers"
    shutil.copytree(DRIVER_DIR, drivers / "tickless")
    (drivers / "tickless" / "tickless_abi.h").write_text(header)
    for name, edit in (("Makefile", _hook_makefile), ("Kconfig", _hook_kconfig)):
        path = drivers / name
        text = edit(path.read_text())
        path.unlink()  # break the hard link before writing
        path.write_text(text)


def _hook_makefile(text: str) -> str:
    return text + _MAKEFILE_HOOK


def _hook_kconfig(text: str) -> str:
    end = text.rindex("endmenu")
    return text[:end] + _KCONFIG_HOOK + text[end:]


def _make(tree: Path, out: Path, *targets: str, jobs: int = 1) -> None:
    cmd = [require_tool("make"), "-C", str(tree), f"O={out}", "ARCH=x86_64", f"-j{jobs}", *targets]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"build failed: {' '.join(cmd)}\n{_tail(proc.stderr or proc.stdout)}")


def apply_fragment(tree: Path, out: Path, options: dict[str, str]) -> None:
    """tinyconfig, our options with scripts/config, olddefconfig; then check each took."""
    _make(tree, out, "tinyconfig")
    args: list[str] = []
    for name, value in options.items():
        short = name.removeprefix("CONFIG_")
        if value == "y":
            args += ["--enable", short]
        elif value == "n":
            args += ["--disable", short]
        else:
            args += ["--set-val", short, value]
    run_tool([str(tree / "scripts" / "config"), "--file", str(out / ".config"), *args])
    _make(tree, out, "olddefconfig")
    missing = missing_options(options, (out / ".config").read_text())
    if missing:
        raise BuildError(f"the kernel config did not keep: {', '.join(missing)}")


def build_vmlinux(hz: int = 100, *, stock: bool = False, force: bool = False) -> Path:
    """Return the path of our vmlinux for ``hz``, building it first when needed; ``stock``:
    the kernel without our clocks (``--linux-drivers stock``)."""
    options = fragment_options(hz, stock=stock)
    ensure_build_deps()
    gcc = require_tool("gcc")
    header = abi_header.render_c_header(kernel=True)
    inputs = fingerprint_inputs(hz, gcc=gcc, stock=stock)

    def build(work: Path) -> None:
        pristine = source_tree()
        tree, out = work / "src", work / "build"
        out.mkdir()
        _private_tree(pristine, tree, header)
        _progress(f"configuring Linux ({pristine.name}, HZ={hz}{', stock' if stock else ''})")
        apply_fragment(tree, out, options)
        jobs = len(os.sched_getaffinity(0))
        _progress(f"building vmlinux with make -j{jobs} (about 1.5 min on 2 cores)")
        started = time.monotonic()
        _make(tree, out, "vmlinux", jobs=jobs)
        _progress(f"vmlinux built in {time.monotonic() - started:.0f} s")
        for src, name in (
            ("vmlinux", "vmlinux"),
            (".config", "config"),
            ("System.map", "System.map"),
        ):
            os.replace(out / src, work / name)

    out_dir = cached_build("linux", inputs, build, OUTPUTS, force=force)
    return out_dir / "vmlinux"


_ELF_HEADER = b"\x7fELF\x02\x01"  # magic, 64-bit, little-endian
_ET_EXEC, _EM_X86_64 = 2, 62


def check_vmlinux(path: Path) -> None:
    """Refuse (InputError) anything but an x86-64 ELF executable, as ``--kernel`` takes."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError as exc:
        raise InputError(f"--kernel {path}: {exc.strerror}") from None
    if len(head) < 20 or not head.startswith(_ELF_HEADER):
        raise InputError(f"--kernel {path}: not a 64-bit little-endian ELF file (a vmlinux)")
    e_type = int.from_bytes(head[16:18], "little")
    e_machine = int.from_bytes(head[18:20], "little")
    if e_type != _ET_EXEC or e_machine != _EM_X86_64:
        raise InputError(
            f"--kernel {path}: ELF type {e_type}, machine {e_machine}: want an x86-64 "
            "executable (vmlinux, not bzImage or a module)"
        )
