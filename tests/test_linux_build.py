"""The Linux guest's build: config fragment, cache key, --kernel check, kernel ABI header.

Tests marked ``linux`` build the kernel (or reuse it from the cache): ~1.5 min when cold.
CI runs them; ``-m 'not linux'`` leaves them out locally.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tickless.buildcache import BuildError
from tickless.errors import InputError
from tickless.guest import abi_header
from tickless.guest import linux_build as lb

GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc not installed")


# --- the config fragment --------------------------------------------------------------------


def test_fragment_sets_the_hz_asked_for() -> None:
    for hz in lb.HZ_CHOICES:
        options = lb.fragment_options(hz)
        assert options[f"CONFIG_HZ_{hz}"] == "y"
        assert [k for k, v in options.items() if k.startswith("CONFIG_HZ_") and v == "y"] == [
            f"CONFIG_HZ_{hz}"
        ]
    with pytest.raises(InputError, match="HZ must be one of"):
        lb.fragment_options(300)


def test_fragment_has_what_the_drivers_need() -> None:
    options = lb.fragment_options()
    for name in (
        "CONFIG_TICKLESS_GUEST",
        "CONFIG_PARAVIRT_CLOCK",
        "CONFIG_HIGH_RES_TIMERS",
        "CONFIG_NO_HZ_IDLE",
        "CONFIG_X86_IO_APIC",
        "CONFIG_X86_MPPARSE",
        "CONFIG_SERIAL_8250_CONSOLE",
    ):
        assert options[name] == "y", name
    assert options["CONFIG_SMP"] == "n"
    assert options["CONFIG_HZ_100"] == "y"  # the default


def test_fragment_refuses_a_line_it_cannot_read(tmp_path: Path) -> None:
    bad = tmp_path / "bad.config"
    bad.write_text("CONFIG_PRINTK=y\nPRINTK y\n")
    with pytest.raises(BuildError, match=r"bad\.config:2: not a config line"):
        lb.fragment_options(100, bad)


def test_missing_options_names_what_did_not_take() -> None:
    options = {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": "y", "CONFIG_D": '"x"'}
    config = 'CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D="x"\n'
    assert lb.missing_options(options, config) == ["# CONFIG_B is not set", "CONFIG_C=y"]
    assert lb.missing_options({"CONFIG_E": "n"}, "") == []  # absent is "not set"


def test_missing_source_without_root_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lb, "TARBALL", tmp_path / "missing.tar.xz")
    monkeypatch.setattr(lb.os, "geteuid", lambda: 1000)
    with pytest.raises(BuildError, match=r"apt-get install linux-source-6\.12 flex bison") as info:
        lb.ensure_build_deps()
    assert "\n" not in str(info.value)


# --- the cache key --------------------------------------------------------------------------


@pytest.fixture
def linux_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "linux"
    shutil.copytree(lb.LINUX_DIR, copy)
    return copy


@pytest.fixture
def tarball(tmp_path: Path) -> Path:
    fake = tmp_path / "linux-source.tar.xz"
    fake.write_bytes(b"not really a kernel")
    return fake


@needs_gcc
def test_key_changes_when_a_driver_source_changes(linux_copy: Path, tarball: Path) -> None:
    assert GCC is not None

    def key(hz: int = 100) -> str:
        return lb.kernel_key(hz, gcc=GCC, tarball=tarball, linux_dir=linux_copy)

    before = key()
    assert key() == before  # deterministic
    driver = linux_copy / "drivers" / "tickless" / "clockevent.c"
    driver.write_text(driver.read_text() + "\n/* changed */\n")
    after = key()
    assert after != before
    fragment = linux_copy / "tickless.config"
    fragment.write_text(fragment.read_text() + "CONFIG_PRINTK_TIME=y\n")
    assert key() != after
    assert key(1000) != key(100)


@needs_gcc
def test_key_changes_with_the_tarball(linux_copy: Path, tarball: Path) -> None:
    assert GCC is not None
    before = lb.kernel_key(100, gcc=GCC, tarball=tarball, linux_dir=linux_copy)
    tarball.write_bytes(b"a newer kernel, of another size")
    assert lb.kernel_key(100, gcc=GCC, tarball=tarball, linux_dir=linux_copy) != before


# --- --kernel PATH ----------------------------------------------------------------------------


def _elf_header(ei_class: int = 2, e_type: int = 2, machine: int = 62) -> bytes:
    return b"\x7fELF" + bytes([ei_class, 1, 1]) + bytes(9) + struct.pack("<HH", e_type, machine)


def test_check_vmlinux_takes_an_x86_64_executable(tmp_path: Path) -> None:
    good = tmp_path / "vmlinux"
    good.write_bytes(_elf_header() + bytes(100))
    lb.check_vmlinux(good)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"#!/bin/sh\necho not a kernel\n", "not a 64-bit little-endian ELF"),
        (b"MZ" + bytes(600), "not a 64-bit little-endian ELF"),  # a bzImage/PE
        (_elf_header(ei_class=1), "not a 64-bit little-endian ELF"),
        (_elf_header(e_type=1), "ELF type 1"),  # a module (relocatable)
        (_elf_header(machine=183), "machine 183"),  # aarch64
        (b"\x7fELF", "not a 64-bit"),  # truncated
    ],
)
def test_check_vmlinux_refuses(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "kernel"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        lb.check_vmlinux(path)


def test_check_vmlinux_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="No such file"):
        lb.check_vmlinux(tmp_path / "nope")


# --- the kernel's ABI header and the driver sources ------------------------------------------


def test_kernel_header_is_namespaced() -> None:
    """Unprefixed, EINVAL or PVCLOCK_TSC_STABLE_BIT would clash with the kernel's."""
    header = abi_header.render_c_header(kernel=True)
    defines = [line.split()[1] for line in header.splitlines() if line.startswith("#define")]
    assert defines and all(name.startswith("TICKLESS_") for name in defines)
    assert "TICKLESS_HYPERCALL_SET_CLOCKEVENT 1" in header
    assert "<linux/types.h>" in header and "<stdint.h>" not in header
    assert "struct pvclock_vcpu_time_info" not in header  # the kernel has its own


