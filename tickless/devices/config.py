"""What a guest is asked to run."""

from __future__ import annotations

from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

from tickless.axes import (
    ZOO_TIMERS,
    Advance,
    GuestKind,
    IoCpu,
    LinuxDrivers,
    Method,
    TickMode,
    TimerPath,
    Wait,
    check_dilation,
    check_stock,
)
from tickless.errors import InputError
from tickless.guest.abi import (
    CRON_MAX_TIMERS,
    CRON_RECORD_ARRAYS,
    LINUX_MAX_EVENTS,
    LINUX_RAM_BYTES,
    MAX_DELTA_NS,
    MAX_EVENTS,
    MIN_MEMORY_BYTES,
    MIN_PERIOD_NS,
    MSG_MAX_ADDRESS,
    PV_IDLE_WAYS,
    RESULTS_GPA,
    Scenario,
)
from tickless.host.realtime import RealtimePolicy

HUGE_PAGE = 2 << 20
SECOND_NS = 1_000_000_000
# Why a guest's time can only run at the rate it started at (Timeline.join's rigid)
STOCK_RIGID = (
    "a stock Linux guest's TSC (its clocksource, sched_clock and LAPIC timer) runs on the "
    "host's at the rate it calibrated at boot, which this host cannot change or stop"
)
LAPIC_IDLE_RIGID = (
    "its waits (--pv-idle lapic) arm KVM's LAPIC timer for a host TSC worked out at the "
    "rate of the moment, which a rate change or a freeze would leave standing"
)


