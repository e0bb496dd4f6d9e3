"""tickless fuzz: untrusted guests make random calls, one guest after another, until N calls
are made; the host must never crash, hang or leak (issue 12, point 1).

The guest (``guest/src/fuzz.c``, Scenario FUZZ) makes call i as a function of (seed, i):
valid and unknown hypercalls with boundary and random arguments, LOG buffers inside,
across and outside its memory, random bytes over every shared page the host reads, port
I/O to any port (its own TSS opens them all to ring 3), MMIO outside memory, exceptions,
and now and then a loop with interrupts off that only the watchdog ends. Most calls leave
the guest running; about one in forty stops it. The host then boots the next guest at
the call after the one that stopped it (``shared.fuzz_call``), so the run's counts are a
function of the seed: the hypercall rate limiter, which is time-based, is set out of
reach, and deadlines whose answer depends on timing are avoided by the guest.

The record and its schema: ``tickless.measure.fuzz_record``.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from tickless.axes import TimerPath
from tickless.devices.config import GuestConfig
from tickless.devices.faults import GuestFault
from tickless.errors import GuestStopped, InputError, KvmError
from tickless.guest import abi
from tickless.host.realtime import RealtimePolicy
from tickless.measure.fuzz_record import (
    FINISHED,
    MAX_CALLS,
    FuzzRecord,
    GuestTally,
    normalize_reason,
    reject_key,
)
from tickless.measure.fuzz_record import action_name as fuzz_action_name
from tickless.vmm.host import VmmHost
from tickless.vmm.machine import GuestMachine

WATCHDOG_S = 0.5  # a fuzz guest looping without progress is stopped after this long
HANG_MARGIN_S = 2.0  # past the watchdog's bound and check period: the watchdog missed it
JOIN_S = 5.0  # a stopped vCPU thread that has not returned by then is a hang
RETIRE_S = 0.5  # stopped guests are freed this long after leaving the watchdog's list
POLL_S = 0.02
RESULTS_SLOTS = 4096  # the results buffer the guest scribbles and the host reads
INTERRUPTED = "interrupted"  # the stop reason of the guest running at Ctrl-C / SIGTERM
NO_ACTION = (1 << 64) - 1  # shared.fuzz_action before the guest's first call
IO_RATE_PER_S = 2000.0  # I/O interrupts: the host reads shared.ready, io_irq_count, ...
HOLD_BACK_NS = 20_000  # ... and, with a hold-back window, shared.precise_deadline_ns


@dataclass(frozen=True)
class FuzzSpec:
    calls: int
    seed: int
    runaway: bool = True  # include loops with interrupts off (each costs the watchdog's bound)
    runaway_armed: bool = False  # ... leaving the guest's timers and I/O load running
    io_rate_per_s: float = IO_RATE_PER_S
    only: abi.FuzzAction | None = None  # every call of this kind (tests)

    def __post_init__(self) -> None:
        if not 1 <= self.calls <= MAX_CALLS:
            raise InputError(f"calls must be between 1 and {MAX_CALLS:,}")
        if not 0 <= self.seed < 1 << 64:
            raise InputError("the seed must be between 0 and 2**64 - 1")

    @property
    def flags(self) -> int:
        return (abi.FUZZ_FLAG_RUNAWAY if self.runaway else 0) | (
            abi.FUZZ_FLAG_RUNAWAY_ARMED if self.runaway_armed else 0
        )

    @property
    def flag_names(self) -> list[str]:
        return [
            name
            for name, on in (("runaway", self.runaway), ("runaway_armed", self.runaway_armed))
            if on
        ]

    def guest_config(self) -> GuestConfig:
        return GuestConfig(
            scenario=abi.Scenario.FUZZ,
            timer=TimerPath.LAPIC,  # the LVT is armed: TSC_DEADLINE calls raise interrupts
            zoo_devices=True,  # the timer zoo's chips, for the calls that hammer them
            count=RESULTS_SLOTS - 1,
            max_hypercall_rate=1e12,  # time-based: out of reach, so counts follow the seed
            io_rate_per_s=self.io_rate_per_s,
            io_handler_ns=0,
            hold_back_ns=HOLD_BACK_NS,
            watchdog_s=WATCHDOG_S,
            seed=self.seed,
        )


def run_fuzz(spec: FuzzSpec, progress: Callable[[float], None] | None = None) -> FuzzRecord:
    """Boot fuzz guests until ``spec.calls`` calls are made. Ctrl-C or SIGTERM stops the run
    between two steps and keeps the partial record (``interrupted``); the caller's handler
    then gets the signal, so the command line exits 130 or 143."""
    record = FuzzRecord(seed=spec.seed, calls_asked=spec.calls, flags=spec.flag_names)
    policy = RealtimePolicy(fifo_priority=None, hold_cpu_dma_latency=False)
    stop = _StopSignal()
    t0 = time.monotonic()
    with _thread_exceptions(record), stop.installed():
        with VmmHost(policy=policy, watchdog_s=WATCHDOG_S) as host:
            runner = _Runner(host, spec, record, progress or (lambda done: None), stop)
            try:
                runner.run()
            except KeyboardInterrupt:  # a second signal: stop now, as best we can
                record.interrupted = True
            finally:
                runner.free_all()
                _check_timer_thread(host, record, runner)
        record.wall_s = time.monotonic() - t0
        record.interrupted = record.interrupted or stop.signum is not None
    stop.pass_on()
    return record


class _StopSignal:
    """Ctrl-C and SIGTERM as a flag the runner checks between steps, rather than a
    KeyboardInterrupt wherever the main thread happens to be (in the middle of counting a
    guest, say): the partial record stays consistent. A second signal raises at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    @contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals only reach the main thread's handlers: nothing to catch here
            return
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            self._previous[stop_signal] = signal.signal(stop_signal, self._handler)
        try:
            yield
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)

    def pass_on(self) -> None:
        """Give the caller's handler the signal we held (it raises KeyboardInterrupt)."""
        handler = self._previous.get(self.signum) if self.signum is not None else None
        if self.signum is not None and callable(handler):
            with contextlib.suppress(KeyboardInterrupt):
                handler(self.signum, None)


