"""The contract between the tickless guest kernel and the host: memory layout, ports,
hypercalls, vectors and shared structures.

The single source of truth: ``abi_header.render_c_header()`` turns it (``abi_msg.py`` too)
into the ``tickless_abi.h`` the guest is compiled against, so the two sides cannot drift.

Hypercall ABI: the guest writes the call number to port ``HYPERCALL_PORT`` with a 32-bit
``out`` (ring 3 may: IOPL=3), arguments in ``rdi``, ``rsi``; ``rax`` returns 0 or a negative
errno. Each call's rule is in a comment on its ``Hypercall`` member; the README's "Hypercall
ABI" section has the whole table.
"""

from __future__ import annotations

import ctypes as C
from enum import IntEnum
from typing import Any

ABI_VERSION = 1
BOOT_MAGIC = 0x7469636B6C657373  # "tickless"

# --- guest-physical memory layout (identity-mapped, 2 MiB pages, user-accessible) ----------
PML4_GPA = 0x1000
PDPT_GPA = 0x2000
PD_GPA = 0x3000
PD_HIGH_GPA = 0x11000  # maps the 2 MiB page at IOAPIC_GPA (IOAPIC, HPET), uncached
GDT_GPA = 0x4000
TSS_GPA = 0x4100  # 104 bytes + I/O bitmap up to HYPERCALL_PORT, below 0x5000
BOOT_GPA = 0x5000  # struct tickless_boot: host -> guest parameters
PVCLOCK_GPA = 0x6000  # struct pvclock_vcpu_time_info
SHARED_GPA = 0x7000  # struct tickless_shared: counters both sides read
KERNEL_STACK_TOP = 0x10000  # ring-0 stack (TSS.RSP0), grows down to 0x9000
USER_STACK_TOP = 0xF0000  # ring-3 stack, grows down
AP_KERNEL_STACK_TOP = 0xC0000  # the second vCPU's ring-0 stack (it only passes through)
AP_USER_STACK_TOP = 0xE0000  # the second vCPU's ring-3 stack
AP_SHARED_GPA = 0x8000  # the second vCPU's counter, on a page of its own
AP_TSS_GPA = 0x8100  # the second vCPU's TSS (its RSP0: its own ring-0 stack), same page
IMAGE_GPA = 0x100000  # kernel image load address and entry point
AP_ENTRY_GPA = 0x100010  # the second vCPU's entry point, at a fixed place in the image
IMAGE_MAX_BYTES = 0x100000
RESULTS_GPA = 0x200000  # u64 timestamps written by the workload
MAX_EVENTS = 10_000_000  # timer events one run may record (sizes the results buffer)
MIN_MEMORY_BYTES = 4 << 20
KVM_TSS_GPA = 0x7FFF_D000  # three pages KVM keeps for itself (ioctl takes a C int)

# --- the Linux guest (tickless/guest/linux): where its drivers find the host ---------------
# The host reserves a window at the top of RAM (e820 "reserved") and names it on the kernel
# command line, ``tickless.window=<gpa>``; inside it the same structures as the small
# guest's, at these offsets. The PV clock-event device's interrupt is an ISA IRQ (an IOAPIC
# pin, described in the MP table), since a Linux driver cannot claim a raw vector.
LINUX_RAM_BYTES = 128 << 20  # Linux sets memory up in 128 MiB sections: less is slower
LINUX_WINDOW_BYTES = 2 << 20
LINUX_WINDOW_GPA = LINUX_RAM_BYTES - LINUX_WINDOW_BYTES
WINDOW_BOOT_OFFSET = 0x0000  # struct tickless_boot
WINDOW_PVCLOCK_OFFSET = 0x1000  # struct pvclock_vcpu_time_info
WINDOW_SHARED_OFFSET = 0x2000  # struct tickless_shared
WINDOW_INFO_OFFSET = 0x3000  # struct tickless_linux_info (written by the guest)
WINDOW_RESULTS_OFFSET = 0x4000  # u64 timestamps, up to the message device's pages
# the message device for a Linux end point (tickless cosim): the window's last 16 KiB
WINDOW_MSG_TX_OFFSET = LINUX_WINDOW_BYTES - 0x4000  # send buffer (MSG_SEND reads it)
WINDOW_MSG_RING_OFFSET = LINUX_WINDOW_BYTES - 0x3000  # struct tickless_msg_ring + slots
LINUX_MAX_EVENTS = (WINDOW_MSG_TX_OFFSET - WINDOW_RESULTS_OFFSET) // 8 - 1
LINUX_TIMER_IRQ = 5  # ISA IRQ of the PV clock-event device
LINUX_MSG_IRQ = 7  # ISA IRQ of the message device (MSG_VECTOR is routed to it)
LINUX_NAME_BYTES = 32  # clock-event device and clocksource names in LinuxInfo
LINUX_RELEASE_BYTES = 64