@dataclass(frozen=True)
class GuestConfig:
    guest: GuestKind = GuestKind.SMALL
    kernel_path: Path | None = None  # Linux: a user's vmlinux (None: the one we build)
    linux_drivers: LinuxDrivers = LinuxDrivers.TICKLESS  # Linux: our clocks, or its own
    scenario: Scenario = Scenario.MEASURE
    timer: TimerPath = TimerPath.PV
    method: Method = Method.RELATIVE
    wait: Wait = Wait.HALT
    mode: TickMode = TickMode.TICKLESS
    interval_ns: int = 100_000
    count: int = 0
    hz: int = 1000
    duration_ns: int = 0
    housekeeping_ns: tuple[int, int] = (1 * SECOND_NS, 4 * SECOND_NS)
    housekeeping_phase_ns: int = 0  # idle: its timers run as if it started this long ago
    rate: Fraction = Fraction(1)  # guest seconds per host second (time dilation)
    warp_idle: bool = False  # idle waits are BLOCK calls; the timeline may warp over them
    pv_idle: str = "halt"  # pv waits: "halt" (the loop's interrupt), "block" or "lapic"
    # CRON: (period_ns, first_ns) per timer, first_ns: its first deadline after the start.
    # IDLE: derived from housekeeping_ns and housekeeping_phase_ns (see cron_schedule).
    cron: tuple[tuple[int, int], ...] = ()
    cron_origin_ns: int = 0  # CRON: guest time its schedule counts from (0: its start)
    halt_poll_ns: int | None = None  # None: the host's default
    max_hypercall_rate: float = 50_000.0
    io_rate_per_s: float = 0.0  # I/O interrupts into the timer's vCPU (0: none)
    io_handler_ns: int = 20_000  # how long the guest's I/O handler stays busy
    hold_back_ns: int = 0  # precise: hold I/O interrupts back this long before a deadline
    hold_back_cost: bool = False  # precise: ... as long as one costs (measured), not fixed
    io_cpu: IoCpu = IoCpu.SAME  # the vCPU the I/O interrupts go to (other: vCPU 1)
    spin_threshold_ns: int = 200_000  # precise: closer deadlines are spun to, no interrupt
    second_vcpu_busy: bool = False  # CPU load inside the VM: vCPU 1 runs a busy loop
    vcpu_policy: RealtimePolicy | None = None  # pin / SCHED_FIFO the vCPU thread
    ap_policy: RealtimePolicy | None = None  # ... and vCPU 1's, when it runs
    seed: int = 0
    watchdog_s: float | None = None  # stop it after this long busy without progress
    explain: bool = False  # pv: the guest records each event's longest spin clock gap too
    advance: Advance = Advance.OFF  # lapic: arm early by an adaptive advance, spin the rest
    zoo_devices: bool = False  # the timer zoo's chips whatever the timer (the fuzzing guest)
    rtc_epoch_ns: int | None = None  # the CMOS RTC's time at the start (None: the host's)
    # The message device (devices/message.py, tickless cosim): this guest's address on the
    # simulated network (0: no device), the address PINGPONG pings (0: it only answers),
    # and how long a ping waits for its answer before it is sent again.
    msg_address: int = 0
    msg_peer: int = 0
    msg_retry_ns: int = 0

    def __post_init__(self) -> None:
        if self.guest is GuestKind.LINUX and self.count > LINUX_MAX_EVENTS:
            raise InputError(f"a Linux guest records at most {LINUX_MAX_EVENTS:,} events")
        if not 0 <= self.count <= MAX_EVENTS:
            raise InputError(f"count must be between 1 and {MAX_EVENTS:,}")
        if self.interval_ns <= 0:
            raise InputError("interval must be positive")
        if self.hz <= 0 or self.hz > 100_000:
            raise InputError("hz must be between 1 and 100000")
        if self.rate <= 0:
            raise InputError("time dilation rate must be positive")
        if self.io_rate_per_s < 0 or self.io_rate_per_s > 100_000:
            raise InputError("the I/O interrupt rate must be between 0 and 100000/s")
        if self.io_handler_ns < 0 or self.hold_back_ns < 0 or self.spin_threshold_ns < 0:
            raise InputError("handler cost, hold-back window and spin threshold must be >= 0")
        if self.io_cpu is IoCpu.OTHER and self.guest is not GuestKind.SMALL:
            raise InputError("--io-cpu other steers to the small guest's second vCPU")
        if self.max_hypercall_rate < 100:
            raise InputError("the hypercall rate limit must be at least 100/s")
        self._check_bending()
        if self.timer is TimerPath.RTC and (self.hz & (self.hz - 1) or not 2 <= self.hz <= 8192):
            raise InputError("--timer rtc runs at a power-of-two rate of 2 to 8192 Hz")
        if self.timer is TimerPath.HPET and self.mode is TickMode.PERIODIC:
            self._check_hpet_period()
        self._check_messages()
        self._check_pv_idle()
        if len(self.cron_schedule) > CRON_MAX_TIMERS:
            raise InputError(f"a cron guest runs at most {CRON_MAX_TIMERS} timers")
        if any(not 0 < period <= MAX_DELTA_NS for period, _ in self.cron_schedule):
            raise InputError("a cron timer's period must be between 1 ns and an hour")
        if any(not 0 <= first <= MAX_DELTA_NS for _, first in self.cron_schedule):
            raise InputError("a cron timer's first run must be within an hour of the start")
        if self.scenario is Scenario.CRON and not self.cron:
            raise InputError("a cron guest needs at least one timer")
        if self.advance is not Advance.OFF and (
            self.timer is not TimerPath.LAPIC
            or self.guest is not GuestKind.SMALL
            or self.mode is not TickMode.TICKLESS
        ):
            raise InputError("--advance auto is the small guest's, on tickless --timer lapic")

    def _check_hpet_period(self) -> None:
        """A periodic HPET runs at exactly --interval, or the record would not say its
        interval: a whole number of its 10 ns ticks, and no shorter than the period the
        device runs at most (``MIN_PERIOD_NS``; a shorter one is clamped)."""
        if self.interval_ns % 10 or self.interval_ns < MIN_PERIOD_NS:
            raise InputError(
                "--timer hpet --mode periodic runs on the HPET's 10 ns ticks, every "
                f"{MIN_PERIOD_NS // 1000} us at most: --interval must be a whole number of "
                "ticks and at least that"
            )

    @classmethod
    def from_spec(cls, spec: object, **given: Any) -> GuestConfig:
        """The configuration a run's ``spec`` (measurement, idle or cron) asks of one guest:
        every setting the spec holds under a field name of ours, then ``given`` (what the
        spec words differently). One path for every spec: a new setting of the same name
        comes along without being copied by hand."""
        taken = {f.name: getattr(spec, f.name) for f in fields(cls) if hasattr(spec, f.name)}
        return cls(**{**taken, **given})

    def _check_messages(self) -> None:
        if not (0 <= self.msg_address <= MSG_MAX_ADDRESS and 0 <= self.msg_peer <= MSG_MAX_ADDRESS):
            raise InputError(f"network addresses are 1 to {MSG_MAX_ADDRESS}")
        if self.guest is GuestKind.LINUX and self.msg_address:
            self._check_linux_messages()
        if self.scenario is Scenario.PINGPONG and not self.msg_address:
            raise InputError("a pingpong guest needs a network address")
        if not 0 <= self.msg_retry_ns <= MAX_DELTA_NS:
            raise InputError("the retry timeout must be between 0 and an hour")

    def _check_linux_messages(self) -> None:
        """A Linux end point answers (workload.c's PINGPONG); its idle BLOCKs (the lguest
        device's BLOCK) where its clock is driven, so that its group can rest."""
        if self.scenario is not Scenario.PINGPONG or self.msg_peer:
            raise InputError("a Linux end point runs PINGPONG and answers (no --peer)")
        if self.timer is not TimerPath.LGUEST:
            raise InputError("a Linux end point needs --timer lguest (BLOCK's one-shot)")

    def _check_pv_idle(self) -> None:
        """PV idle blocks the vCPU thread in the host until the page's deadline, or hands
        the deadline to KVM's LAPIC timer with the HLT: a small guest on the PV device,
        with nothing else to wake it (no I/O load, no warp)."""
        if self.pv_idle not in PV_IDLE_WAYS:
            raise InputError(f"--pv-idle must be one of {', '.join(PV_IDLE_WAYS)}")
        if self.pv_idle == "halt":
            return
        if self.guest is not GuestKind.SMALL or self.timer is not TimerPath.PV:
            raise InputError(f"--pv-idle {self.pv_idle} is the small guest's, on --timer pv")
        if self.warp_idle or self.io_rate_per_s > 0 or self.wait is not Wait.HALT:
            raise InputError(
                f"--pv-idle {self.pv_idle} needs a halting guest without --warp-idle or I/O"
            )

    def _check_bending(self) -> None:
        """What each timer path can do with bent time (one line for what it cannot)."""
        check_dilation(self.timer, self.rate, stock=self.stock)
        if self.stock:
            if self.guest is not GuestKind.LINUX:
                raise InputError("--linux-drivers stock is a Linux guest's: add --guest linux")
            check_stock(self.timer, self.warp_idle)
        if not self.warp_idle:
            return
        if self.timer not in (TimerPath.PV, TimerPath.LGUEST):
            raise InputError("--warp-idle needs --timer pv or lguest (an idle wait is a BLOCK)")
        if self.guest is GuestKind.LINUX and self.timer is not TimerPath.LGUEST:
            raise InputError(
                "--warp-idle with --guest linux needs --timer lguest (its BLOCK "
                "names the lguest device's programmed event)"
            )
        if self.mode is TickMode.PERIODIC:
            raise InputError("--warp-idle needs a tickless guest: a ticking one is never idle")
        if self.io_rate_per_s > 0:
            raise InputError("--warp-idle cannot run with --load io: a warp would skip arrivals")
        if self.wait is not Wait.HALT:
            raise InputError("--warp-idle needs --wait halt: a spinning guest is never idle")

    @property
    def cron_schedule(self) -> tuple[tuple[int, int], ...]:
        """The timers of the cron workload: CRON's own, or IDLE's two housekeeping timers
        as if the guest had started housekeeping_phase_ns ago (guests booted together do
        not fire together)."""
        if self.scenario is Scenario.CRON:
            return self.cron
        if self.scenario is Scenario.IDLE:
            phase = self.housekeeping_phase_ns
            return tuple((p, p - phase % p) for p in self.housekeeping_ns)
        return ()

    @property
    def rigid_reason(self) -> str:
        """Why this guest's time cannot follow a rate change or a freeze ("": it can)."""
        if self.stock:
            return STOCK_RIGID
        return LAPIC_IDLE_RIGID if self.pv_idle == "lapic" else ""

    @property
    def second_vcpu(self) -> bool:
        """Whether vCPU 1 runs: busy (CPU load) or taking the I/O interrupts."""
        return self.second_vcpu_busy or (self.io_cpu is IoCpu.OTHER and self.io_rate_per_s > 0)

    @property
    def zoo(self) -> bool:
        """Whether the guest gets a PC's timer chips emulated on its timeline (HPET, PIT,
        CMOS RTC: all three, as a PC has them) instead of KVM's in-kernel PIT."""
        return self.zoo_devices or self.timer in ZOO_TIMERS or self.stock

    @property
    def stock(self) -> bool:
        """A Linux guest on its own clocks (``--linux-drivers stock``): the zoo's chips, its
        own calibration, KVM's CPUID leaves hidden (``vmm/cpuid.py``)."""
        return self.linux_drivers is LinuxDrivers.STOCK

    @property
    def period_ns(self) -> int:
        return SECOND_NS // self.hz

    @property
    def results_capacity(self) -> int:
        """Timestamps the guest may write: one reference plus one per event (CRON and
        IDLE: per timer run, up to count)."""
        return self.count + 1

    @property
    def results_arrays(self) -> int:
        """u64 arrays of results_capacity: timestamps; the small guest's MEASURE: when each
        event's interrupt reached ring 3 (0: spun to without one), and with explain the
        longest clock gap seen while spinning; CRON and IDLE: the time each timer ran, its
        deadline and the timer's index."""
        if self.scenario in (Scenario.CRON, Scenario.IDLE):
            return CRON_RECORD_ARRAYS
        if self.scenario is Scenario.MEASURE and self.guest is GuestKind.SMALL:
            return 3 if self.explain else 2
        if self.scenario is Scenario.PINGPONG:  # when each answer came; when its ping left
            return 2
        return 1

    @property
    def memory_bytes(self) -> int:
        if self.guest is GuestKind.LINUX:
            return LINUX_RAM_BYTES
        need = RESULTS_GPA + self.results_capacity * 8 * self.results_arrays
        return max(MIN_MEMORY_BYTES, -(-need // HUGE_PAGE) * HUGE_PAGE)