class _Runner:
    def __init__(
        self,
        host: VmmHost,
        spec: FuzzSpec,
        record: FuzzRecord,
        progress: Callable[[float], None],
        stop: _StopSignal,
    ) -> None:
        self.host, self.spec, self.record, self.progress = host, spec, record, progress
        self.stop = stop
        self.config = spec.guest_config()
        self.retired: deque[tuple[float, GuestMachine]] = deque()
        self.abandoned: list[GuestMachine] = []  # vCPU threads that never returned
        self.callback_errors_seen = 0

    def run(self) -> None:
        record = self.record
        while (
            record.calls < self.spec.calls and record.aborted is None and self.stop.signum is None
        ):
            self.run_guest(record.calls)
            _check_timer_thread(self.host, record, self)
            self.free(older_than_s=RETIRE_S)

    def run_guest(self, first: int) -> None:
        """Boot one guest at call ``first``, run it to its stop, count what it did."""
        record = self.record
        try:
            machine = self.host.boot(self.config, f"fuzz{record.guests}")
        except KvmError as exc:  # not the guest's doing: the host cannot make VMs
            record.host_exception(f"booting a guest: {exc}")
            record.aborted = f"could not boot a guest: {exc}"
            return
        record.guests += 1
        _write_fuzz_params(machine, self.spec, first)
        machine.start()
        self.supervise(machine, first)
        if machine.running:  # the vCPU thread did not return (a hang): leave it be
            self.host.machines.remove(machine)
            self.abandoned.append(machine)
            call = min(max(first, int(machine.shared.fuzz_call)), self.spec.calls - 1)
            stop = "fuzz: its vCPU thread did not return when stopped"
            record.add_guest(GuestTally(stop, None, Counter(), "not read", call + 1))
        else:
            record.add_guest(self.tally(machine, first))
            self.retire(machine)

    def supervise(self, machine: GuestMachine, first: int) -> None:
        """Wait for the guest to stop; stop it ourselves (a hang) if the watchdog did not."""
        limit_s = WATCHDOG_S * 1.25 + HANG_MARGIN_S
        last_call, since, cpu_since = first, time.monotonic(), machine.vcpu_busy_ns()
        while machine.running:
            machine.join(POLL_S)
            if self.stop.signum is not None and machine.running:
                machine.request_stop(INTERRUPTED)
                machine.join(JOIN_S)
                return
            call, now = int(machine.shared.fuzz_call), time.monotonic()
            self.progress(min(call, self.spec.calls))
            if call != last_call:
                last_call, since, cpu_since = call, now, machine.vcpu_busy_ns()
            elif now - since > limit_s and machine.running:
                busy = (machine.vcpu_busy_ns() - cpu_since) / 1e9 / (now - since)
                what = "busy" if busy >= 0.5 else "halted"
                detail = f"call {call}: no progress for {now - since:.1f} s while {what}"
                if busy >= 0.5:  # a runaway the watchdog should have stopped
                    self.record.hang(f"{machine.name} {detail}")
                machine.request_stop(f"fuzz: {detail}, stopped by the fuzzer")
                if not machine.join(JOIN_S):
                    self.record.hang(f"{machine.name}: vCPU thread did not return when stopped")
                    return

    def tally(self, machine: GuestMachine, first: int) -> GuestTally:
        """Why the guest stopped, at which call, what it got rejected, its results."""
        shared, end = machine.shared, self.spec.calls
        reason, call = machine.outcome.reason, int(shared.fuzz_call)
        exceptions: list[str] = []
        if reason == "running":  # its vCPU thread died (counted by _thread_exceptions)
            reason = "host exception in the vCPU thread"
        if not first <= call <= end:  # never: the guest does not scribble it
            reason, call = "fuzz: the guest's call index is out of range", first
        finished = call == end and reason == "done"
        interrupted = reason == INTERRUPTED  # the call in progress is not counted
        return GuestTally(
            stop=FINISHED if finished else normalize_reason(reason),
            action=None if finished else fuzz_action_name(int(shared.fuzz_action)),
            rejected=Counter(
                {
                    reject_key(nr, result): n
                    for (nr, result), n in machine.hypercalls.rejected.items()
                }
            ),
            results_read=_read_results(machine, int(shared.events_recorded), exceptions),
            next_call=call if interrupted else min(end, call + 1),  # call: the one that stopped it
            host_exceptions=exceptions,
        )

    def retire(self, machine: GuestMachine) -> None:
        """Out of the watchdog's list now; freed later (see ``free``)."""
        if machine in self.host.machines:
            self.host.machines.remove(machine)
        self.retired.append((time.monotonic(), machine))

    def free(self, older_than_s: float) -> None:
        """Free retired guests. Not at once: the watchdog may be checking one it listed
        just before it stopped, and reads its shared page (gone once freed)."""
        now = time.monotonic()
        while self.retired and now - self.retired[0][0] >= older_than_s:
            _, machine = self.retired.popleft()
            try:
                self.host.destroy(machine)
            except Exception as exc:  # a host bug: counted, and the run goes on
                self.record.host_exception(f"freeing {machine.name}: {exc!r}")

    def free_all(self) -> None:
        """At the end: with the watchdog stopped first, nothing can be reading them."""
        if self.host.watchdog is not None:
            self.host.watchdog.stop()
        self.free(older_than_s=0.0)


