"""What the guest kernel's PANIC hypercall codes mean (codes: ``abi.Panic``)."""

from __future__ import annotations

from tickless.guest.abi import Panic

EXCEPTION_NAMES = {
    0: "#DE divide error",
    1: "#DB debug",
    2: "NMI",
    3: "#BP breakpoint",
    4: "#OF overflow",
    5: "#BR bound range",
    6: "#UD invalid opcode",
    7: "#NM no FPU",
    8: "#DF double fault",
    10: "#TS invalid TSS",
    11: "#NP segment not present",
    12: "#SS stack fault",
    13: "#GP general protection",
    14: "#PF page fault",
    16: "#MF x87 error",
    17: "#AC alignment check",
    18: "#MC machine check",
    19: "#XM SIMD error",
    20: "#VE virtualization exception",
}


def describe_panic(code: int, detail: int) -> str:
    if code in EXCEPTION_NAMES:
        return f"{EXCEPTION_NAMES[code]} at rip {detail:#x}"
    if code == Panic.UNEXPECTED_VECTOR:
        return f"interrupt on an unexpected vector at rip {detail:#x}"
    if code == Panic.BAD_ABI:
        return f"boot parameters of the wrong ABI (guest saw version {detail})"
    if code == Panic.SET_CLOCKEVENT_FAILED:
        return f"SET_CLOCKEVENT failed with errno {detail}"
    if code == Panic.SET_PERIODIC_REFUSED:
        return f"SET_PERIODIC refused period {detail} ns"
    return f"panic code {code:#x}, detail {detail:#x}"
