"""The host's deadline loop: absolute-deadline guest timers served outside the GIL.

``src/deadline_loop.c`` is built once into a shared library (cached like the guest) and
runs one C thread for every guest of the host: it sleeps on a timerfd to the earliest
(deadline - advance) of all channels, injects the guest's interrupt, and tunes each
channel's advance from the margins the guest reports. A Python thread that polls starves
the vCPU threads through the GIL (measured on the precise channel); this one never takes
the GIL, and ctypes releases it around every call into the library.

Two kinds of channel (see the C file): ``PAGE`` reads the guest's published deadline from
its shared page (the PV deadline device, ``--timer pv``), ``CALL`` takes deadlines from a
validated hypercall (the precise channel).
"""

from __future__ import annotations

import ctypes as C
import os
from dataclasses import dataclass, fields
from enum import IntEnum
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tickless.buildcache import cached_build, require_tool, run_tool, tool_version
from tickless.errors import TicklessError
from tickless.guest.abi import MAX_DELTA_NS
from tickless.guest.abi_header import render_c_header
from tickless.host.deadline_abi import (
    IO_EVENT_FIELDS,
    IO_STAT_FIELDS,
    ChannelConfigC,
    ChannelStatsC,
    IoConfig,
    IoLoopStats,
    IoStatsC,
)
from tickless.host.realtime import RealtimePolicy, hold_cpu_dma_latency, scheduling_of
from tickless.timers.clock import GuestClock
from tickless.timers.precise import AdaptiveAdvance
from tickless.timers.pv_deadline import LOOK_DELAY_NS

SRC = Path(__file__).parent / "src" / "deadline_loop.c"
IO_SRC = SRC.parent / "deadline_loop_io.h"  # the IO channel, included by SRC
CFLAGS = ("-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-pthread")
LIBRARY = "libdeadline_loop.so"
MSI_ADDRESS_BASE = 0xFEE00000


class DeadlineLoopError(TicklessError):
    """The deadline loop could not be created or refused a channel."""


class ChannelKind(IntEnum):
    PAGE = 0  # the deadline is published in the guest's shared page
    CALL = 1  # the deadline comes through set_deadline (a validated hypercall)
    IO = 2  # not a timer: the I/O load's arrivals and their interrupts (deadline_abi.py)


EVENT_FIELDS = ("deadline_ns", "planned_wake_tsc", "wake_tsc", "injected_tsc")
# AdaptiveAdvance's state, in its order, is what the C loop takes (struct dl_advance, the
# channel's configuration, dl_advance_step): one list, read from the dataclass.
ADVANCE_FIELDS = tuple(f.name for f in fields(AdaptiveAdvance))


def _advance_state(advance: AdaptiveAdvance) -> dict[str, int]:
    return {name: int(getattr(advance, name)) for name in ADVANCE_FIELDS}


@dataclass(frozen=True)
class ChannelStats:
    """What the loop did for one channel (counts since it was added)."""

    fired: int  # interrupts injected (the ioctl took them)
    looks: int  # scheduled looks at the page after an expiry (PAGE)
    kicks: int  # guest kicks received (PAGE: the guest exited to say "earlier")
    loop_wakeups: int  # wake-ups of the whole loop (shared by every channel)
    late_wakeups: int  # the loop woke only after the deadline itself
    margins: int  # guest margins folded into the advance
    past_deadlines: int  # published deadlines already past when read (PAGE)
    far_deadlines: int  # published deadlines beyond MAX_DELTA_NS (looked at again later)
    logged: int  # events in the log
    advance_ns: int  # the advance now
    failed_injections: int = 0  # expiries whose injection ioctl failed: not delivered
    inject_errno: int = 0  # the last failure's errno (0: none)
    block_wakes: int = 0  # expiries delivered by ending a BLOCK (PV idle), not by interrupt

    @property
    def expiries(self) -> int:
        """Deadlines the loop acted on, delivered or not."""
        return self.fired + self.block_wakes + self.failed_injections

    def failure_note(self, what: str) -> str | None:
        """One line for the record when injections failed (None when none did)."""
        if not self.failed_injections:
            return None
        return (
            f"{what}: {self.failed_injections} of {self.expiries} injections failed "
            f"({os.strerror(self.inject_errno)}): those events were never delivered"
        )


@dataclass(frozen=True)
class LoopTotals:
    wakeups: int
    fired: int
    cpu_ns: int