@needs_gcc
def test_kernel_header_compiles_and_its_asserts_hold(tmp_path: Path) -> None:
    assert GCC is not None
    (tmp_path / "linux").mkdir()
    (tmp_path / "linux" / "types.h").write_text(
        "typedef unsigned long long u64; typedef unsigned int u32;\n"
        "typedef signed char s8; typedef unsigned char u8;\n"
    )
    (tmp_path / "tickless_abi.h").write_text(abi_header.render_c_header(kernel=True))
    src = tmp_path / "use.c"
    src.write_text('#include "tickless_abi.h"\nint x = TICKLESS_LINUX_TIMER_IRQ;\n')
    cmd = [GCC, "-fsyntax-only", "-std=gnu11", "-Wall", "-Werror", f"-I{tmp_path}", str(src)]
    subprocess.run(cmd, check=True, capture_output=True)


def test_driver_sources_carry_spdx() -> None:
    sources = [p for p in lb.LINUX_DIR.rglob("*") if p.is_file()]
    assert any(p.suffix == ".c" for p in sources)
    for path in sources:
        first = path.read_text().splitlines()[0]
        assert "SPDX-License-Identifier: GPL-2.0" in first, path


# --- the built kernel (slow when the cache is cold) ------------------------------------------


@pytest.fixture(scope="module")
def vmlinux() -> Path:
    return lb.build_vmlinux(100)


@pytest.mark.linux
def test_built_config_keeps_every_option(vmlinux: Path) -> None:
    config = (vmlinux.parent / "config").read_text()
    assert lb.missing_options(lb.fragment_options(100), config) == []
    assert "CONFIG_HZ=100\n" in config


@pytest.mark.linux
def test_built_vmlinux_has_our_drivers(vmlinux: Path) -> None:
    lb.check_vmlinux(vmlinux)
    symbols = {line.split()[2] for line in (vmlinux.parent / "System.map").read_text().splitlines()}
    for name in (
        "tickless_init",
        "tickless_clock_ns",
        "tickless_clockevent_init",
        "tickless_set_next_event",
        "tickless_workload",
    ):
        assert name in symbols, name
    assert b"tickless.window" in vmlinux.read_bytes()  # the command-line parameter


@pytest.mark.linux
def test_a_second_build_is_a_cache_hit(vmlinux: Path) -> None:
    assert lb.build_vmlinux(100) == vmlinux
