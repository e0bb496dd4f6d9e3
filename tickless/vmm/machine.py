"""One guest machine: a KVM VM, the tickless guest kernel, its devices and its vCPU loop.

The machine does setup and runs the vCPUs; everything a guest can ask of the host is a
device on its bus (``tickless/devices``). The vCPU runs in its own thread, parked in
KVM_RUN; interrupts (in-kernel irqchip) and HLT never come back through Python. Only port
I/O, MMIO and faults do, decoded once by ``Vcpu.run()``.
"""

from __future__ import annotations

import ctypes
import threading

from tickless.axes import GuestKind, TimerPath
from tickless.devices import DEVICE_TYPES, Device, MachineContext
from tickless.devices.bus import Bus
from tickless.devices.config import GuestConfig
from tickless.devices.console_buffer import Console
from tickless.devices.faults import GuestFault
from tickless.devices.hypercall import HypercallPort
from tickless.devices.lookup import MachineDevices
from tickless.devices.memory import GuestMemory
from tickless.errors import InputError, KvmError
from tickless.guest import abi
from tickless.host.cputime import thread_busy_ns, thread_cpu_ns
from tickless.host.deadline_loop import DeadlineLoop
from tickless.host.realtime import apply_to_current_thread
from tickless.host.tsc import rdtsc
from tickless.kvm.exits import (
    Interrupted,
    IoIn,
    IoOut,
    MmioRead,
    MmioWrite,
    exit_label,
)
from tickless.kvm.system import KvmSystem
from tickless.kvm.vcpu import Vcpu
from tickless.kvm.vm import Vm
from tickless.timers.clock import GuestClock
from tickless.timers.hrtimer import TimerBase
from tickless.timers.timeline import Member, Timeline
from tickless.vmm.boot import GuestBoot, SmallGuestBoot
from tickless.vmm.vcpu_run import GuestOutcome, describe_stop, guest_activity, kick

LINUX_WATCHDOG_S = 30.0