# --- GDT selectors ------------------------------------------------------------------------
KERNEL_CS = 0x08
KERNEL_DS = 0x10
USER_DS = 0x18 | 3
USER_CS = 0x20 | 3
TSS_SEL = 0x28

# --- ports ----------------------------------------------------------------------------------
CONSOLE_PORT = 0xE9  # one byte per out (Bochs-style debug console)
HYPERCALL_PORT = 0x600
PV_KICK_PORT = 0x604  # a 32-bit out here wakes the host's deadline loop (an ioeventfd)
PV_BLOCK_PORT = 0x605  # an 8-bit out here: PV idle, block in the host until the page's deadline

# --- interrupt vectors (higher vector = higher priority class on the LAPIC) ----------------
PRECISE_VECTOR = 0xF0  # the dedicated precise timer channel: highest priority class
TIMER_VECTOR = 0xE0  # the PV clock-event device
LAPIC_TIMER_VECTOR = 0xE1  # KVM's in-kernel LAPIC timer, TSC-deadline mode
IO_VECTOR = 0x60  # device interrupts (I/O load)
MSG_VECTOR = 0x70  # the message device: a message arrived in the ring
# The timer zoo's interrupts on the small guest (its kernel routes each GSI in the IOAPIC):
HPET_VECTOR = 0xE2
PIT_VECTOR = 0xE3  # GSI 0: ISA IRQ 0 (ISA IRQ n is GSI n: no overrides, MP table and MADT)
RTC_VECTOR = 0xE4  # GSI 8: ISA IRQ 8
PIT_GSI = 0
RTC_GSI = 8
HPET_GSI = 20  # the small guest routes its HPET comparator to this IOAPIC pin (no ISA device)
# --- platform MMIO ------------------------------------------------------------------------
IOAPIC_GPA = 0xFEC0_0000  # KVM's in-kernel IOAPIC
HPET_GPA = 0xFED0_0000  # the HPET's 1 KiB register block
HPET_MMIO_BYTES = 0x400
# --- legacy ports of the timer zoo ----------------------------------------------------------
RTC_PORT = 0x70  # index (bit 7: NMI mask), data at 0x71
RTC_PORTS = 2
RTC_MIN_RATE_HZ = 2  # the MC146818's periodic interrupt: 2 to 8192 Hz, powers of two
RTC_MAX_RATE_HZ = 8192
# The small guest releases the RTC's divider again when its PV clock reads around the write
# are further apart than a write's exit and its Python handling take here (50-200 us): the
# vCPU was preempted. At most so often.
RTC_RELEASE_BRACKET_NS = 250_000
RTC_RELEASE_TRIES = 5
SPURIOUS_VECTOR = 0xFF

# --- RFLAGS the guest runs ring 3 with -------------------------------------------------------
RFLAGS_FIXED = 1 << 1  # bit 1 always reads 1
RFLAGS_IF = 1 << 9  # interrupts enabled
RFLAGS_IOPL3 = 3 << 12  # ring 3 may use port I/O (not honoured here for out: TSS bitmap is)
USER_RFLAGS = RFLAGS_FIXED | RFLAGS_IF | RFLAGS_IOPL3  # the workload: interrupts on
AP_USER_RFLAGS = RFLAGS_FIXED | RFLAGS_IOPL3  # the busy second vCPU: interrupts off

