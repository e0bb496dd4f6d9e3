"""How a guest is put in memory and started: one ``GuestBoot`` per kind of guest.

The machine (``vmm/machine.py``) is the same for every guest; what differs is here: the
memory it needs, where it shares structures with the host (``GuestLayout``), what the host
writes before the first instruction, the vCPU's entry state, how device interrupts reach
it, and which emulator gaps of these hosts it needs help with. The small guest's boot is
below; Linux's is ``vmm/linux_boot.py``.
"""

from __future__ import annotations

import ctypes
from dataclasses import replace
from typing import Protocol

from tickless.axes import Advance, IoCpu, TimerPath, wire_code
from tickless.devices.config import GuestConfig
from tickless.devices.device import GuestLayout
from tickless.devices.memory import GuestMemory
from tickless.errors import KvmError
from tickless.guest import abi
from tickless.kvm import abi as kvm_abi
from tickless.kvm.exits import VcpuExit
from tickless.kvm.longmode import LongModeLayout, gdt_and_tss, long_mode_sregs, page_tables
from tickless.kvm.system import KvmSystem
from tickless.kvm.vcpu import Vcpu
from tickless.kvm.vm import Vm
from tickless.timers.clock import GuestClock
from tickless.timers.pv_deadline import pv_advance


class GuestBoot(Protocol):
    """What the machine needs to know of one kind of guest."""

    layout: GuestLayout
    irq_routes: dict[int, int]  # device vector -> GSI, for guests that route through the IOAPIC

    def prepare_vm(self, vm: Vm) -> None:
        """Extra VM-wide setup (beyond the irqchip and memory)."""

    def load(self, memory: GuestMemory, config: GuestConfig, clock: GuestClock) -> None:
        """Write the kernel, its boot data and the boot parameters into guest memory."""

    def start_vcpu(self, system: KvmSystem, vcpu: Vcpu) -> None:
        """The boot vCPU's registers at its first instruction."""

    def assist(self, exit_: VcpuExit, vcpu: Vcpu) -> str | None:
        """Complete what this host's emulator cannot (``None``: not ours to fix); returns
        the assist's name, which the machine counts."""


def write_boot_params(
    boot: abi.Boot, cfg: GuestConfig, clock: GuestClock, layout: GuestLayout
) -> None:
    """``struct tickless_boot``: what the guest's workload runs (both kinds of guest)."""
    boot.magic = abi.BOOT_MAGIC
    boot.abi_version = abi.ABI_VERSION
    boot.scenario = cfg.scenario
    boot.timer = wire_code(cfg.timer)
    boot.method = wire_code(cfg.method)
    boot.wait = wire_code(cfg.wait)
    boot.mode = wire_code(cfg.mode)
    boot.interval_ns = cfg.interval_ns
    boot.interval_tsc = clock.delta_ticks_at_least(cfg.interval_ns)
    boot.count = cfg.count
    boot.period_ns = cfg.period_ns
    boot.duration_ns = cfg.duration_ns
    boot.housekeeping_a_ns, boot.housekeeping_b_ns = cfg.housekeeping_ns
    boot.housekeeping_phase_ns = cfg.housekeeping_phase_ns
    boot.results_gpa = layout.results_gpa
    boot.results_capacity = cfg.results_capacity
    boot.memory_bytes = cfg.memory_bytes
    boot.io_handler_tsc = clock.delta_ticks_at_least(cfg.io_handler_ns)
    boot.spin_threshold_ns = cfg.spin_threshold_ns
    boot.second_vcpu_busy = int(cfg.second_vcpu_busy)
    boot.io_cpu = 1 if cfg.second_vcpu and cfg.io_cpu is IoCpu.OTHER else 0
    boot.explain = int(cfg.explain)
    boot.warp = int(cfg.warp_idle)
    boot.pv_idle = abi.PV_IDLE_WAYS.index(cfg.pv_idle)  # abi.PV_IDLE_HALT, _BLOCK, _LAPIC
    boot.clock_sample_ns = STOCK_CLOCK_SAMPLE_NS if cfg.stock else 0
    write_lapic_advance(boot, cfg)
    if cfg.timer is TimerPath.RTC:  # its periodic rate, 2^(16 - RS) Hz (hz: a power of two)
        boot.rtc_rate_select = 16 - cfg.hz.bit_length() + 1
    boot.msg_address, boot.msg_peer, boot.msg_retry_ns = (
        cfg.msg_address,
        cfg.msg_peer,
        cfg.msg_retry_ns,
    )
    schedule = cfg.cron_schedule
    boot.cron_timers = len(schedule)
    boot.cron_origin_ns = cfg.cron_origin_ns
    for i, (period_ns, first_ns) in enumerate(schedule):
        boot.cron_period_ns[i] = period_ns
        boot.cron_first_ns[i] = first_ns


def write_lapic_advance(boot: abi.Boot, cfg: GuestConfig) -> None:
    """``--timer lapic --advance auto``: the PV device's advance, run by the guest."""
    boot.lapic_advance = int(cfg.advance is Advance.AUTO)
    adv = pv_advance()
    boot.advance_start_ns, boot.advance_target_ns = adv.advance_ns, adv.target_margin_ns
    boot.advance_min_ns, boot.advance_max_ns = adv.min_ns, adv.max_ns
    boot.advance_grow, boot.advance_grow_shift = adv.grow, adv.grow_shift
    boot.advance_shrink_shift = adv.shrink_shift


