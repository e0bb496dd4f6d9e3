"""One guest machine: a KVM VM with one vCPU, the tickless guest kernel and its devices.

The vCPU runs in its own thread, parked in KVM_RUN; interrupts (in-kernel irqchip) and
HLT never come back through Python. Only port I/O (hypercalls, console) and faults do.
"""

from __future__ import annotations

import ctypes
import signal
import threading
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tickless.axes import wire_code
from tickless.devices.console import Console
from tickless.devices.faults import GuestFault
from tickless.devices.hypercall import HypercallPort, as_signed
from tickless.devices.io_irq import IoInterruptSource
from tickless.devices.memory import GuestMemory
from tickless.devices.pvclock import PvclockPage
from tickless.guest import abi
from tickless.guest.abi import Hypercall
from tickless.guest.panic import describe_panic
from tickless.host.cputime import thread_cpu_ns
from tickless.host.realtime import apply_to_current_thread
from tickless.host.timer_thread import HostTimerThread
from tickless.host.tsc import rdtsc
from tickless.kvm import abi as kvm_abi
from tickless.kvm.errors import KvmError
from tickless.kvm.exits import ExitReason, exit_name
from tickless.kvm.longmode import LongModeLayout, gdt_and_tss, long_mode_sregs, page_tables
from tickless.kvm.system import KvmSystem
from tickless.kvm.vcpu import Vcpu
from tickless.kvm.vm import Vm
from tickless.timers.clock import GuestClock
from tickless.timers.clockevents import ClockEventDevice
from tickless.timers.injection import HoldBackWindow
from tickless.timers.precise import PreciseTimerChannel
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
MAX_LOG_BYTES = 4096
STOP_SIGNAL = signal.SIGUSR1


def _kick(vcpu: Vcpu, thread: threading.Thread | None) -> None:
    """Make a vCPU thread leave KVM_RUN now (immediate_exit covers a thread not in it)."""
    vcpu.request_stop()
    if thread is not None and thread.ident is not None and thread.is_alive():
        signal.pthread_kill(thread.ident, STOP_SIGNAL)


class GuestStopped(RuntimeError):
    """A guest ended without finishing its work; the message says why."""


def install_stop_signal() -> None:
    """A no-op handler, so the signal only interrupts KVM_RUN (call from the main thread)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(STOP_SIGNAL, lambda signum, frame: None)


@dataclass
class GuestOutcome:
    """How a guest's run ended: ``ok`` (it called DONE) or with a fault message."""

    ok: bool = False
    reason: str = "not started"
    events: int = 0
    exits: Counter[str] = field(default_factory=Counter)
    hypercalls: int = 0
    injections: int = 0
    console: str = ""
    vcpu_cpu_ns: int = 0