def _read_results(machine: GuestMachine, events: int, exceptions: list[str]) -> str:
    """Read the guest's (scribbled) results buffer the way a measurement does."""
    try:
        machine.timestamps_ns(events)
    except (GuestStopped, GuestFault) as exc:
        return normalize_reason(str(exc))
    except Exception as exc:  # a host bug: counted, and the run goes on
        exceptions.append(f"reading {machine.name}'s results: {exc!r}")
        return "host exception"
    return "accepted"


def _write_fuzz_params(machine: GuestMachine, spec: FuzzSpec, first: int) -> None:
    """The fuzz fields of the boot block, and the progress the host starts from."""
    view = machine.memory.view(machine.boot.layout.boot_gpa, ctypes.sizeof(abi.Boot), "boot")
    boot = abi.Boot.from_buffer(view)
    boot.fuzz_seed = spec.seed
    boot.fuzz_first_call = first
    boot.fuzz_end_call = spec.calls
    boot.fuzz_flags = spec.flags
    boot.fuzz_only = 0 if spec.only is None else spec.only + 1
    del boot  # a live view would keep the mapping open after close()
    machine.shared.fuzz_call = first
    machine.shared.fuzz_action = NO_ACTION


def _check_timer_thread(host: VmmHost, record: FuzzRecord, runner: _Runner) -> None:
    """Errors of the host timer thread's callbacks (each a host exception), or its death."""
    errors = host.timers.callback_errors
    for error in errors[runner.callback_errors_seen :]:
        record.host_exception(f"host timer callback: {error}")
    runner.callback_errors_seen = len(errors)
    if host.timers.error is not None and record.aborted is None:
        record.host_exception(f"host timer thread died: {host.timers.error!r}")
        record.aborted = "the host timer thread died"


@contextmanager
def _thread_exceptions(record: FuzzRecord) -> Iterator[None]:
    """Count an exception that ends any thread of the VMM (vCPU, timer, watchdog)."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "a thread"
        record.host_exception(f"{name}: {args.exc_type.__name__}: {args.exc_value}")
        previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous
