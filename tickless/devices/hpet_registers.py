"""The HPET's registers (IA-PC HPET 1.0a) and a comparator's state: the numbers
``devices/hpet.py`` emulates, apart from how it keeps time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tickless.guest.abi import MIN_PERIOD_NS, PIT_GSI, RTC_GSI

TICK_NS = 10
TICK_FS = TICK_NS * 1_000_000  # COUNTER_CLK_PERIOD
NUM_TIMERS = 3
U32, U64 = (1 << 32) - 1, (1 << 64) - 1
# general registers
ID_REG, CONFIG_REG, STATUS_REG, COUNTER_REG = 0x000, 0x010, 0x020, 0x0F0
TIMER_BASE, TIMER_STRIDE = 0x100, 0x20
TN_CONFIG, TN_COMPARATOR, TN_FSB_ROUTE = 0x00, 0x08, 0x10
CAP_REV_ID, CAP_NUM_TIM_SHIFT, CAP_COUNT_SIZE, CAP_LEG_RT = 0x01, 8, 1 << 13, 1 << 15
VENDOR_ID = 0x8086
CAPABILITIES = (
    CAP_REV_ID
    | (NUM_TIMERS - 1) << CAP_NUM_TIM_SHIFT
    | CAP_COUNT_SIZE
    | CAP_LEG_RT
    | VENDOR_ID << 16
    | TICK_FS << 32
)
CFG_ENABLE, CFG_LEGACY = 1 << 0, 1 << 1
# per comparator: configuration and capabilities
TN_LEVEL, TN_INT_ENB, TN_PERIODIC, TN_PER_CAP, TN_SIZE_CAP = 1 << 1, 1 << 2, 1 << 3, 1 << 4, 1 << 5
TN_VAL_SET, TN_32BIT, TN_ROUTE_SHIFT = 1 << 6, 1 << 8, 9
TN_ROUTE_MASK = 0x1F << TN_ROUTE_SHIFT
TN_FSB_EN, TN_FSB_CAP = 1 << 14, 1 << 15
TN_WRITABLE = (
    TN_LEVEL | TN_INT_ENB | TN_PERIODIC | TN_VAL_SET | TN_32BIT | TN_ROUTE_MASK | TN_FSB_EN
)
ROUTE_CAP = 1 << 2 | 0xF << 20  # IOAPIC pins 2 and 20-23: no ISA device, not the PV timer's 5
LEGACY_GSI = (PIT_GSI, RTC_GSI)  # LEG_RT_CNF: comparator 0 -> ISA IRQ 0, 1 -> ISA IRQ 8
MIN_PERIOD_TICKS = MIN_PERIOD_NS // TICK_NS
NEVER_TICKS = 1 << 62  # a match further than this (1,460 years) is never armed
MSI_WINDOW, MSI_WINDOW_MASK = 0xFEE0_0000, 0xFFF0_0000

RaiseGsi = Callable[[int], None]
SignalMsi = Callable[[int, int], object]  # (vector, destination APIC ID)


@dataclass
class HpetTimer:
    """One comparator's registers, and the counter value its armed match is at."""

    index: int
    config: int
    comparator: int = U64
    period: int = 0
    fsb: int = 0
    target: int | None = None  # unwrapped counter value of the armed match (None: none)

    @property
    def mask(self) -> int:
        return U32 if self.config & TN_32BIT else U64


@dataclass
class HpetStats:
    matches: int = 0  # comparator matches (each asks for one interrupt)
    interrupts: int = 0  # interrupts raised (GSI edges and MSIs)
    masked: int = 0  # matches with Tn_INT_ENB_CNF clear
    overruns: int = 0  # periods skipped because the host expiry came late
    clamped: int = 0  # periodic matches run at MIN_PERIOD_NS instead of a shorter period
    refused_routes: int = 0  # Tn_INT_ROUTE_CNF writes naming a pin not in ROUTE_CAP
    bad_msi: int = 0  # FSB interrupts dropped: address or data not a valid MSI
    ignored_writes: int = 0  # odd widths, misaligned, counter while running
