"""The MC146818A's logic (``devices/rtc.py`` puts it on the ports and the timeline): the
calendar, the register encodings, the divider chain and the flags, as pure functions of the
guest time each access passes. See ``devices/rtc.py`` for the model."""

from __future__ import annotations

from collections.abc import Callable, Sequence

SECOND_NS = 1_000_000_000
DAY_S = 86_400
BASE_HZ = 32_768  # the divider chain's input
UIP_CYCLES = 8  # UIP is set this many chain cycles before each update (244 us)
HALF_SECOND_NS = SECOND_NS // 2

SEC, SEC_ALARM, MIN, MIN_ALARM, HOUR, HOUR_ALARM, WDAY, MDAY, MONTH, YEAR = range(10)
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
CENTURY = 0x32  # the PC's century byte (ACPI FADT's century index)
TIME_REGS = frozenset({SEC, MIN, HOUR, WDAY, MDAY, MONTH, YEAR, CENTURY})
A_UIP, A_DV, A_RS = 0x80, 0x70, 0x0F
B_SET, B_PIE, B_AIE, B_UIE, B_SQWE, B_DM, B_24H, B_DSE = (0x80 >> i for i in range(8))
C_IRQF, C_PF, C_AF, C_UF = 0x80, 0x40, 0x20, 0x10
IRQ_FLAGS = C_PF | C_AF | C_UF  # each under its enable, the same bit of register B
D_VRT = 0x80
POWER_ON_A = 0x26  # 32 kHz time base, 1024 Hz
POWER_ON_B = B_24H  # BCD, 24 h, no interrupts


def period_cycles(rate_select: int) -> int:
    """Chain cycles between periodic edges for RS (0: none); 1 and 2 are 256 and 128 Hz."""
    if rate_select == 0:
        return 0
    return 1 << ((rate_select + 7 if rate_select <= 2 else rate_select) - 1)