class GuestMachine:
    """A guest VM wired to the shared host timer thread."""

    def __init__(
        self,
        system: KvmSystem,
        timers: HostTimerThread,
        config: GuestConfig,
        image: bytes,
        name: str = "guest0",
        precise_timers: HostTimerThread | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self.timers = timers
        self.precise_timers = precise_timers or timers
        self.io: IoInterruptSource | None = None
        self.ap: Vcpu | None = None
        self._ap_thread: threading.Thread | None = None
        self._last_precise_events = 0
        self.ap_error: str | None = None
        self.ap_cpu_ns = 0  # CPU time of vCPU 1's thread (guest busy loop included)
        self.vcpu_problems: list[str] = []
        self.outcome = GuestOutcome()
        self._stop_requested = False
        self._thread: threading.Thread | None = None
        self.vm = Vm(system)
        try:
            self._setup(system, image)
        except BaseException:
            self.close()
            raise

    # --- construction ---------------------------------------------------------------------

    def _setup(self, system: KvmSystem, image: bytes) -> None:
        cfg, vm = self.config, self.vm
        vm.set_tss_addr(abi.KVM_TSS_GPA)
        vm.create_irqchip()
        if cfg.halt_poll_ns is not None:
            vm.set_halt_poll_ns(cfg.halt_poll_ns)
        self.memory_region = vm.add_memory(0, cfg.memory_bytes)
        self.memory = GuestMemory(vm)
        for gpa, blob in (*page_tables(LAYOUT).items(), *gdt_and_tss(LAYOUT).items()):
            self.memory.view(gpa, len(blob), "setup")[:] = blob
        if len(image) > abi.IMAGE_MAX_BYTES:
            raise KvmError(f"guest image of {len(image)} bytes does not fit")
        self.memory.view(abi.IMAGE_GPA, len(image), "image")[:] = image

        self.tsc_hz = vm.tsc_khz() * 1000
        self.clock = GuestClock.create(self.tsc_hz, rdtsc(), rate=cfg.rate)
        self.pvclock = PvclockPage(self.memory.view(abi.PVCLOCK_GPA, 32, "pvclock"))
        self.pvclock.publish(self.clock)
        self.shared = abi.Shared.from_buffer(
            self.memory.view(abi.SHARED_GPA, ctypes.sizeof(abi.Shared), "shared")
        )
        self.boot = abi.Boot.from_buffer(
            self.memory.view(abi.BOOT_GPA, ctypes.sizeof(abi.Boot), "boot")
        )
        self._write_boot()

        self.console = Console()
        self.clockevent = ClockEventDevice(
            self.clock, self.timers, self._raise_timer_interrupt, name=f"{self.name}-pv"
        )
        self.port = HypercallPort(cfg.max_hypercall_rate)
        self.port.register(Hypercall.SET_CLOCKEVENT, self._hc_set_clockevent)
        self.port.register(Hypercall.SET_PERIODIC, self._hc_set_periodic)
        self.port.register(Hypercall.DONE, self._hc_done)
        self.port.register(Hypercall.LOG, self._hc_log)
        self.port.register(Hypercall.PANIC, self._hc_panic)
        self.precise = PreciseTimerChannel(
            self.clock, self.precise_timers, self._raise_precise_interrupt, name=f"{self.name}-pt"
        )
        self.port.register(Hypercall.SET_PRECISE, self._hc_set_precise)
        if cfg.io_rate_per_s > 0:
            self.io = IoInterruptSource(
                cfg.io_rate_per_s,
                self.clock,
                self.timers,
                inject=lambda: self._inject(abi.IO_VECTOR),
                guest_handled=lambda: int(self.shared.io_irq_count),
                guest_ready=lambda: bool(self.shared.ready),
                precise_deadline_ns=lambda: int(self.shared.precise_deadline_ns),
                hold_back=HoldBackWindow(cfg.hold_back_ns) if cfg.hold_back_ns else None,
                seed=cfg.seed,
            )

        self.vcpu = self._create_vcpu(system, 0, abi.IMAGE_GPA, abi.KERNEL_STACK_TOP)
        if cfg.second_vcpu_busy:
            self.ap = self._create_vcpu(system, 1, abi.AP_ENTRY_GPA, abi.AP_KERNEL_STACK_TOP)
            self.ap.set_runnable()

    def _create_vcpu(self, system: KvmSystem, vcpu_id: int, rip: int, rsp: int) -> Vcpu:
        vcpu = Vcpu(self.vm, vcpu_id)
        vcpu.set_cpuid(system.supported_cpuid)
        vcpu.set_sregs(long_mode_sregs(vcpu.get_sregs(), LAYOUT))
        vcpu.set_regs(kvm_abi.Regs(rip=rip, rsp=rsp, rdi=abi.BOOT_GPA, rflags=0x2))
        return vcpu

    def _write_boot(self) -> None:
        cfg, boot = self.config, self.boot
        boot.magic = abi.BOOT_MAGIC
        boot.abi_version = abi.ABI_VERSION
        boot.scenario = cfg.scenario
        boot.timer = wire_code(cfg.timer)
        boot.method = wire_code(cfg.method)
        boot.wait = wire_code(cfg.wait)
        boot.mode = wire_code(cfg.mode)
        boot.interval_ns = cfg.interval_ns
        boot.interval_tsc = self.clock.delta_ticks_at_least(cfg.interval_ns)
        boot.count = cfg.count
        boot.period_ns = cfg.period_ns
        boot.duration_ns = cfg.duration_ns
        boot.housekeeping_a_ns, boot.housekeeping_b_ns = cfg.housekeeping_ns
        boot.results_gpa = abi.RESULTS_GPA
        boot.results_capacity = cfg.results_capacity
        boot.memory_bytes = cfg.memory_bytes
        boot.io_handler_tsc = self.clock.delta_ticks_at_least(cfg.io_handler_ns)
        boot.spin_threshold_ns = cfg.spin_threshold_ns
        boot.second_vcpu_busy = int(cfg.second_vcpu_busy)

    # --- hypercalls (vCPU thread) ----------------------------------------------------------

    def _hc_set_clockevent(self, delta: int, _unused: int) -> int:
        return self.clockevent.set_next_event(as_signed(delta), rdtsc())

    def _hc_set_periodic(self, period: int, _unused: int) -> int:
        return self.clockevent.set_periodic(as_signed(period), rdtsc())

    def _hc_done(self, events: int, _unused: int) -> int:
        if events > self.config.results_capacity - 1:
            raise GuestFault(
                f"DONE reports {events} events, but the result buffer holds "
                f"{self.config.results_capacity - 1}"
            )
        self.outcome.events = events
        self.outcome.ok = True
        self.outcome.reason = "done"
        self._stop_requested = True
        return 0

    def _hc_log(self, gpa: int, length: int) -> int:
        if length > MAX_LOG_BYTES:
            raise GuestFault(f"LOG of {length} bytes: at most {MAX_LOG_BYTES} per call")
        self.console.write(self.memory.read(gpa, length, "LOG"))
        return 0

    def _hc_set_precise(self, deadline: int, _unused: int) -> int:
        events = int(self.shared.precise_irq_events)
        margin = None
        if events != self._last_precise_events:  # the guest woke from an early interrupt
            self._last_precise_events = events
            margin = as_signed(int(self.shared.precise_margin_ns))
        return self.precise.set_deadline(as_signed(deadline), rdtsc(), margin)

    def _hc_panic(self, code: int, detail: int) -> int:
        raise GuestFault(f"guest kernel panic: {describe_panic(code, detail)}")

    # --- interrupt injection (host timer thread) ------------------------------------------

    def _inject(self, vector: int) -> None:
        self.outcome.injections += 1
        self.vm.signal_msi(vector)

    def _raise_timer_interrupt(self, now_ticks: int) -> None:
        self.shared.host_fired += 1
        self._inject(abi.TIMER_VECTOR)

    def _raise_precise_interrupt(self, now_ticks: int) -> None:
        self._inject(abi.PRECISE_VECTOR)

    # --- running ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._vcpu_thread, name=self.name, daemon=True)
        self._thread.start()
        if self.ap is not None:
            self._ap_thread = threading.Thread(
                target=self._ap_vcpu_thread, name=f"{self.name}-vcpu1", daemon=True
            )
            self._ap_thread.start()
        if self.io is not None:
            self.io.start(rdtsc())

    def request_stop(self, reason: str) -> None:
        """Stop the vCPUs from another thread (Ctrl-C, watchdog, end of an idle run)."""
        if not self._stop_requested and not self.outcome.ok:
            self.outcome.reason = reason
        self._stop_requested = True
        _kick(self.vcpu, self._thread)
        if self.ap is not None:
            _kick(self.ap, self._ap_thread)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the boot vCPU to finish; then for vCPU 1, which it stops on its way out."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        if self._ap_thread is not None:
            self._ap_thread.join(timeout)
        return True

    def _ap_vcpu_thread(self) -> None:
        """vCPU 1 under CPU load: busy in ring 3; any exit ends it (and is reported)."""
        assert self.ap is not None
        native_id = threading.get_native_id()
        try:
            while not self._stop_requested:
                try:
                    reason = self.ap.run()
                except InterruptedError:
                    self.ap.run_page.immediate_exit = 0
                    continue
                except KvmError as exc:
                    self.ap_error = f"vCPU 1: {exc}"
                    return
                self.ap_error = f"vCPU 1 exited unexpectedly: {exit_name(reason)}"
                return
        finally:
            self.ap_cpu_ns = thread_cpu_ns(native_id)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _vcpu_thread(self) -> None:
        native_id = threading.get_native_id()
        self.outcome.reason = "running"
        if self.config.vcpu_policy is not None:
            self.vcpu_problems = apply_to_current_thread(self.config.vcpu_policy)
        try:
            self._run_loop()
        except GuestFault as fault:
            self.outcome.ok = False
            self.outcome.reason = str(fault)
        except KvmError as exc:
            self.outcome.ok = False
            self.outcome.reason = f"KVM error: {exc}"
        finally:
            self.clockevent.shutdown()
            self.precise.cancel()
            if self.io is not None:
                self.io.stop(rdtsc())
            if self.ap is not None:
                _kick(self.ap, self._ap_thread)
            self.outcome.vcpu_cpu_ns = thread_cpu_ns(native_id)
            self.outcome.hypercalls = self.port.calls
            self.outcome.console = self.console.text()

    def _run_loop(self) -> None:
        vcpu, exits = self.vcpu, self.outcome.exits
        while not self._stop_requested:
            try:
                reason = vcpu.run()
            except InterruptedError:
                vcpu.run_page.immediate_exit = 0
                continue
            exits[exit_name(reason)] += 1
            if reason == ExitReason.IO:
                self._handle_io()
            elif reason == ExitReason.MMIO:
                m = vcpu.mmio_exit()
                verb = "wrote" if m.is_write else "read"
                raise GuestFault(
                    f"guest {verb} {m.length} bytes at {m.phys_addr:#x}, outside its "
                    f"{self.config.memory_bytes >> 20} MiB of memory"
                )
            elif reason == ExitReason.SHUTDOWN:
                raise GuestFault("guest triple-faulted (KVM_EXIT_SHUTDOWN)")
            elif reason == ExitReason.FAIL_ENTRY:
                code = vcpu.run_page.exit.fail_entry.hardware_entry_failure_reason
                raise GuestFault(f"KVM could not enter the guest (hardware reason {code:#x})")
            elif reason == ExitReason.INTERNAL_ERROR:
                sub = vcpu.run_page.exit.internal.suberror
                rip = vcpu.get_regs().rip
                raise GuestFault(f"KVM internal error (suberror {sub}) at rip {rip:#x}")
            else:
                raise GuestFault(f"unexpected vCPU exit {exit_name(reason)}")

    def _handle_io(self) -> None:
        io = self.vcpu.io_exit()
        if io.port == abi.HYPERCALL_PORT and io.is_write and io.size == 4 and io.count == 1:
            number = int.from_bytes(self.vcpu.io_data(io), "little")
            regs = self.vcpu.exit_regs()
            result = self.port.call(number, int(regs.rdi), int(regs.rsi))
            self.vcpu.set_return_value(result)
        elif io.port == abi.CONSOLE_PORT and io.is_write:
            self.console.write(bytes(self.vcpu.io_data(io)))
        else:
            direction = "out" if io.is_write else "in"
            raise GuestFault(
                f"guest used unknown I/O port {io.port:#x} ({direction}, {io.size} bytes)"
            )

    # --- results ----------------------------------------------------------------------------

    @property
    def events_recorded(self) -> int:
        return int(self.shared.events_recorded)

    def timestamps_ns(self, events: int) -> npt.NDArray[np.int64]:
        """The reference timestamp and one per recorded event, as the guest wrote them.

        The guest is untrusted: timestamps that go backwards are refused.
        """
        n = min(max(events, 0), self.config.results_capacity - 1) + 1
        raw = self.memory.read(abi.RESULTS_GPA, n * 8, "results")
        stamps = np.frombuffer(raw, dtype=np.uint64).astype(np.int64)
        if n > 1 and bool(np.any(np.diff(stamps) < 0)):
            raise GuestStopped("guest reported event timestamps that go backwards")
        return stamps

    def close(self) -> None:
        for attr in ("shared", "boot", "pvclock"):
            if hasattr(self, attr):
                delattr(self, attr)
        if self._ap_thread is not None:
            self._ap_thread.join(5)
        if self.ap is not None:
            self.ap.close()
        if hasattr(self, "vcpu"):
            self.vcpu.close()
        self.vm.close()
