"""The guest ABI (``abi.py``) rendered as the C header both guests compile against
(``tickless_abi.h``): every constant, enum and structure, with ``_Static_assert``s on each
structure's size and field offsets, so the C and Python sides cannot drift."""

from __future__ import annotations

import ctypes as C
from typing import Any

from tickless.axes import Method, TickMode, TimerPath, Wait, wire_code
from tickless.guest import abi
from tickless.guest.abi import (
    BOOT_GPA,
    SHARED_GPA,
    Boot,
    ClockSample,
    FuzzAction,
    Hypercall,
    LinuxInfo,
    MsgRing,
    MsgSlot,
    Panic,
    PvclockVcpuTimeInfo,
    Scenario,
    Shared,
)

_C_TYPES: dict[Any, str] = {
    C.c_uint64: "uint64_t",
    C.c_uint32: "uint32_t",
    C.c_int8: "int8_t",
    C.c_uint8: "uint8_t",
}
# The kernel's own spelling (<linux/types.h>), which checkpatch and kernel style expect.
_KERNEL_TYPES: dict[Any, str] = {
    C.c_uint64: "u64",
    C.c_uint32: "u32",
    C.c_int8: "s8",
    C.c_uint8: "u8",
}


# Structures other structures hold, by their C name (rendered before their holders).
_NESTED: dict[Any, str] = {ClockSample: "tickless_clock_sample"}


def _c_struct(name: str, struct: type[C.Structure], types: dict[Any, str] = _C_TYPES) -> list[str]:
    lines = [f"struct {name} {{"]
    fields: list[tuple[str, Any]] = struct._fields_  # type: ignore[assignment]
    for field_name, ctype in fields:
        if hasattr(ctype, "_length_"):
            lines.append(f"    {types[ctype._type_]} {field_name}[{ctype._length_}];")
        elif ctype in _NESTED:
            lines.append(f"    struct {_NESTED[ctype]} {field_name};")
        else:
            lines.append(f"    {types[ctype]} {field_name};")
    lines.append("} __attribute__((packed));")
    lines.append(f'_Static_assert(sizeof(struct {name}) == {C.sizeof(struct)}, "{name}");')
    for field_name, _ in fields:
        offset = getattr(struct, field_name).offset
        lines.append(
            f"_Static_assert(__builtin_offsetof(struct {name}, {field_name}) == {offset}, "
            f'"{name}.{field_name}");'
        )
    return lines


def _c_defines() -> list[tuple[str, str]]:
    """Every constant (hex), enum member and axis code (decimal) of ``abi.py``, as (name, value)."""
    consts = [(k, f"{v:#x}") for k, v in vars(abi).items() if k.isupper() and isinstance(v, int)]
    for enum in (Hypercall, Scenario, Panic, FuzzAction):
        consts += [(f"{enum.__name__.upper()}_{m.name}", str(int(m))) for m in enum]
    for axis in (TimerPath, Method, Wait, TickMode):  # user-facing axes the guest sees
        consts += [(f"{axis.__name__.upper()}_{c.name}", str(wire_code(c))) for c in axis]
    return consts


def render_c_header(kernel: bool = False) -> str:
    """tickless_abi.h: every constant and structure of ``abi.py``, for the guest's C and assembly.

    ``kernel=True`` renders the variant the Linux drivers include: names prefixed with
    ``TICKLESS_`` (unprefixed, ``EINVAL``, ``KERNEL_CS`` or ``PVCLOCK_TSC_STABLE_BIT`` would
    clash with the kernel's own), ``<linux/types.h>`` types, and no pvclock structure (the
    kernel has it in ``<asm/pvclock-abi.h>``, with the same layout)."""
    lines = ["/* Generated from tickless/guest/abi.py: do not edit. */", "#pragma once", ""]
    prefix = "TICKLESS_" if kernel else ""
    lines += [f"#define {prefix}{key} {value}" for key, value in _c_defines()]
    # The small guest's fixed addresses; the Linux window has none (the drivers use structs).
    fixed = () if kernel else (("SHARED", SHARED_GPA, Shared), ("BOOT_PARAM", BOOT_GPA, Boot))
    for name, base, struct in fixed:
        for field_name, _ in struct._fields_:  # type: ignore[misc]
            offset = getattr(struct, field_name).offset
            lines.append(f"#define {name}_{field_name.upper()} ({base + offset:#x})")
    structs: list[tuple[str, type[C.Structure]]] = [
        ("tickless_boot", Boot),
        ("tickless_shared", Shared),
        ("tickless_clock_sample", ClockSample),
        ("tickless_linux_info", LinuxInfo),
        ("tickless_msg_ring", MsgRing),
        ("tickless_msg_slot", MsgSlot),
    ]
    if kernel:
        lines += ["", "#ifndef __ASSEMBLY__", "#include <linux/types.h>"]
    else:
        lines += ["", "#ifndef __ASSEMBLER__", "#include <stdint.h>"]
        structs.insert(2, ("pvclock_vcpu_time_info", PvclockVcpuTimeInfo))
    for name, layout in structs:
        lines += _c_struct(name, layout, _KERNEL_TYPES if kernel else _C_TYPES)
    lines += ["#endif", ""]
    return "\n".join(lines)