def build_library(force: bool = False) -> Path:
    """Path of the loop's shared library, rebuilt when its source, the ABI or gcc change."""
    gcc = require_tool("gcc")
    header = render_c_header().encode()
    inputs = [
        SRC.read_bytes(),
        IO_SRC.read_bytes(),
        header,
        " ".join(CFLAGS).encode(),
        tool_version(gcc),
    ]

    def build(work: Path) -> None:
        (work / "tickless_abi.h").write_bytes(header)
        run_tool([gcc, *CFLAGS, "-I", str(work), "-o", str(work / LIBRARY), str(SRC), "-lm"])

    return cached_build("deadline-loop", inputs, build, (LIBRARY,), force=force) / LIBRARY


_lib: C.CDLL | None = None


def library() -> C.CDLL:
    """The loaded library (built on first use); its calls release the GIL."""
    global _lib
    if _lib is None:
        lib = C.CDLL(str(build_library()), use_errno=True)
        lib.dl_create.restype = C.c_void_p
        lib.dl_create.argtypes = [C.c_double, C.c_int, C.c_int, C.c_uint64]
        lib.dl_problems.restype = None
        lib.dl_problems.argtypes = [C.c_void_p, C.POINTER(C.c_int), C.POINTER(C.c_int)]
        lib.dl_thread_id.argtypes = [C.c_void_p]
        lib.dl_start.argtypes = [C.c_void_p]
        lib.dl_destroy.argtypes = [C.c_void_p]
        lib.dl_destroy.restype = None
        lib.dl_add.argtypes = [C.c_void_p, C.POINTER(ChannelConfigC)]
        lib.dl_remove.argtypes = [C.c_void_p, C.c_int]
        lib.dl_block.argtypes = [C.c_void_p, C.c_int, C.c_uint64]
        lib.dl_unblock.argtypes = [C.c_void_p, C.c_int]
        lib.dl_set_deadline.argtypes = [C.c_void_p, C.c_int, C.c_uint64, C.c_int, C.c_int64]
        lib.dl_set_clock.argtypes = [
            C.c_void_p,
            C.c_int,
            C.c_uint64,
            C.c_uint64,
            C.c_uint32,
            C.c_int32,
        ]
        lib.dl_stats.argtypes = [C.c_void_p, C.c_int, C.POINTER(ChannelStatsC)]
        lib.dl_io_stats.argtypes = [C.c_void_p, C.c_int, C.POINTER(IoStatsC)]
        lib.dl_totals.restype = None
        lib.dl_totals.argtypes = [C.c_void_p, *[C.POINTER(C.c_uint64)] * 3]
        lib.dl_look_offset.restype = C.c_uint64
        lib.dl_look_offset.argtypes = [C.POINTER(C.c_uint64), C.c_int, C.c_uint64, C.c_uint64]
        lib.dl_advance_step.restype = C.c_int64
        lib.dl_advance_step.argtypes = [C.c_int64] * (len(ADVANCE_FIELDS) + 1)
        _lib = lib
    return _lib


def advance_step(advance: AdaptiveAdvance, margin_ns: int) -> int:
    """The C loop's advance update from ``advance``'s state (tests hold it against
    ``AdaptiveAdvance.update``)."""
    return int(library().dl_advance_step(*_advance_state(advance).values(), margin_ns))


def look_offset(intervals_ns: list[int], advance_ns: int, look_delay_ns: int) -> int:
    """The C loop's look rule (after an expiry, when to read the page again), for tests to
    hold against the simulator's ``timers.pv_deadline`` model."""
    array = (C.c_uint64 * len(intervals_ns))(*intervals_ns)
    return int(library().dl_look_offset(array, len(intervals_ns), advance_ns, look_delay_ns))


@dataclass
class Channel:
    """A channel's id in the loop and the event log the loop writes (if asked)."""

    id: int
    kind: ChannelKind
    log: npt.NDArray[np.uint64] | None  # shape (capacity, 4): EVENT_FIELDS