class GuestMachine(MachineDevices):
    """A guest VM wired to the host's timer thread(s). It creates every device type that
    registered itself and names none (its owner asks for them: ``MachineDevices``)."""

    def __init__(
        self,
        system: KvmSystem,
        timers: TimerBase,
        config: GuestConfig,
        boot: GuestBoot,
        name: str = "guest0",
        deadline_loop: DeadlineLoop | None = None,
        console: Console | None = None,
        timeline: Timeline | None = None,
        stopped: threading.Event | None = None,  # set (too) when its vCPU thread ends
    ) -> None:
        self.config = config
        self._stopped_signal = stopped
        self.boot = boot
        self.name = name
        self.console = console or Console()
        self.ap: Vcpu | None = None
        self._ap_thread: threading.Thread | None = None
        self.ap_error: str | None = None
        self.ap_cpu_ns = 0  # CPU time of vCPU 1's thread (guest busy loop included)
        self.vcpu_problems: list[str] = []
        self.outcome = GuestOutcome()
        self.devices: list[Device] = []
        self._stop_requested = False
        self._thread: threading.Thread | None = None
        # Set when the vCPU thread has finished. Waiting on it, not on Thread.join: a Ctrl-C
        # or SIGTERM that interrupts Thread.join (Python < 3.13) marks a still-running
        # thread as stopped, and the machine would then be closed under its vCPU.
        self._vcpu_done = threading.Event()
        self._vcpu_native_id: int | None = None
        self._exit_count = 0  # every exit, for the watchdog (outcome.exits has them by name)
        self.boot_s: float | None = None  # start to workload (shared.ready), set by watchers
        # Exits to Python and PV kicks when the workload began (set by watchers): a Linux
        # guest's boot exits thousands of times, none of them the timer's.
        self.ready_exits: int | None = None
        self.ready_kicks: int | None = None
        self.ready_console_exits: int | None = None
        # Cleared while frozen: the vCPU threads wait on it outside KVM_RUN.
        self._unpaused = threading.Event()
        self._unpaused.set()
        self.vm = Vm(system)
        try:
            self._setup(system, timers, deadline_loop, timeline)
        except BaseException:
            self.close()
            raise

    def _setup(
        self,
        system: KvmSystem,
        timers: TimerBase,
        deadline_loop: DeadlineLoop | None,
        timeline: Timeline | None,
    ) -> None:
        cfg, vm, boot = self.config, self.vm, self.boot
        vm.set_tss_addr(abi.KVM_TSS_GPA)
        vm.create_irqchip()
        boot.prepare_vm(vm)
        if cfg.halt_poll_ns is not None:
            vm.set_halt_poll_ns(cfg.halt_poll_ns)
        vm.add_memory(0, cfg.memory_bytes)
        self.memory = GuestMemory(vm)
        self.tsc_hz = vm.tsc_khz() * 1000
        if timeline is None:
            timeline = Timeline(self.tsc_hz, rdtsc, cfg.rate, cfg.warp_idle, timers)
        elif timeline.rate != cfg.rate or timeline.warp_idle != cfg.warp_idle:
            raise ValueError("a guest on a shared timeline runs at its rate and warp setting")
        self.timeline = timeline
        self.member: Member = timeline.join(self.name, rigid=cfg.rigid_reason)
        self.ap_member: Member | None = None
        # Durations in TSC ticks at the group's rate (its clock may be held or frozen now)
        boot.load(self.memory, cfg, GuestClock.create(self.tsc_hz, 0, rate=timeline.rate))
        shared_view = self.memory.view(boot.layout.shared_gpa, ctypes.sizeof(abi.Shared), "shared")
        self.shared = abi.Shared.from_buffer(shared_view)

        self.bus = Bus(cfg.memory_bytes)
        self.hypercalls = HypercallPort(cfg.max_hypercall_rate)
        self.bus.add_io(HypercallPort.port, 1, self.hypercalls)
        self.context = MachineContext(
            name=self.name,
            config=cfg,
            layout=boot.layout,
            vm=vm,
            memory=self.memory,
            timeline=self.timeline,
            member=self.member,
            shared=self.shared,
            timers=timers,
            deadline_loop=deadline_loop,
            bus=self.bus,
            hypercalls=self.hypercalls,
            console=self.console,
            finish=self._finish,
            irq_routes=dict(boot.irq_routes),
        )
        for device_type in DEVICE_TYPES:
            device = device_type.create(self.context)
            if device is not None:
                self.devices.append(device)

        self.vcpu = Vcpu(vm, 0)
        boot.start_vcpu(system, self.vcpu)
        if cfg.second_vcpu:
            if not isinstance(boot, SmallGuestBoot):
                raise KvmError("a second vCPU (CPU load, --io-cpu other) is the small guest's")
            self.ap = Vcpu(vm, 1)
            boot.start_second_vcpu(system, self.ap)
            self.ap_member = timeline.join(f"{self.name}-vcpu1")  # it never BLOCKs

    @property
    def clock(self) -> GuestClock:
        """The guest's PV clock as it is now (its timeline re-anchors it)."""
        return self.timeline.clock

    def _finish(self, events: int) -> None:
        """DONE: the workload recorded ``events`` and the guest may stop."""
        self.outcome.events = events
        self.outcome.ok = True
        self.outcome.reason = "done"
        self._stop_requested = True

    # --- running ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the devices, then the vCPU thread(s): a guest that stops at once must
        find its devices started, so that stopping them cancels their timers for good."""
        now = rdtsc()
        for device in self.devices:
            device.start(now)
        self._thread = threading.Thread(target=self._vcpu_thread, name=self.name, daemon=True)
        self._thread.start()
        if self.ap is not None:
            self._ap_thread = threading.Thread(
                target=self._ap_vcpu_thread, name=f"{self.name}-vcpu1", daemon=True
            )
            self._ap_thread.start()

    # --- bending time -----------------------------------------------------------------------

    def freeze(self) -> None:
        """Pause the guest (its vCPUs leave KVM_RUN and wait) and stop its timeline's clock
        (the whole group's) until ``thaw``: no timer of it fires, none is missed."""
        if self.config.rigid_reason:
            raise InputError(f"a freeze refused: {self.name}: {self.config.rigid_reason}")
        if self.config.timer is TimerPath.LAPIC:
            raise InputError(
                "a guest on --timer lapic cannot be frozen: its TSC-deadline timer runs on "
                "the host TSC, which this host cannot stop (no TSC scaling)"
            )
        self._unpaused.clear()
        kick(self.vcpu, self._thread)
        if self.ap is not None:
            kick(self.ap, self._ap_thread)
        self.timeline.freeze()

    def thaw(self) -> None:
        """Start the clock again from where it stopped, then the vCPUs."""
        self.timeline.thaw()
        self._unpaused.set()

    @property
    def frozen(self) -> bool:
        return not self._unpaused.is_set()

    def _wait_unpaused(self) -> None:
        """A frozen guest's vCPU thread waits here, outside KVM_RUN (a stop wakes it)."""
        while not self._unpaused.wait(0.05) and not self._stop_requested:
            pass

    def request_stop(self, reason: str) -> None:
        """Stop the vCPUs from another thread (Ctrl-C, watchdog, end of an idle run)."""
        if not self._stop_requested and not self.outcome.ok:
            self.outcome.reason = reason
        self._stop_requested = True
        for device in getattr(self, "devices", ()):
            device.stopping()  # a vCPU blocked in the host (PV idle) is not in KVM_RUN
        kick(self.vcpu, self._thread)
        if self.ap is not None:
            kick(self.ap, self._ap_thread)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the boot vCPU to finish; then for vCPU 1, which it stops on its way out."""
        if self._thread is None:
            return True
        if not self._vcpu_done.wait(timeout):
            return False
        self._thread.join()  # it has finished its work: only its return is left
        if self._ap_thread is not None:
            self._ap_thread.join(timeout)
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._vcpu_done.is_set()

    def _ap_vcpu_thread(self) -> None:
        """vCPU 1: busy in ring 3 (CPU load) or halted between I/O interrupts (--io-cpu
        other), both in the kernel; any exit ends it (and is reported)."""
        assert self.ap is not None
        native_id = threading.get_native_id()
        if self.config.ap_policy is not None:
            self.vcpu_problems += apply_to_current_thread(self.config.ap_policy)
        try:
            while not self._stop_requested:
                self._wait_unpaused()
                try:
                    exit_ = self.ap.run()
                except KvmError as exc:
                    self.ap_error = f"vCPU 1: {exc}"
                    return
                if not isinstance(exit_, Interrupted):
                    self.ap_error = f"vCPU 1 exited unexpectedly: {exit_label(exit_)}"
                    return
        finally:
            if self.ap_member is not None:
                self.timeline.leave(self.ap_member)
            self.ap_cpu_ns = thread_cpu_ns(native_id)

    @property
    def watchdog_s(self) -> float | None:
        """The watchdog's bound for this guest: its config's (None: the host's); a Linux
        guest's boot has long busy stretches without an exit (ring 0 is emulated here), so
        at least 30 s for it."""
        bound = self.config.watchdog_s
        if self.config.guest is GuestKind.LINUX:
            bound = max(bound or 0.0, LINUX_WATCHDOG_S)
        return bound

    @property
    def exit_count(self) -> int:
        """Exits to Python so far (every vCPU)."""
        return self._exit_count

    def activity(self) -> bytes:
        """``guest_activity``; nothing once closed (the watchdog may look meanwhile)."""
        shared = getattr(self, "shared", None)
        if getattr(self, "context", None) is None or shared is None:
            return b""
        return guest_activity(self._exit_count, self.hypercalls.calls, shared)

    def vcpu_cpu_ns(self) -> int:
        """CPU time of the boot vCPU's thread so far (guest code included)."""
        if self._vcpu_native_id is None:
            return 0
        if not self.running:
            return self.outcome.vcpu_cpu_ns
        return thread_cpu_ns(self._vcpu_native_id)

    def vcpu_busy_ns(self) -> int:
        """Time the boot vCPU's thread was on a CPU or waiting for one (0 once ended)."""
        if self._vcpu_native_id is None or not self.running:
            return 0
        return thread_busy_ns(self._vcpu_native_id)

    def _vcpu_thread(self) -> None:
        try:
            self._vcpu_run()
        finally:
            self._vcpu_done.set()
            if self._stopped_signal is not None:
                self._stopped_signal.set()

    def _vcpu_run(self) -> None:
        native_id = self._vcpu_native_id = threading.get_native_id()
        self.outcome.reason = "running"
        if self.config.vcpu_policy is not None:
            self.vcpu_problems += apply_to_current_thread(self.config.vcpu_policy)
        try:
            self._run_loop()
        except GuestFault as fault:
            self.outcome.ok = False
            self.outcome.reason = str(fault)
        except KvmError as exc:
            self.outcome.ok = False
            self.outcome.reason = f"KVM error: {exc}"
        finally:
            self.timeline.leave(self.member)
            now = rdtsc()
            for device in self.devices:
                device.stop(now)
            if self.ap is not None:
                kick(self.ap, self._ap_thread)
            self.outcome.vcpu_cpu_ns = thread_cpu_ns(native_id)
            self.outcome.hypercalls = self.hypercalls.calls
            self.outcome.injections = self.context.injections
            self.outcome.console = self.console.text()

    def _run_loop(self) -> None:
        """Enter the guest; hand port I/O and MMIO to the bus; any other exit stops it."""
        vcpu, exits, bus = self.vcpu, self.outcome.exits, self.bus
        while not self._stop_requested:
            if not self._unpaused.is_set():
                self._wait_unpaused()
                continue
            exit_ = vcpu.run()
            if isinstance(exit_, Interrupted):
                continue
            exits[exit_label(exit_)] += 1
            self._exit_count += 1
            # An exit shows the vCPU runs, whatever woke it (a BLOCK marks it idle again):
            # its group must not warp over it.
            self.member.wake()
            if isinstance(exit_, IoOut | IoIn | MmioWrite | MmioRead):
                bus.dispatch(exit_, vcpu)
                continue
            assist = self.boot.assist(exit_, vcpu)
            if assist is None:
                raise GuestFault(describe_stop(exit_, vcpu))
            self.outcome.assists[assist] += 1

    # --- results ----------------------------------------------------------------------------

    @property
    def events_recorded(self) -> int:
        return int(self.shared.events_recorded)

    def close(self) -> None:
        if hasattr(self, "member"):  # never started: it must not hold its group's warps
            self.timeline.leave(self.member)
        # Devices first (host threads reading guest memory stop), then every ctypes object
        # over guest memory: a live view keeps it mapped.
        for device in self.devices:
            device.close()
        self.devices.clear()
        for attr in ("context", "shared"):
            if hasattr(self, attr):
                delattr(self, attr)
        if self._ap_thread is not None:
            self._ap_thread.join(5)
        if self.ap is not None:
            self.ap.close()
        if hasattr(self, "vcpu"):
            self.vcpu.close()
        self.vm.close()
