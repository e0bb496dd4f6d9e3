"""The host side of a run: /dev/kvm, the guest image and one real-time host timer thread
shared by every guest (as one hrtimer base serves every VM on a host CPU)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import FrameType, TracebackType

from tickless.axes import GuestKind, TickMode, TimerPath
from tickless.devices.config import GuestConfig
from tickless.devices.console_buffer import Console
from tickless.errors import InputError
from tickless.guest.build import build_image
from tickless.host.cputime import thread_cpu_ns
from tickless.host.deadline_loop import DeadlineLoop
from tickless.host.realtime import RealtimePolicy
from tickless.host.timer_thread import HostTimerThread
from tickless.host.tsc import rdtsc
from tickless.kvm.system import KvmSystem
from tickless.kvm.vm import Vm
from tickless.timers.timeline import Timeline
from tickless.vmm.boot import GuestBoot, SmallGuestBoot
from tickless.vmm.linux_boot import LinuxBoot
from tickless.vmm.machine import GuestMachine
from tickless.vmm.vcpu_run import install_stop_signal
from tickless.vmm.watchdog import DEFAULT_BOUND_S, Watchdog

GIL_SWITCH_INTERVAL_S = 0.0002  # hand the GIL to the woken timer thread quickly


class VmmHost:
    """Owns KVM, the timer thread and the guests booted on it; close() stops them all."""

    def __init__(
        self,
        slop_ns: int = 0,
        policy: RealtimePolicy | None = None,
        watchdog_s: float | None = DEFAULT_BOUND_S,
        deadline_policy: RealtimePolicy | None = None,
    ) -> None:
        install_stop_signal()
        self.image = build_image().read_bytes()
        self.system = KvmSystem()
        try:  # a failure here must not leak the /dev/kvm descriptor
            probe = Vm(self.system)
            try:
                self.tsc_hz = probe.tsc_khz() * 1000
            finally:
                probe.close()
            self.timers = HostTimerThread(
                self.tsc_hz, slop_ticks=slop_ns * self.tsc_hz // 1_000_000_000, policy=policy
            )
        except BaseException:
            self.system.close()
            raise
        self.machines: list[GuestMachine] = []
        # Set whenever a guest's vCPU thread ends: a fleet's owner waits on it rather than
        # polling a thousand guests (whoever waits clears it, then looks at them all).
        self.guest_stopped = threading.Event()
        self._vmlinux: dict[tuple[int, bool], Path] = {}  # (HZ, stock) -> the vmlinux we built
        self.slop_ns = slop_ns
        # The C deadline loop (PV deadline device, precise channel): one per host, for the
        # host's life, so booting and destroying guests leaves the process as it was.
        try:
            self._deadline_loop: DeadlineLoop | None = DeadlineLoop(
                self.tsc_hz, deadline_policy or policy, slop_ns
            )
        except BaseException:
            self.system.close()
            raise
        self._old_switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self.timers.start()
        # The list's own copy method, not a closure over self: a VmmHost <-> Watchdog cycle
        # would leave every closed host (KVM's CPUID table and all) to the cyclic GC.
        self.watchdog = None if watchdog_s is None else Watchdog(self.machines.copy, watchdog_s)
        if self.watchdog is not None:
            self.watchdog.start()

    @property
    def deadline_loop(self) -> DeadlineLoop:
        """The host's one deadline loop, a C thread outside the GIL serving every guest's
        PV deadline device and precise channel."""
        if self._deadline_loop is None:
            raise RuntimeError("the host is closed")
        return self._deadline_loop

    def timer_totals(self) -> tuple[int, int, int]:
        """Host timer wake-ups, expiries and the CPU ns of the threads that took them: the
        Python timer thread (lguest, periodic ticks) and the deadline loop (pv) together."""
        stats, timers = self.timers.stats, self.timers
        cpu_ns = thread_cpu_ns(timers.native_id) if timers.native_id else 0
        wakeups, expiries = stats.wakeups, stats.expiries
        if self._deadline_loop is not None:
            loop = self._deadline_loop.totals()
            wakeups, expiries, cpu_ns = (
                wakeups + loop.wakeups,
                expiries + loop.fired,
                cpu_ns + loop.cpu_ns,
            )
        return wakeups, expiries, cpu_ns

    def deadline_loop_problems(self) -> list[str]:
        """Real-time settings the deadline loop's thread could not apply (if it runs)."""
        return self._deadline_loop.problems if self._deadline_loop is not None else []

    def timer_thread(self, config: GuestConfig) -> str:
        """Which host thread serves ``config``'s timer events, and the policy it runs under
        as the kernel reports it (a refused SCHED_FIFO shows as SCHED_OTHER). Under
        --warp-idle every idle wait is a BLOCK, whose one-shot is the host timer thread's."""
        if config.timer is TimerPath.LAPIC:
            return "none: KVM's in-kernel LAPIC timer (a host kernel hrtimer)"
        loop = self._deadline_loop
        on_loop = config.timer in (TimerPath.PV, TimerPath.PRECISE) and not config.warp_idle
        if on_loop and config.guest is GuestKind.SMALL and loop is not None:
            return f"deadline loop, {loop.scheduling}"
        return f"host timer thread, {self.timers.scheduling}"

    def timeline(self, rate: Fraction | int = 1, warp_idle: bool = False) -> Timeline:
        """A clock for a group of guests booted on it together (``boot(timeline=...)``):
        one dilation, warps only when all of their vCPUs are idle, frozen together."""
        return Timeline(self.tsc_hz, rdtsc, rate, warp_idle, self.timers)

    def boot(
        self,
        config: GuestConfig,
        name: str | None = None,
        console: Console | None = None,
        timeline: Timeline | None = None,
    ) -> GuestMachine:
        """A guest on ``timeline`` (None: a timeline of its own, at its config's rate)."""
        pv = config.guest is GuestKind.SMALL or config.timer is TimerPath.PV
        loop = self.deadline_loop if pv else None
        machine = GuestMachine(
            self.system,
            self.timers,
            config,
            self._guest_boot(config),
            name or f"guest{len(self.machines)}",
            deadline_loop=loop,
            console=console,
            timeline=timeline,
            stopped=self.guest_stopped,
        )
        self.machines.append(machine)
        return machine

    def _guest_boot(self, config: GuestConfig) -> GuestBoot:
        if config.guest is GuestKind.SMALL:
            return SmallGuestBoot(self.image)
        kernel = config.kernel_path
        if kernel is None:
            key = (config.hz, config.stock)
            kernel = self._vmlinux.get(key)
            if kernel is None:  # built (or found in the cache) on first use only
                from tickless.guest.linux_build import build_vmlinux

                kernel = self._vmlinux[key] = build_vmlinux(config.hz, stock=config.stock)
        # Periodic: no dynticks and no high-resolution mode, so the tick runs on the
        # clock-event device's PERIODIC state (SET_PERIODIC), as a HZ kernel's does.
        periodic = "nohz=off highres=off" if config.mode is TickMode.PERIODIC else ""
        return LinuxBoot(kernel, periodic, zoo=config.zoo, stock=config.stock)

    def freeze_all(self) -> list[GuestMachine]:
        """Freeze every guest that can be (see ``GuestMachine.freeze``); returns them."""
        frozen = []
        for machine in self.machines:
            with contextlib.suppress(InputError):  # lapic: its TSC cannot be stopped
                machine.freeze()
                frozen.append(machine)
        return frozen

    @contextlib.contextmanager
    def ctrl_z_freezes(self) -> Iterator[None]:
        """Ctrl-Z (SIGTSTP) freezes the guests' clocks before the process stops, and ``fg``
        thaws them: guest time stands still while the command is suspended (as
        ``KVMCLOCK_CTRL`` tells a KVM guest it was paused). Main thread only."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def suspend(signum: int, frame: FrameType | None) -> None:
            frozen = self.freeze_all()
            os.kill(os.getpid(), signal.SIGSTOP)  # resumes here on SIGCONT
            for machine in frozen:
                machine.thaw()

        previous = signal.signal(signal.SIGTSTP, suspend)
        try:
            yield
        finally:
            signal.signal(signal.SIGTSTP, previous)

    def destroy(self, machine: GuestMachine, reason: str = "destroyed") -> None:
        """Stop ``machine`` and free it now (VM and vCPU descriptors, KVM's per-VM kernel
        thread, guest memory), not when the host closes: a long-lived host booting guest
        after guest holds only the guests it still runs."""
        machine.request_stop(reason)
        machine.join(timeout=5)
        if machine in self.machines:
            self.machines.remove(machine)
        machine.close()

    def stop_all(self, reason: str) -> None:
        for machine in self.machines:
            machine.request_stop(reason)
        for machine in self.machines:
            machine.join(timeout=5)

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
        self.stop_all("host shutting down")
        self.timers.stop()
        for machine in self.machines:
            machine.close()  # takes its channels out of the deadline loop
        self.machines.clear()
        if self._deadline_loop is not None:
            self._deadline_loop.close()
            self._deadline_loop = None
        self.system.close()
        sys.setswitchinterval(self._old_switch_interval)

    def __enter__(self) -> VmmHost:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