# How often a stock Linux samples its clocks (guest time): often enough for the HPET's
# 32-bit counter (a wrap every 42.9 s), rarely enough that its idle stays idle.
STOCK_CLOCK_SAMPLE_NS = 5_000_000_000


def write_boot_block(
    memory: GuestMemory, cfg: GuestConfig, clock: GuestClock, layout: GuestLayout
) -> None:
    view = memory.view(layout.boot_gpa, ctypes.sizeof(abi.Boot), "boot")
    boot = abi.Boot.from_buffer(view)
    write_boot_params(boot, cfg, clock, layout)
    del boot  # a live view would keep the mapping open after close()


SMALL_GUEST_LONG_MODE = LongModeLayout(
    pml4=abi.PML4_GPA,
    pdpt=abi.PDPT_GPA,
    pd=abi.PD_GPA,
    gdt=abi.GDT_GPA,
    tss=abi.TSS_GPA,
    kernel_stack_top=abi.KERNEL_STACK_TOP,
    user_ports=(
        abi.CONSOLE_PORT,
        abi.HYPERCALL_PORT,
        abi.PV_KICK_PORT,
        *range(abi.PIT_PORT, abi.PIT_PORT + abi.PIT_PORTS),  # the timer zoo, from ring 3
        abi.PIT_GATE_PORT,
        *range(abi.RTC_PORT, abi.RTC_PORT + abi.RTC_PORTS),
    ),
    selectors=(abi.KERNEL_CS, abi.KERNEL_DS, abi.USER_DS, abi.USER_CS, abi.TSS_SEL),
    mmio_page=(abi.PD_HIGH_GPA, abi.IOAPIC_GPA),  # IOAPIC and HPET registers
)


# vCPU 1 shares the page tables and GDT; only its TSS (TR's base) and ring-0 stack differ.
AP_LONG_MODE = replace(
    SMALL_GUEST_LONG_MODE, tss=abi.AP_TSS_GPA, kernel_stack_top=abi.AP_KERNEL_STACK_TOP
)


def enter_long_mode(
    system: KvmSystem,
    vcpu: Vcpu,
    layout: LongModeLayout,
    regs: kvm_abi.Regs,
    cpuid: kvm_abi.Cpuid2 | None = None,
) -> None:
    """A vCPU that starts in 64-bit ring 0 with paging on, at ``regs``, with ``cpuid``
    (default: everything KVM supports)."""
    vcpu.set_cpuid(system.supported_cpuid if cpuid is None else cpuid)
    vcpu.set_sregs(long_mode_sregs(vcpu.get_sregs(), layout))
    vcpu.set_regs(regs)


def write_long_mode_tables(memory: GuestMemory, layout: LongModeLayout) -> None:
    for gpa, blob in (*page_tables(layout).items(), *gdt_and_tss(layout).items()):
        memory.view(gpa, len(blob), "setup")[:] = blob


class SmallGuestBoot:
    """tickless's own kernel: a flat image at ``IMAGE_GPA``, entered in long mode with
    ``rdi`` = the boot block; interrupts arrive as MSIs on the ABI's vectors."""

    def __init__(self, image: bytes) -> None:
        if len(image) > abi.IMAGE_MAX_BYTES:
            raise KvmError(f"guest image of {len(image)} bytes does not fit")
        self.image = image
        self.layout = GuestLayout.small_guest()
        self.irq_routes: dict[int, int] = {}

    def prepare_vm(self, vm: Vm) -> None:
        pass

    def load(self, memory: GuestMemory, config: GuestConfig, clock: GuestClock) -> None:
        write_long_mode_tables(memory, SMALL_GUEST_LONG_MODE)
        if config.second_vcpu:  # its own TSS: interrupts in ring 3 switch to its own stack
            tss = gdt_and_tss(AP_LONG_MODE)[abi.AP_TSS_GPA]
            memory.view(abi.AP_TSS_GPA, len(tss), "setup")[:] = tss
        memory.view(abi.IMAGE_GPA, len(self.image), "image")[:] = self.image
        write_boot_block(memory, config, clock, self.layout)

    def start_vcpu(self, system: KvmSystem, vcpu: Vcpu) -> None:
        self._enter(system, vcpu, abi.IMAGE_GPA, abi.KERNEL_STACK_TOP)

    def start_second_vcpu(self, system: KvmSystem, vcpu: Vcpu) -> None:
        """vCPU 1 (CPU load, or the I/O interrupts steered to it): its own entry point,
        stacks and TSS (whose RSP0 is its ring-0 stack)."""
        regs = kvm_abi.Regs(
            rip=abi.AP_ENTRY_GPA,
            rsp=abi.AP_KERNEL_STACK_TOP,
            rdi=abi.BOOT_GPA,
            rflags=abi.RFLAGS_FIXED,
        )
        enter_long_mode(system, vcpu, AP_LONG_MODE, regs)
        vcpu.set_runnable()

    def _enter(self, system: KvmSystem, vcpu: Vcpu, rip: int, rsp: int) -> None:
        regs = kvm_abi.Regs(rip=rip, rsp=rsp, rdi=abi.BOOT_GPA, rflags=abi.RFLAGS_FIXED)
        enter_long_mode(system, vcpu, SMALL_GUEST_LONG_MODE, regs)

    def assist(self, exit_: VcpuExit, vcpu: Vcpu) -> str | None:
        return None  # the small guest avoids every instruction this host cannot emulate
