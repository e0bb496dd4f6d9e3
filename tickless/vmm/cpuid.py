"""The CPUID table a stock Linux guest gets: the host's, less what tells it the time.

A stock kernel (``--linux-drivers stock``) must measure its TSC's rate against the zoo's
dilated HPET at boot, so that its TSC, sched_clock and LAPIC timer count guest time. It
does so only when nothing tells it the frequency: KVM's leaves (0x40000000-0x400000ff:
the signature, and with it kvm-clock and every PV feature) and the TSC/crystal leaves
0x15 and 0x16 (Linux's ``native_calibrate_tsc`` and ``cpu_khz_from_cpuid``) are left out.
The hypervisor bit stays: it is a VM, just not one Linux can ask for the time.

TSC_ADJUST (leaf 7, EBX bit 1) is cleared too. It tells no rate, but with it and an
invariant TSC Linux switches its clocksource watchdog off for the TSC
(``check_system_tsc_reliable``), as ``tsc=reliable`` would; without it the watchdog
compares the TSC with the HPET every half second of guest time and marks it unstable
beyond its margin, so the kernel itself checks that its calibration holds.

On these hosts guest CPUID does not follow KVM_SET_CPUID2 (../shared/notes/kvm-on-this-host.md:
the guest read leaf 7 EBX 0xf1bf2bfb where the table said 0x1802850), so the table changes
nothing here: their CPUID shows no KVM signature and no frequency leaves anyway, and the
stock command line's ``clearcpuid=tsc_adjust`` (``vmm/linux_boot.py``) takes TSC_ADJUST
away. The table is for a KVM that applies it.
"""

from __future__ import annotations

from tickless.kvm import abi

KVM_LEAVES = range(0x4000_0000, 0x4000_0100)
FREQUENCY_LEAVES = frozenset({0x15, 0x16})
EXTENDED_FEATURES, TSC_ADJUST_EBX = 0x7, 1 << 1


def hides(function: int) -> bool:
    """Whether a stock guest's table leaves out this leaf."""
    return function in KVM_LEAVES or function in FREQUENCY_LEAVES


def without_clock_leaves(table: abi.Cpuid2) -> abi.Cpuid2:
    """A copy of ``table`` without the leaves that tell a guest the time (``hides``) and
    with TSC_ADJUST cleared; the rest as it was, in order."""
    out = abi.Cpuid2()
    kept = 0
    for i in range(table.nent):
        entry = table.entries[i]
        if hides(int(entry.function)):
            continue
        out.entries[kept] = entry
        if entry.function == EXTENDED_FEATURES and entry.index == 0:
            out.entries[kept].ebx &= ~TSC_ADJUST_EBX
        kept += 1
    out.nent = kept
    return out