# --- local APIC (x2APIC mode, through MSRs) --------------------------------------------------
APIC_BASE_X2APIC_ENABLE = 1 << 10
APIC_BASE_ENABLE = 1 << 11
APIC_SVR_ENABLE = 1 << 8  # spurious-interrupt vector register: APIC software-enabled
MSR_APIC_BASE = 0x1B
MSR_TSC_DEADLINE = 0x6E0
# Boot.pv_idle: how a wait on the PV deadline device idles until its deadline
PV_IDLE_HALT = 0  # HLT; the deadline loop's interrupt wakes it
PV_IDLE_BLOCK = 1  # BLOCK in the host (PV_BLOCK_PORT); resumed at the deadline, no interrupt
PV_IDLE_LAPIC = 2  # HLT with KVM's LAPIC timer armed for the deadline in the same trap
PV_IDLE_WAYS = ("halt", "block", "lapic")  # --pv-idle's names, in PV_IDLE_*'s order
MSR_X2APIC_EOI = 0x80B
MSR_X2APIC_SVR = 0x80F
MSR_X2APIC_LVT_TIMER = 0x832
MSR_X2APIC_LVT_LINT0 = 0x835  # where the PIC's ExtINT would arrive (masked: no PIC here)
APIC_LVT_MASKED = 1 << 16
IOAPIC_IOWIN_OFFSET = 0x10
IOAPIC_REDIRECTION_BASE = 0x10  # register index of GSI 0's low half; two per GSI
LVT_TSC_DEADLINE_MODE = 2 << 17

# --- clock-event device limits -------------------------------------------------------------
MIN_DELTA_NS = 100  # lguest's minimum; smaller deltas get -ETIME
MAX_DELTA_NS = 3600 * 10**9  # an hour
MIN_PERIOD_NS = 10_000  # 100 kHz tick at most

# --- the cron workload (Scenario.CRON and IDLE): a schedule of periodic timers ------------
CRON_MAX_TIMERS = 8
CRON_RECORD_ARRAYS = 4  # per run: the time it ran, its deadline, the timer's index, and
# when the interrupt it woke for reached ring 3 (0: none; only runs due at that wake-up)

# --- errno values returned (negated) --------------------------------------------------------
EINVAL = 22
ENOSYS = 38
ETIME = 62
E2BIG = 7
EAGAIN = 11

from tickless.guest.abi_msg import *  # noqa: E402, F403  (the message device's part)
from tickless.guest.abi_pit import *  # noqa: E402, F403  (the i8254's ports and clock)


class Panic(IntEnum):
    """PANIC(code, detail) codes beyond the CPU exception vectors (codes 0-31)."""

    UNEXPECTED_VECTOR = 0x100  # detail: rip
    BAD_ABI = 0x200  # detail: the abi_version the guest saw
    SET_CLOCKEVENT_FAILED = 0x300  # detail: errno
    SET_PERIODIC_REFUSED = 0x301  # detail: the period in ns


class Hypercall(IntEnum):
    NOP = 0  # nothing: the round trip's cost
    SET_CLOCKEVENT = 1  # (delta): one-shot delta from now; 0 cancels; < MIN_DELTA -ETIME
    SET_PERIODIC = 2  # (period): a tick every period (0 stops); < MIN_PERIOD_NS -EINVAL
    DONE = 3  # (events): the workload recorded that many timestamps
    LOG = 4  # (gpa, len): print len bytes (bounds-checked)
    PANIC = 5  # (code, detail): a fatal exception (vector, rip)
    SET_PRECISE = 6  # (deadline): PRECISE_VECTOR early by the advance; past -ETIME
    BLOCK = 7  # (deadline): idle until then (0: the programmed event); reached -ETIME
    MSG_SEND = 10  # (dst, len): MSG_TX_GPA's bytes to dst; bad -EINVAL, queue full -EAGAIN


class Scenario(IntEnum):
    """What the guest runs: the measurement, idling, or a deliberate misbehaviour."""

    MEASURE = 0
    IDLE = 1
    HYPERCALL_LOOP = 2  # NOPs back to back: the round-trip benchmark
    BAD_DELTA = 3  # SET_CLOCKEVENT(50 ns), then insists on it
    FLOOD = 4  # hypercalls forever
    WILD_WRITE = 5  # writes far outside guest memory
    TRIPLE_FAULT = 6  # loads an empty IDT and faults
    BAD_LOG = 7  # LOG with a buffer outside guest memory
    EXCEPTION = 8  # divides by zero in ring 0
    RUNAWAY_RING3 = 9  # loops in ring 3 with no timer armed: no exit, ever (watchdog)
    RUNAWAY_RING0 = 10  # loops in ring 0 with interrupts off (watchdog)
    FUZZ = 11  # random actions from (fuzz_seed, call index): guest/src/fuzz.c
    CRON = 12  # a schedule of periodic timers, each run recorded (timer, deadline, time)
    PINGPONG = 20  # the message device: pings to msg_peer and their replies (user.c)


# --- the fuzzing guest (Scenario.FUZZ) ------------------------------------------------------
FUZZ_TSS_GPA = 0x20000  # its own TSS, whose I/O bitmap (zeroed memory) opens every port
FUZZ_FLAG_RUNAWAY = 1 << 0  # some calls end in a loop only the watchdog can stop
FUZZ_FLAG_RUNAWAY_ARMED = 1 << 1  # ... in ring 0, interrupts off, timers and I/O load left on