class DeadlineLoop:
    """The host's one deadline loop (a C thread), started on creation. ``slop_ns``: a
    wake-up may come this late so that nearby ones coalesce (Xen's timer_slop)."""

    def __init__(self, tsc_hz: int, policy: RealtimePolicy | None = None, slop_ns: int = 0) -> None:
        self.tsc_hz = tsc_hz
        self.policy = policy or RealtimePolicy(fifo_priority=None, hold_cpu_dma_latency=False)
        self._lib = library()
        cpu = -1 if self.policy.cpu is None else self.policy.cpu
        handle = self._lib.dl_create(tsc_hz / 1e9, self.policy.fifo_priority or 0, cpu, slop_ns)
        if not handle:
            err = C.get_errno()
            raise DeadlineLoopError(f"cannot create the deadline loop: {os.strerror(err)}")
        self._handle: int | None = handle
        err = self._lib.dl_start(handle)
        if err:
            self._lib.dl_destroy(handle)
            self._handle = None
            raise DeadlineLoopError(f"cannot start the deadline loop: {os.strerror(-err)}")
        self._logs: dict[int, npt.NDArray[np.uint64]] = {}
        if self.policy.hold_cpu_dma_latency:
            problem = hold_cpu_dma_latency()
            self._dma_problem = [problem] if problem else []
        else:
            self._dma_problem = []

    @property
    def problems(self) -> list[str]:
        """One line per real-time setting the loop's thread could not apply."""
        sched, affinity = C.c_int(), C.c_int()
        if self._handle is not None:
            self._lib.dl_problems(self._handle, C.byref(sched), C.byref(affinity))
        lines = list(self._dma_problem)
        if sched.value:
            lines.append(f"no SCHED_FIFO for the deadline loop ({os.strerror(sched.value)})")
        if affinity.value:
            lines.append(f"cannot pin the deadline loop ({os.strerror(affinity.value)})")
        return lines

    @property
    def scheduling(self) -> str:
        """The policy the loop's thread runs under, as the kernel reports it."""
        return scheduling_of(self._lib.dl_thread_id(self._handle) if self._handle else None)

    def _h(self) -> int:
        if self._handle is None:
            raise DeadlineLoopError("the deadline loop is closed")
        return self._handle

    def add(
        self,
        kind: ChannelKind,
        vm_fd: int,
        vector: int,
        clock: GuestClock,
        advance: AdaptiveAdvance,
        *,
        page_address: int = 0,
        kick_fd: int = -1,
        gsi: int | None = None,
        log_capacity: int = 0,
        io: IoConfig | None = None,
        apic_id: int = 0,
        exact: bool = False,
        block_fd: int = -1,
    ) -> Channel:
        """Serve one guest timer; ``page_address`` is the host address of its shared page
        (PAGE, IO), ``kick_fd`` the eventfd its kicks signal, ``log_capacity`` events logged;
        IO: ``io`` its settings (its log's address and capacity are filled here), its
        interrupts to the vCPU of ``apic_id``. ``exact``: the guest cannot spin to its
        deadline, so the loop waits out its advance in C and injects at the deadline itself
        (KVM's lapic_timer_advance), tuning the advance from its own wake-ups.
        ``block_fd``: a non-blocking eventfd for ``block`` (PV idle; -1: none)."""
        columns = len(IO_EVENT_FIELDS) if kind is ChannelKind.IO else len(EVENT_FIELDS)
        log = np.zeros((log_capacity, columns), dtype=np.uint64) if log_capacity else None
        if io is not None:
            io.log_address = log.ctypes.data if log is not None else 0
            io.log_capacity = log_capacity
        cfg = ChannelConfigC(
            kind=int(kind),
            vm_fd=vm_fd,
            gsi=-1 if gsi is None else gsi,
            kick_fd=kick_fd,
            msi_address_lo=MSI_ADDRESS_BASE | (apic_id & 0xFF) << 12,
            msi_data=vector,
            page_address=page_address,
            tsc_timestamp=clock.tsc_timestamp,
            system_time_ns=clock.system_time_ns,
            mul=clock.scale.mul,
            shift=clock.scale.shift,
            **_advance_state(advance),
            max_delta_ns=MAX_DELTA_NS,
            look_delay_ns=LOOK_DELAY_NS,
            log_address=0 if io is not None or log is None else log.ctypes.data,
            log_capacity=0 if io is not None else log_capacity,
            io=io if io is not None else IoConfig(),
            exact=int(exact),
            block_fd=block_fd,
        )
        index = self._lib.dl_add(self._h(), C.byref(cfg))
        if index < 0:
            raise DeadlineLoopError(f"the deadline loop refused a channel: {os.strerror(-index)}")
        if log is not None:
            self._logs[index] = log  # the loop writes into it until removed
        return Channel(index, kind, log)

    def remove(self, channel: Channel) -> None:
        """When this returns the loop no longer touches the channel or its guest memory."""
        if self._handle is not None:
            self._lib.dl_remove(self._handle, channel.id)
        self._logs.pop(channel.id, None)

    def block(self, channel: Channel, deadline_ns: int) -> int:
        """PV idle: wait (GIL released) until the loop delivers ``deadline_ns`` by ending
        this wait instead of injecting. 0: woken for it; 1: by ``unblock``; -ETIME: it is
        not the page's pending deadline (delivered already, by interrupt)."""
        return int(self._lib.dl_block(self._h(), channel.id, deadline_ns))

    def unblock(self, channel: Channel) -> None:
        """End a ``block`` wait at once (a stop)."""
        if self._handle is not None:
            self._lib.dl_unblock(self._handle, channel.id)

    def set_deadline(self, channel: Channel, deadline_ns: int, margin_ns: int | None) -> None:
        """CALL channels: arm ``deadline_ns`` (0 cancels), folding in the guest's margin."""
        self._lib.dl_set_deadline(
            self._h(), channel.id, deadline_ns, margin_ns is not None, margin_ns or 0
        )

    def set_clock(self, channel: Channel, clock: GuestClock) -> None:
        """The guest's clock was re-anchored (a new rate, a warp, a freeze: ``mul`` 0): the
        loop's copy follows. A channel with nothing armed is not woken for it."""
        self._lib.dl_set_clock(
            self._h(),
            channel.id,
            clock.tsc_timestamp,
            clock.system_time_ns,
            clock.scale.mul,
            clock.scale.shift,
        )

    def totals(self) -> LoopTotals:
        """Host-wide: wake-ups, interrupts injected (live channels) and the thread's CPU."""
        values = [C.c_uint64() for _ in range(3)]
        if self._handle is not None:
            self._lib.dl_totals(self._handle, *(C.byref(v) for v in values))
        return LoopTotals(*(int(v.value) for v in values))

    def stats(self, channel: Channel) -> ChannelStats:
        out = ChannelStatsC()
        if self._handle is None or self._lib.dl_stats(self._handle, channel.id, C.byref(out)):
            raise DeadlineLoopError(f"no channel {channel.id} in the deadline loop")
        names = [field[0] for field in ChannelStatsC._fields_]
        return ChannelStats(**{name: int(getattr(out, name)) for name in names})

    def io_stats(self, channel: Channel) -> IoLoopStats:
        """IO channels: what the I/O device did."""
        out = IoStatsC()
        if self._handle is None or self._lib.dl_io_stats(self._handle, channel.id, C.byref(out)):
            raise DeadlineLoopError(f"no IO channel {channel.id} in the deadline loop")
        return IoLoopStats(**{name: int(getattr(out, name)) for name in IO_STAT_FIELDS})

    def close(self) -> None:
        """Stop the thread and free every channel (remove them first: guests may be gone)."""
        if self._handle is not None:
            self._lib.dl_destroy(self._handle)
            self._handle = None
            self._logs.clear()


