"""One 8254 counter as a pure function of guest time (the arithmetic of ``pit.py``).

The input clock has its falling edges at guest times ``ceil(k * 1e9 / F)`` ns (``F`` =
1,193,182 Hz, counted from the guest clock's zero): ``edge_index(t)`` edges have passed at
``t``. A count written at ``t`` is loaded at the next edge, ``L = edge_index(t) + 1``, and
the counter stands at ``N - j`` ``j`` edges later: nothing is accumulated, so no rounding
drifts. The datasheet's timings (Intel 8254, modes 0-5), with ``j = edge - L``:

- mode 0: OUT low from the control word; high at ``j = N``: N+1 clock periods after the
  write at most, N at least (the datasheet's "N+1 CLK pulses" counts the partial one);
- mode 1: triggered by a rising gate (channel 2 only: 0 and 1 have their gates tied high,
  so they never trigger); OUT low for ``j`` in ``[0, N)``;
- mode 2: OUT low for one clock at ``j = N - 1 (mod N)``, rising at every ``j = m * N``;
- mode 3: OUT high for ``ceil(N / 2)`` clocks, low for ``floor(N / 2)``, rising at
  ``m * N``; the count reads ``N - (2j mod N)`` (QEMU's arithmetic; odd counts are
  approximated the same way);
- mode 4: OUT low for one clock at ``j = N``; mode 5: the same from a gate trigger.

A count of 0 means 65536 (10000 in BCD). A BCD count digit above 9 (which the datasheet
leaves undefined) counts as its binary value. Modes 6 and 7 are 2 and 3, as on the chip.
A count rewritten in modes 2 and 3 takes effect at the next edge (QEMU's choice), not at the
end of the current period as on the chip.
"""

from __future__ import annotations

from tickless.guest.abi import pit_edge_ns as edge_time_ns
from tickless.guest.abi import pit_edges as edge_index

__all__ = ["Channel", "bcd_decode", "bcd_encode", "edge_index", "edge_time_ns"]

ACCESS_LATCH, ACCESS_LO, ACCESS_HI, ACCESS_WORD = 0, 1, 2, 3


def bcd_decode(raw: int) -> int:
    return sum(((raw >> (4 * i)) & 0xF) * 10**i for i in range(4))