def periodic_rate_hz(rate_select: int) -> int:
    """The periodic interrupt's rate for RS (0: none)."""
    cycles = period_cycles(rate_select)
    return BASE_HZ // cycles if cycles else 0


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date; any month and day normalize."""
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468 + day - 1


def civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day count since 1970-01-01."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (month <= 2), month, day


def encode(value: int, b: int) -> int:
    """A register byte of ``value`` (0-99) in register B's data mode."""
    return value & 0xFF if b & B_DM else ((value // 10 % 10) << 4) | (value % 10)


def decode(byte: int, b: int) -> int:
    """A register byte's value (invalid BCD digits count arithmetically, as QEMU's)."""
    return byte if b & B_DM else (byte >> 4) * 10 + (byte & 0x0F)


def encode_hour(hour: int, b: int) -> int:
    if b & B_24H:
        return encode(hour, b)
    return encode(hour % 12 or 12, b) | (0x80 if hour >= 12 else 0)


def decode_hour(byte: int, b: int) -> int:
    if b & B_24H:
        return decode(byte, b)
    return decode(byte & 0x7F, b) % 12 + (12 if byte & 0x80 else 0)


def time_registers(seconds: int, b: int) -> dict[int, int]:
    """The clock's bytes at ``seconds`` since the Unix epoch, in register B's format."""
    days, rem = divmod(seconds, DAY_S)
    year, month, day = civil_from_days(days)
    return {
        SEC: encode(rem % 60, b),
        MIN: encode(rem // 60 % 60, b),
        HOUR: encode_hour(rem // 3600, b),
        WDAY: encode((days + 4) % 7 + 1, b),  # 1970-01-01 was a Thursday; Sunday is 1
        MDAY: encode(day, b),
        MONTH: encode(month, b),
        YEAR: encode(year % 100, b),
        CENTURY: encode(year // 100 % 100, b),
    }


def registers_time(cmos: bytes | bytearray, b: int) -> int:
    """Seconds since the Unix epoch that the time bytes say (day of week ignored)."""
    year = decode(cmos[CENTURY], b) * 100 + decode(cmos[YEAR], b)
    days = days_from_civil(year, decode(cmos[MONTH], b), decode(cmos[MDAY], b))
    hms = decode_hour(cmos[HOUR], b) * 3600 + decode(cmos[MIN], b) * 60 + decode(cmos[SEC], b)
    return days * DAY_S + hms


def _matching(byte: int, count: int, enc: Callable[[int], int]) -> Sequence[int]:
    """The values of a field an alarm byte matches: all for a don't-care (0xC0-0xFF), else
    those whose time byte equals it (the chip compares bytes: no valid value, no match)."""
    if byte >= 0xC0:
        return range(count)
    return [v for v in range(count) if enc(v) == byte]


def next_alarm_s(after_s: int, cmos: bytes | bytearray, b: int) -> int | None:
    """The first second after ``after_s`` whose time matches the alarm bytes, or None."""
    secs = _matching(cmos[SEC_ALARM], 60, lambda v: encode(v, b))
    mins = _matching(cmos[MIN_ALARM], 60, lambda v: encode(v, b))
    hours = _matching(cmos[HOUR_ALARM], 24, lambda v: encode_hour(v, b))
    for day in (after_s // DAY_S, after_s // DAY_S + 1):
        for h in hours:
            hour_s = day * DAY_S + h * 3600
            if hour_s + 3599 <= after_s:
                continue
            for m in mins:
                if hour_s + m * 60 + 59 <= after_s:
                    continue
                for s in secs:
                    if hour_s + m * 60 + s > after_s:
                        return hour_s + m * 60 + s
    return None


class Mc146818:
    """The chip's registers and flags as functions of guest time ``now_ns`` (each access
    passes it). ``raise_irq`` is called when IRQF rises (an edge on the chip's line)."""

    def __init__(self, rtc_ns: int, now_ns: int, raise_irq: Callable[[], None]) -> None:
        self.raise_irq = raise_irq
        self.cmos = bytearray(128)
        self.cmos[REG_A], self.cmos[REG_B], self.cmos[REG_D] = POWER_ON_A, POWER_ON_B, D_VRT
        self.index = 0
        self.nmi_masked = False  # port 0x70 bit 7: remembered, no NMI here to mask
        self.raised = 0  # IRQF rises (interrupts asked for)
        self.c_reads = 0
        self.periodic_missed = 0  # periodic edges while IRQF was pending (lost, as on a PC)
        # The chain runs from power-on with the epoch's phase: chain_ns // 1 s counts seconds.
        self._anchor_guest_ns = now_ns
        self._anchor_chain_ns = rtc_ns % SECOND_NS
        self._running = True
        self._second_offset = rtc_ns // SECOND_NS  # time of day = chain seconds + this
        self._flags_chain_ns = self._anchor_chain_ns  # flags are accounted up to here
        for reg, byte in time_registers(rtc_ns // SECOND_NS, POWER_ON_B).items():
            self.cmos[reg] = byte

    # --- the clock ----------------------------------------------------------------------

    def chain_ns(self, now_ns: int) -> int:
        if not self._running:
            return self._anchor_chain_ns
        return self._anchor_chain_ns + max(0, now_ns - self._anchor_guest_ns)

    @property
    def ticking(self) -> bool:
        """The time of day advances: the chain runs and SET is clear."""
        return self._running and not self.cmos[REG_B] & B_SET

    def seconds(self, now_ns: int) -> int:
        """The time of day, seconds since the Unix epoch, as the registers read it now."""
        if not self.ticking:
            return registers_time(self.cmos, self.cmos[REG_B])
        return self.chain_ns(now_ns) // SECOND_NS + self._second_offset

    def update_in_progress(self, now_ns: int) -> bool:
        if not self.ticking:
            return False
        return self.chain_ns(now_ns) % SECOND_NS * BASE_HZ >= (BASE_HZ - UIP_CYCLES) * SECOND_NS

    def _freeze_registers(self, now_ns: int, b: int) -> None:
        """Write the running time into the time bytes (before the clock stops or re-bases)."""
        if self.ticking:
            for reg, byte in time_registers(self.seconds(now_ns), b).items():
                self.cmos[reg] = byte

    def _rebase(self, now_ns: int) -> None:
        """The time of day is what the bytes say, from now, keeping the chain's phase."""
        whole = registers_time(self.cmos, self.cmos[REG_B])
        self._second_offset = whole - self.chain_ns(now_ns) // SECOND_NS

    def _hold_chain(self, now_ns: int, at_ns: int | None = None) -> None:
        self._anchor_chain_ns = self.chain_ns(now_ns) if at_ns is None else at_ns
        self._anchor_guest_ns = now_ns
        self._running = False
        self._flags_chain_ns = self._anchor_chain_ns

    def _run_chain(self, now_ns: int) -> None:
        self._anchor_guest_ns = now_ns
        self._running = True

    # --- flags and the interrupt --------------------------------------------------------

    def sync(self, now_ns: int) -> None:
        """Set the flags of every edge up to ``now_ns`` (raising IRQF if one is enabled)."""
        a, b = self._flags_chain_ns, self.chain_ns(now_ns)
        if b <= a:
            return
        self._flags_chain_ns = b
        new = 0
        cycles = period_cycles(self.cmos[REG_A] & A_RS)
        if cycles:
            edges = b * BASE_HZ // (cycles * SECOND_NS) - a * BASE_HZ // (cycles * SECOND_NS)
            if edges:
                new |= C_PF
                if self.cmos[REG_B] & B_PIE:  # one interrupt at most; the rest are lost
                    self.periodic_missed += edges - (0 if self.cmos[REG_C] & C_IRQF else 1)
        if self.ticking and b // SECOND_NS > a // SECOND_NS:
            new |= C_UF
            first = a // SECOND_NS + 1 + self._second_offset
            alarm = next_alarm_s(first - 1, self.cmos, self.cmos[REG_B])
            if alarm is not None and alarm <= b // SECOND_NS + self._second_offset:
                new |= C_AF
        self.cmos[REG_C] |= new
        self._update_irqf()

    def _update_irqf(self) -> None:
        """IRQF follows the flags under their enables; its rise is the interrupt."""
        c = self.cmos[REG_C]
        if c & self.cmos[REG_B] & IRQ_FLAGS:
            if not c & C_IRQF:
                self.cmos[REG_C] = c | C_IRQF
                self.raised += 1
                self.raise_irq()
        else:
            self.cmos[REG_C] = c & ~C_IRQF

    def next_irq_ns(self, now_ns: int) -> int | None:
        """Guest time of the next enabled edge after ``now_ns`` (None: none, or IRQF is
        pending: nothing can interrupt until the guest reads register C)."""
        b = self.cmos[REG_B]
        if self.cmos[REG_C] & C_IRQF or not self._running or not b & IRQ_FLAGS:
            return None
        chain = self.chain_ns(now_ns)
        due: list[int] = []
        cycles = period_cycles(self.cmos[REG_A] & A_RS)
        if b & B_PIE and cycles:
            k = chain * BASE_HZ // (cycles * SECOND_NS) + 1
            due.append(-(-k * cycles * SECOND_NS // BASE_HZ))
        if self.ticking and b & B_UIE:
            due.append((chain // SECOND_NS + 1) * SECOND_NS)
        if self.ticking and b & B_AIE:
            alarm = next_alarm_s(chain // SECOND_NS + self._second_offset, self.cmos, b)
            if alarm is not None:
                due.append((alarm - self._second_offset) * SECOND_NS)
        if not due:
            return None
        return self._anchor_guest_ns + min(due) - self._anchor_chain_ns

    # --- the ports ----------------------------------------------------------------------

    def write_index(self, value: int) -> None:
        self.index = value & 0x7F
        self.nmi_masked = bool(value & 0x80)

    def read_data(self, now_ns: int) -> int:
        reg = self.index
        self.sync(now_ns)
        if reg in TIME_REGS and self.ticking:
            return time_registers(self.seconds(now_ns), self.cmos[REG_B])[reg]
        if reg == REG_A:
            return self.cmos[REG_A] & ~A_UIP | (A_UIP if self.update_in_progress(now_ns) else 0)
        if reg == REG_C:
            value = self.cmos[REG_C]
            self.cmos[REG_C] = 0
            self.c_reads += 1
            return value
        return self.cmos[reg]

    def write_data(self, value: int, now_ns: int) -> None:
        reg, value = self.index, value & 0xFF
        self.sync(now_ns)
        if reg in TIME_REGS:
            self._freeze_registers(now_ns, self.cmos[REG_B])
            self.cmos[reg] = value
            if self.ticking:
                self._rebase(now_ns)
        elif reg == REG_A:
            self._write_a(value, now_ns)
        elif reg == REG_B:
            self._write_b(value, now_ns)
        elif reg not in (REG_C, REG_D):  # C and D are read-only
            self.cmos[reg] = value

    def _write_a(self, value: int, now_ns: int) -> None:
        old_dv, new_dv = self.cmos[REG_A] & A_DV, value & A_DV
        self.cmos[REG_A] = value & ~A_UIP  # UIP is read-only
        if new_dv >= 0x60:  # divider reset: the chain holds where it will start
            self._freeze_registers(now_ns, self.cmos[REG_B])
            self._hold_chain(now_ns, HALF_SECOND_NS)
        elif new_dv >= 0x40:  # test modes: the chain stops where it is
            self._freeze_registers(now_ns, self.cmos[REG_B])
            self._hold_chain(now_ns)
        elif old_dv >= 0x40:  # the chain runs again (from the half second after a reset)
            self._run_chain(now_ns)
            if self.ticking:
                self._rebase(now_ns)

    def _write_b(self, value: int, now_ns: int) -> None:
        was_set = bool(self.cmos[REG_B] & B_SET)
        if value & B_SET:
            value &= ~B_UIE  # the datasheet: SET clears UIE
            if not was_set:
                self._freeze_registers(now_ns, value)
        self.cmos[REG_B] = value
        if was_set and not value & B_SET and self._running:
            self._rebase(now_ns)
        self._update_irqf()  # a flag already set raises as its enable rises