class FuzzAction(IntEnum):
    """What one fuzz call does (``fuzz.c``); published in ``Shared.fuzz_action``."""

    HYPERCALL = 0  # a valid call number, random and boundary arguments
    BAD_HYPERCALL = 1  # an unknown call number
    LOG = 2  # LOG of a buffer inside guest memory
    SCRIBBLE_SHARED = 3  # random values into the shared counters the host reads
    SCRIBBLE_RESULTS = 4  # random values into the results buffer
    SCRIBBLE_PVCLOCK = 5  # random bytes over the host-written PV clock page
    CONSOLE = 6  # out / rep outs to the console port
    HALT = 7  # a short one-shot timer, then hlt until it fires
    TSC_DEADLINE = 8  # wrmsr TSC_DEADLINE (through the ring-0 #GP handler)
    PIC = 9  # the in-kernel PIC and ELCR ports
    DONE = 10  # DONE(events), valid or beyond the results buffer
    BAD_LOG = 11  # LOG straddling the end of memory, outside it, or too long
    PANIC = 12  # PANIC(code, detail) with random values
    HYPERCALL_WIDTH = 13  # the hypercall port with a 1- or 2-byte out, an in, or rep outs
    PORT = 14  # a random port, width and direction
    MMIO = 15  # a load or store outside guest memory (or straddling its end)
    EXCEPTION = 16  # #UD, #DE, #GP, #PF, #SS, #XM, #DB raised in ring 3
    BAD_HALT = 17  # hlt with a counter address the ring-0 handler cannot read
    RUNAWAY = 18  # a loop in ring 0, interrupts off, or ring 3 (FUZZ_FLAG_RUNAWAY); else nothing
    PV_DEADLINE = 19  # a deadline in the PV device's page (random, torn, soon, 0), a kick
    HPET = 20  # an HPET register (or any offset of its 1 KiB): read or written, any width
    PIT = 21  # the zoo's i8254: control words (read-back too), counts, reads, port 0x61
    RTC = 22  # the CMOS RTC's ports: indexes (NMI bit too), boundary and random bytes, widths


_MSG_BOOT_FIELDS: list[tuple[str, Any]] = [
    ("msg_address", C.c_uint64),  # PINGPONG: this guest's address (0: no message device)
    ("msg_peer", C.c_uint64),  # PINGPONG: the address it pings (0: it only answers)
    ("msg_retry_ns", C.c_uint64),  # PINGPONG: a ping unanswered this long is sent again
]


class Boot(C.Structure):
    """struct tickless_boot at BOOT_GPA: written by the host before the guest starts."""

    _fields_ = [
        (name, C.c_uint64)
        for name in (
            "magic",
            "abi_version",
            "scenario",
            "timer",
            "method",
            "wait",
            "mode",
            "interval_ns",
            "interval_tsc",
            "count",
            "period_ns",
            "duration_ns",
            "housekeeping_a_ns",
            "housekeeping_b_ns",
            "results_gpa",
            "results_capacity",
            "memory_bytes",
            "io_handler_tsc",  # busy time of the guest's I/O interrupt handler, TSC ticks
            "spin_threshold_ns",  # precise: spin without an interrupt below this
            "second_vcpu_busy",  # 1: vCPU 1 runs a CPU-bound loop (CPU load)
            "fuzz_seed",  # FUZZ: the run's seed
            "fuzz_first_call",  # FUZZ: the index of this guest's first call
            "fuzz_end_call",  # FUZZ: stop (DONE) before this index
            "fuzz_flags",  # FUZZ: FUZZ_FLAG_*
            "fuzz_only",  # FUZZ: 0, or 1 + the one FuzzAction to make (tests)
            "explain",  # pv: 1 records each event's longest spin clock gap after the arrivals
            "housekeeping_phase_ns",  # IDLE: timers run as if the guest started this long ago
            "warp",  # 1: idle waits go through BLOCK (the VM's clock may warp over them)
            "cron_timers",  # CRON / IDLE: how many of the cron_* entries are in use
            "cron_origin_ns",  # CRON: guest time the schedule counts from (0: the start)
            # --timer lapic --advance auto: the guest arms the TSC deadline early by an
            # adaptive advance (timers/precise.py AdaptiveAdvance, pv_advance()'s numbers)
            # and spins the rest in ring 3, as the PV device's guest does.
            "lapic_advance",  # 1: on (0: the TSC deadline is the deadline, no spin)
            "advance_start_ns",  # the advance it starts with
            "advance_target_ns",  # the margin it aims for (deadline - ring-3 wake-up)
            "advance_min_ns",
            "advance_max_ns",  # also clamps a margin before it is folded in
            "advance_grow",  # a late or tight wake-up adds grow * shortfall >> grow_shift
            "advance_grow_shift",
            "advance_shrink_shift",  # an early one removes surplus >> shrink_shift
            "rtc_rate_select",  # --timer rtc: register A's RS (its periodic rate 2^(16-RS) Hz)
            "io_cpu",  # the vCPU the I/O load's interrupts go to (0, or 1: vCPU 1 takes them)
            "pv_idle",  # how a pv wait idles: PV_IDLE_HALT, _BLOCK (PV_BLOCK_PORT) or _LAPIC
        )
    ] + [
        ("cron_period_ns", C.c_uint64 * CRON_MAX_TIMERS),  # each timer's period
        ("cron_first_ns", C.c_uint64 * CRON_MAX_TIMERS),  # its first deadline after the start
        *_MSG_BOOT_FIELDS,
        # Linux: sample every clock the kernel has this often (guest time; 0: never), at a
        # CMOS RTC seconds edge, into LinuxInfo's clock_first / clock_last (the stock kernel)
        ("clock_sample_ns", C.c_uint64),
    ]


