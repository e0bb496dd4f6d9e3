"""The guest's paravirtual clock and its mapping to host clock ticks.

The guest reads ``ns = system_time + scale(tsc - tsc_timestamp)`` from a pvclock page
(the kvmclock ABI). The host must do the same integer arithmetic, bit for bit, so that a
deadline it computes on the guest's clock is never early by the guest's own reading.
Time dilation (guest time running slower or faster than wall time) is a different scale:
this host has no TSC scaling, so it goes through the pvclock page.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

NSEC_PER_SEC = 1_000_000_000
_U32 = 0xFFFF_FFFF


@dataclass(frozen=True)
class PvclockScale:
    """pvclock's fixed-point scale: ``((delta << shift) * mul) >> 32`` (shift may be < 0).
    ``mul`` 0 is a stopped clock (a frozen guest: every reading is ``system_time``)."""

    mul: int
    shift: int

    def __post_init__(self) -> None:
        if not (0 <= self.mul <= _U32 and -32 < self.shift < 32):
            raise ValueError(f"pvclock scale out of range: mul={self.mul} shift={self.shift}")

    def apply(self, delta: int) -> int:
        """pvclock_scale_delta() for a non-negative delta."""
        delta = delta >> -self.shift if self.shift < 0 else delta << self.shift
        return (delta * self.mul) >> 32

    def inverse(self, want: int) -> int:
        """The smallest non-negative delta with ``apply(delta) >= want``."""
        if want <= 0:
            return 0
        if self.mul == 0:
            raise ValueError("a stopped clock never reaches a later reading")
        guess = (want << 32) // self.mul
        guess = guess >> self.shift if self.shift >= 0 else guess << -self.shift
        slack = (1 << max(0, -self.shift)) + 4
        lo, hi = max(0, guess - slack), guess + slack
        while self.apply(hi) < want:
            hi = 2 * hi + 1
        while lo > 0 and self.apply(lo) >= want:
            lo //= 2
        if self.apply(lo) >= want:
            return lo
        while hi - lo > 1:  # apply(lo) < want <= apply(hi)
            mid = (lo + hi) // 2
            if self.apply(mid) >= want:
                hi = mid
            else:
                lo = mid
        return hi


def time_scale(base_hz: int, scaled_hz: int) -> PvclockScale:
    """kvm_get_time_scale(): the pvclock scale turning base_hz ticks into scaled_hz ticks."""
    if base_hz <= 0 or scaled_hz <= 0:
        raise ValueError("clock rates must be positive")
    tps64, scaled64, shift = base_hz, scaled_hz, 0
    while tps64 > scaled64 * 2 or tps64 > _U32:
        tps64 >>= 1
        shift -= 1
    tps32 = tps64
    while tps32 <= scaled64 or scaled64 > _U32:
        if scaled64 > _U32 or tps32 & 0x8000_0000:
            scaled64 >>= 1
        else:
            tps32 <<= 1
        shift += 1
    return PvclockScale(mul=(scaled64 << 32) // tps32, shift=shift)


@dataclass(frozen=True)
class GuestClock:
    """A guest's PV clock: guest nanoseconds as a function of host clock ticks (the TSC).

    ``rate`` is guest seconds per host second: 1 is wall time, 1/2 a guest living at half
    speed, 2 one living at double speed, 0 a frozen guest (its clock stands still).
    """

    tick_hz: int
    tsc_timestamp: int
    system_time_ns: int
    scale: PvclockScale
    rate: Fraction

    @classmethod
    def create(
        cls, tick_hz: int, now_ticks: int, system_time_ns: int = 0, rate: Fraction | int = 1
    ) -> GuestClock:
        rate = Fraction(rate)
        if rate < 0:
            raise ValueError(f"time dilation rate must not be negative, not {rate}")
        if rate == 0:
            return cls(tick_hz, now_ticks, system_time_ns, PvclockScale(0, 0), rate)
        scaled = NSEC_PER_SEC * rate
        scale = time_scale(tick_hz * scaled.denominator, scaled.numerator)
        return cls(tick_hz, now_ticks, system_time_ns, scale, rate)

    @property
    def frozen(self) -> bool:
        """The clock stands still: no later reading is ever reached."""
        return self.rate == 0

    def ns_at(self, ticks: int) -> int:
        """The guest's clock reading at host tick ``ticks`` (exactly what the guest computes)."""
        if ticks < self.tsc_timestamp:
            raise ValueError("pvclock is read only after its tsc_timestamp")
        return self.system_time_ns + self.scale.apply(ticks - self.tsc_timestamp)

    def ticks_at_or_after(self, ns: int) -> int:
        """The first host tick at which the guest's clock reads ``ns`` or later (a frozen
        clock never reads later than it does: ValueError; check ``frozen`` first)."""
        if ns <= self.system_time_ns:
            return self.tsc_timestamp
        return self.tsc_timestamp + self.scale.inverse(ns - self.system_time_ns)

    def delta_ticks_at_least(self, delta_ns: int) -> int:
        """The fewest ticks whose scaled length is at least ``delta_ns`` (never short)."""
        return self.scale.inverse(delta_ns)
