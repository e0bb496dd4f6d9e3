"""What the host writes into a new guest before its first instruction: long-mode page
tables, GDT and TSS, the kernel image, and the boot parameters (``struct tickless_boot``)."""

from __future__ import annotations

from tickless.axes import wire_code
from tickless.devices.memory import GuestMemory
from tickless.guest import abi
from tickless.kvm import abi as kvm_abi
from tickless.kvm.errors import KvmError
from tickless.kvm.longmode import LongModeLayout, gdt_and_tss, long_mode_sregs, page_tables
from tickless.kvm.system import KvmSystem
from tickless.kvm.vcpu import Vcpu
from tickless.timers.clock import GuestClock
from tickless.vmm.config import GuestConfig

LAYOUT = LongModeLayout(
    pml4=abi.PML4_GPA,
    pdpt=abi.PDPT_GPA,
    pd=abi.PD_GPA,
    gdt=abi.GDT_GPA,
    tss=abi.TSS_GPA,
    kernel_stack_top=abi.KERNEL_STACK_TOP,
    user_ports=(abi.CONSOLE_PORT, abi.HYPERCALL_PORT),
    selectors=(abi.KERNEL_CS, abi.KERNEL_DS, abi.USER_DS, abi.USER_CS, abi.TSS_SEL),
)


def load_image(memory: GuestMemory, image: bytes) -> None:
    """Long-mode structures and the kernel image, at the addresses of ``guest/abi.py``."""
    for gpa, blob in (*page_tables(LAYOUT).items(), *gdt_and_tss(LAYOUT).items()):
        memory.view(gpa, len(blob), "setup")[:] = blob
    if len(image) > abi.IMAGE_MAX_BYTES:
        raise KvmError(f"guest image of {len(image)} bytes does not fit")
    memory.view(abi.IMAGE_GPA, len(image), "image")[:] = image


def write_boot_params(boot: abi.Boot, cfg: GuestConfig, clock: GuestClock) -> None:
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
    boot.results_gpa = abi.RESULTS_GPA
    boot.results_capacity = cfg.results_capacity
    boot.memory_bytes = cfg.memory_bytes
    boot.io_handler_tsc = clock.delta_ticks_at_least(cfg.io_handler_ns)
    boot.spin_threshold_ns = cfg.spin_threshold_ns
    boot.second_vcpu_busy = int(cfg.second_vcpu_busy)


def long_mode_vcpu(system: KvmSystem, vcpu: Vcpu, rip: int, rsp: int) -> Vcpu:
    """A vCPU that starts at ``rip`` in 64-bit ring 0, ``rdi`` pointing at the boot block."""
    vcpu.set_cpuid(system.supported_cpuid)
    vcpu.set_sregs(long_mode_sregs(vcpu.get_sregs(), LAYOUT))
    vcpu.set_regs(kvm_abi.Regs(rip=rip, rsp=rsp, rdi=abi.BOOT_GPA, rflags=abi.RFLAGS_FIXED))
    return vcpu