class Shared(C.Structure):
    """struct tickless_shared at SHARED_GPA: live counters, read by the host for progress."""

    _fields_ = [
        (name, C.c_uint64)
        for name in (
            "irq_count",  # PV timer interrupts taken (ring-0 handler)
            "lapic_irq_count",  # LAPIC timer interrupts taken
            "io_irq_count",  # device interrupts taken
            "events_recorded",  # workload progress
            "host_fired",  # host: PV timer expiries injected (to count merged events)
            "wakeups",  # guest: times the workload woke from HLT
            "timer_callbacks",  # guest: housekeeping timers run (idle workload)
            "precise_irq_count",  # precise channel interrupts taken
            "precise_deadline_ns",  # guest's next precise deadline (hint for hold-back), 0: none
            "precise_margin_ns",  # signed: deadline - wake-up time of the last IRQ-driven event
            "precise_irq_events",  # precise events reached through an early interrupt
            "precise_spin_events",  # precise events too close for an interrupt: spun to
            "spin_ns",  # guest time spent spinning to deadlines, every path that spins
            "ready",  # guest: 1 once it takes interrupts (ring 3 has started)
            "ce_etime",  # Linux driver: set_next_event calls the host answered -ETIME
            "ce_min_delta_retries",  # Linux: clockevents_program_min_delta retries seen
            "fuzz_call",  # FUZZ: index of the call in progress (the guest never scribbles it)
            "fuzz_action",  # FUZZ: that call's FuzzAction
            # The PV deadline device (--timer pv): one block the host's deadline loop reads.
            "pv_deadline_ns",  # guest: its next deadline on the PV clock, absolute; 0: none
            "pv_host_armed_ns",  # host: kick if a new deadline is earlier; 0: always kick
            "pv_advance_ns",  # host: how early it wakes (the guest spins below this)
            "pv_margin_ns",  # guest, signed: deadline - ring-3 wake-up of the last IRQ event
            "pv_margin_seq",  # guest: bumped with every pv_margin_ns
            "pv_kicks",  # guest: kicks (PV_KICK_PORT writes) made
            "pv_irq_events",  # guest: events reached through an (early) interrupt
            "pv_spin_events",  # guest: events close enough to reach by spinning alone
            "blocks",  # guest: BLOCK calls made (idle waits under --warp-idle)
            "block_wakes",  # small guest: BLOCK waits over, the clock read after (ring 3)
            "lapic_advance_ns",  # guest, --advance auto: how early it arms the TSC deadline
            "lapic_irq_events",  # guest, --advance auto: events reached through an interrupt
            "lapic_spin_events",  # guest, --advance auto: events spun to without one
            "msg_irq_count",  # message interrupts taken (ring-0 handler; it bumps irq_count too)
            "msg_sent",  # guest: MSG_SEND calls accepted
            "msg_received",  # guest: messages taken from the ring
            "msg_retries",  # guest: pings sent again after msg_retry_ns without an answer
            # The I/O device (devices/io_irq.py, served by the host's deadline loop):
            "io_covered",  # host: arrivals covered by the interrupts injected so far (status)
            "io_seen",  # guest: io_covered as its last I/O handler read it
            "io_done_tsc",  # guest: TSC at its last I/O handler's end (before the EOI)
            "io_irq_cpu0",  # guest: I/O interrupts vCPU 0 (the timer's) took
            "io_irq_cpu1",  # guest: I/O interrupts vCPU 1 took (--io-cpu other)
            "ap_ready",  # guest: 1 once vCPU 1 takes interrupts (--io-cpu other)
            "ring3_back_tsc",  # guest: TSC ring 3 first ran again after an I/O handler (0: not yet)
            "rtc_rereleases",  # guest, --timer rtc: divider releases redone (a wide bracket)
            "pv_early_irqs",  # Linux on --timer pv: interrupts before the deadline the host fired
            "pv_block_wakes",  # host: PV idle BLOCKs it ended for their deadline (no interrupt)
            "pv_fired_ns",  # host, Linux on pv: the deadline it last fired, before the interrupt
        )
    ]


# The clocks a Linux guest's workload samples (clocks.c), each in ns as the kernel converts
# it, against the timeline (the PV clock): the TSC through the kernel's own tsc_khz, the
# HPET's main counter (extended past 32 bits), jiffies (x 1e9/HZ), ktime_get, the CMOS RTC
# (seconds since the epoch at the seconds edge the sample waited for), ktime_get_real.
CLOCK_NAMES = ("tsc", "hpet", "jiffies", "monotonic", "rtc", "realtime")
# Their bits in ClockSample.valid (the C side's names for CLOCK_NAMES' positions)
CLOCK_TSC_BIT, CLOCK_HPET_BIT, CLOCK_JIFFIES_BIT = 0, 1, 2
CLOCK_MONOTONIC_BIT, CLOCK_RTC_BIT, CLOCK_REALTIME_BIT = 3, 4, 5


class ClockSample(C.Structure):
    """One reading of every clock (``CLOCK_NAMES``), each paired with the timeline's reading
    taken with it (``<name>_at_ns``): jiffies and the RTC are read at their own edge (a tick,
    a second), so that their resolution does not count. Bit i of ``valid``: clock i was read
    (a kernel without an HPET or an RTC leaves its bit clear)."""

    _fields_ = [
        (f"{name}{suffix}", C.c_uint64) for name in CLOCK_NAMES for suffix in ("_ns", "_at_ns")
    ] + [("valid", C.c_uint64), ("timeline_ns", C.c_uint64)]  # when the sample was taken


class LinuxInfo(C.Structure):
    """struct tickless_linux_info in the Linux window: what the kernel chose, written once
    by the workload before it starts (NUL-terminated strings)."""

    _fields_ = [
        ("clockevent", C.c_uint8 * LINUX_NAME_BYTES),  # tick_cpu_device's clock_event_device name
        ("clocksource", C.c_uint8 * LINUX_NAME_BYTES),  # the current clocksource's name
        ("release", C.c_uint8 * LINUX_RELEASE_BYTES),  # utsname()->release
        ("hz", C.c_uint64),  # CONFIG_HZ
        # Linux's wall clock (ktime_get_real) at the workload's start minus the guest time
        # since the start (PV clock): the wall time Linux believes the guest started at, ns
        # since the Unix epoch (on the zoo, read from the CMOS RTC at boot)
        ("realtime_at_boot_ns", C.c_uint64),
        ("written", C.c_uint64),  # 1 once the fields above are filled
        # Boot.clock_sample_ns: the first sample and the latest; samples counts them (the
        # guest writes clock_last, then bumps samples: the host reads a complete one)
        ("clock_first", ClockSample),
        ("clock_last", ClockSample),
        ("clock_samples", C.c_uint64),
    ]


class PvclockVcpuTimeInfo(C.Structure):
    """The pvclock ABI (arch/x86/include/asm/pvclock-abi.h), 32 bytes."""

    _pack_ = 1
    _fields_ = [
        ("version", C.c_uint32),
        ("pad0", C.c_uint32),
        ("tsc_timestamp", C.c_uint64),
        ("system_time", C.c_uint64),
        ("tsc_to_system_mul", C.c_uint32),
        ("tsc_shift", C.c_int8),
        ("flags", C.c_uint8),
        ("pad", C.c_uint8 * 2),
    ]


PVCLOCK_TSC_STABLE_BIT = 1 << 0