class OwnedChannel:
    """A device's channel on the loop. ``release`` keeps the last stats and event log, then
    takes the channel out (idempotent): a stopped guest's counts stay readable, and the
    loop never touches its memory again."""

    def __init__(self, loop: DeadlineLoop, channel: Channel) -> None:
        self.loop = loop
        self.channel: Channel | None = channel
        self._final_stats: ChannelStats | None = None
        self._final_log: npt.NDArray[np.uint64] | None = None

    def stats(self) -> ChannelStats | None:
        if self.channel is not None:
            return self.loop.stats(self.channel)
        return self._final_stats

    def event_log(self) -> npt.NDArray[np.uint64] | None:
        """The per-expiry log (``EVENT_FIELDS``) so far, if the channel keeps one."""
        if self.channel is None or self.channel.log is None:
            return self._final_log
        return self.channel.log[: self.loop.stats(self.channel).logged].copy()

    # --- a listener of the guest's timeline: the loop's copy of the clock follows it -------

    def begin_clock_change(self) -> None:
        """Nothing to mark: the loop never reads the guest's page for the clock."""

    def clock_changed(self, clock: GuestClock, now_ticks: int) -> None:
        channel = self.channel
        if channel is not None:
            self.loop.set_clock(channel, clock)

    def release(self) -> None:
        if self.channel is not None:
            self._final_log = self.event_log()
            self._final_stats = self.loop.stats(self.channel)
            self.loop.remove(self.channel)
            self.channel = None