def bcd_encode(value: int) -> int:
    return sum(((value // 10**i) % 10) << (4 * i) for i in range(4))


class Channel:
    """One counter: its programming, its load edge, and what the guest reads."""

    def __init__(self, gate: bool) -> None:
        self.gate = gate
        self.access = ACCESS_WORD  # the power-on state is undefined: lo/hi, mode 0, binary
        self.mode_bits = 0
        self.bcd = False
        self.count = 0x10000  # N, 1..65536 (1..10000 in BCD)
        self.has_count = False  # a count was written since the control word
        self.load_edge: int | None = None  # L: counting (or triggered) from this edge
        self.held: int | None = None  # counting stopped at this j (gate low, half a write)
        self.null_until: int | None = None  # null count clears at this edge (None: never)
        self.write_lo: int | None = None  # lo/hi access: the low byte, waiting for the high
        self.read_hi = False  # lo/hi access: the next unlatched read is the high byte
        self.latched: list[int] = []  # latched count bytes, read first-in first-out
        self.status: int | None = None  # latched status byte, read before the count

    @property
    def mode(self) -> int:
        return self.mode_bits & 3 if self.mode_bits >= 6 else self.mode_bits

    @property
    def modulus(self) -> int:
        return 10_000 if self.bcd else 0x10000

    @property
    def periodic(self) -> bool:
        return self.mode in (2, 3) and self.load_edge is not None and self.held is None

    # --- programming -----------------------------------------------------------------------

    def program(self, access: int, mode_bits: int, bcd: bool) -> None:
        """A control word: the counter stops until a count is written (OUT low in mode 0,
        high otherwise); latches and flip-flops are cleared."""
        self.access, self.mode_bits, self.bcd = access, mode_bits, bcd
        self.has_count = False
        self.load_edge = self.held = self.null_until = self.write_lo = None
        self.read_hi = False
        self.latched.clear()
        self.status = None

    def write(self, value: int, now_ns: int) -> bool:
        """A byte written to the counter's port; True when its counting changed."""
        if self.access == ACCESS_LO:
            return self._load(value, now_ns)
        if self.access == ACCESS_HI:
            return self._load(value << 8, now_ns)
        if self.write_lo is None:
            self.write_lo = value
            if self.mode == 0 and self.load_edge is not None and self.held is None:
                self.held = self._position(now_ns)  # "writing the first byte stops counting"
                return True
            return False
        raw, self.write_lo = self.write_lo | value << 8, None
        return self._load(raw, now_ns)

    def _load(self, raw: int, now_ns: int) -> bool:
        count = bcd_decode(raw) if self.bcd else raw
        self.count = count or self.modulus
        self.has_count = True
        edge = edge_index(now_ns) + 1
        if self.mode in (1, 5):  # the count waits for a gate trigger
            return False
        self.load_edge, self.null_until = edge, edge
        self.held = None if self.gate else 0
        return True

    def set_gate(self, level: bool, now_ns: int) -> bool | None:
        """Channel 2's gate (port 0x61 bit 0); True when its counting changed."""
        if level == self.gate:
            return None
        self.gate = level
        edge = edge_index(now_ns) + 1
        mode = self.mode
        if not level:  # counting stops (modes 0, 2, 3, 4); modes 1 and 5 go on
            if mode in (1, 5) or self.load_edge is None or self.held is not None:
                return None
            self.held = self._position(now_ns)
            return True
        if not self.has_count:
            return None
        if mode in (0, 4):
            if self.held is None or self.load_edge is None:
                return None
            self.load_edge, self.held = edge - self.held, None
        else:  # a rising gate reloads the count (2, 3) or triggers it (1, 5)
            self.load_edge, self.held = edge, None
        if self.null_until is None or self.null_until > edge:
            self.null_until = edge
        return True

    # --- what the guest reads --------------------------------------------------------------

    def _position(self, now_ns: int) -> int:
        """j: edges since the load edge (0 before it; frozen while held)."""
        if self.held is not None:
            return self.held
        assert self.load_edge is not None
        return max(0, edge_index(now_ns) - self.load_edge)

    def value(self, now_ns: int) -> int:
        """The counting element's value (binary)."""
        n = self.count
        if self.load_edge is None:
            return n % self.modulus
        j, mode = self._position(now_ns), self.mode
        if mode == 2:
            return (n - j % n) % self.modulus
        if mode == 3:
            return (n - (2 * j) % n) % self.modulus
        return (n - j) % self.modulus

    def out(self, now_ns: int) -> bool:
        """The OUT pin's level."""
        mode = self.mode
        if self.load_edge is None:
            return mode != 0
        started = self.held is not None or edge_index(now_ns) >= self.load_edge
        j, n = self._position(now_ns), self.count
        if mode == 0:
            return started and j >= n
        if mode == 1:
            return not (started and j < n)
        if self.held is not None and mode in (2, 3):
            return True  # gate low: OUT goes high at once
        if mode == 2:
            return not (started and j % n == n - 1)
        if mode == 3:
            return not started or j % n < (n + 1) // 2
        return not (started and j == n)  # 4, 5

    def next_rising_edge(self, now_ns: int) -> int | None:
        """The edge index of OUT's next rising edge after now, counting undisturbed."""
        if self.load_edge is None or self.held is not None:
            return None
        mode, n, edge = self.mode, self.count, edge_index(now_ns)
        if mode in (2, 3):
            return self.load_edge + n * max(1, (edge - self.load_edge) // n + 1)
        rise = self.load_edge + (n if mode in (0, 1) else n + 1)
        return rise if rise > edge else None

    def _encoded(self, now_ns: int) -> int:
        value = self.value(now_ns)
        return bcd_encode(value % 10_000) if self.bcd else value

    def latch(self, now_ns: int) -> None:
        """The counter latch command: the count is held until read (a second latch before
        that is ignored, as on the chip)."""
        if self.latched:
            return
        value = self._encoded(now_ns)
        lo, hi = value & 0xFF, value >> 8
        self.latched = {ACCESS_LO: [lo], ACCESS_HI: [hi]}.get(self.access, [lo, hi])

    def read_back(self, count: bool, status: bool, now_ns: int) -> None:
        if status and self.status is None:
            null = self.null_until is None or edge_index(now_ns) < self.null_until
            self.status = (
                self.out(now_ns) << 7
                | null << 6
                | self.access << 4
                | self.mode_bits << 1
                | int(self.bcd)
            )
        if count:
            self.latch(now_ns)

    def read(self, now_ns: int) -> int:
        if self.status is not None:
            status, self.status = self.status, None
            return status
        if self.latched:
            return self.latched.pop(0)
        value = self._encoded(now_ns)
        if self.access == ACCESS_LO:
            return value & 0xFF
        if self.access == ACCESS_HI:
            return value >> 8
        self.read_hi = not self.read_hi
        return value >> 8 if not self.read_hi else value & 0xFF
