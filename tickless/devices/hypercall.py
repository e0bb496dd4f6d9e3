"""The hypercall port: the guest's way to ask the host for services.

``vmcall`` hangs KVM_RUN on these machines, so calls go through port I/O (ABI in
``tickless.guest.abi``). The handler decodes the call, checks every argument, enforces a
rate limit (a flooding guest would otherwise hog the host process's GIL), and answers
in ``rax``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from tickless.devices.bus import BusDevice
from tickless.devices.faults import GuestFault
from tickless.guest.abi import ENOSYS, HYPERCALL_PORT, Hypercall
from tickless.kvm.vcpu import Vcpu

HypercallHandler = Callable[[int, int], int]  # (arg0, arg1) -> rax


@dataclass
class TokenBucket:
    """At most ``rate_per_s`` on average, with bursts up to ``burst``."""

    rate_per_s: float
    burst: float
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate_per_s)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


DEFAULT_MAX_RATE_PER_S = 50_000.0
MAX_CONSECUTIVE_ERRORS = 10_000
UNKNOWN_CALL = -1  # the key every unregistered call number shares in ``rejected``


class HypercallPort(BusDevice):
    """The device on ``HYPERCALL_PORT``: dispatches calls by number to the handlers the
    other devices registered (each device registers its own calls)."""

    name = "hypercall port"
    port = HYPERCALL_PORT

    def __init__(self, max_rate_per_s: float = DEFAULT_MAX_RATE_PER_S) -> None:
        self.handlers: dict[int, HypercallHandler] = {}
        self.bucket = TokenBucket(max_rate_per_s, burst=max_rate_per_s)
        self.calls = 0
        self.consecutive_errors = 0
        # (call, negative result) -> how often: what the guest got wrong (the fuzzer's
        # count). Unknown numbers share one key, so a guest cannot make it grow.
        self.rejected: Counter[tuple[int, int]] = Counter()
        self.register(Hypercall.NOP, lambda a0, a1: 0)

    def register(self, number: Hypercall, handler: HypercallHandler) -> None:
        if int(number) in self.handlers:
            raise ValueError(f"hypercall {number.name} is registered twice")
        self.handlers[int(number)] = handler

    def io_write(self, port: int, data: bytes, vcpu: Vcpu) -> None:
        """``out %eax`` to the port: the call number; arguments in rdi, rsi; result in rax."""
        if len(data) != 4:
            raise GuestFault(f"hypercall with a {len(data)}-byte out: the ABI is a 32-bit out")
        regs = vcpu.exit_regs()
        result = self.call(int.from_bytes(data, "little"), int(regs.rdi), int(regs.rsi))
        vcpu.set_return_value(result)

    def call(self, number: int, arg0: int, arg1: int) -> int:
        self.calls += 1
        if not self.bucket.take():
            raise GuestFault(
                f"hypercall flood: more than {self.bucket.rate_per_s:,.0f} calls/s "
                f"(call {number}, {self.calls:,} calls so far)"
            )
        handler = self.handlers.get(number)
        result = -ENOSYS if handler is None else handler(arg0, arg1)
        if result < 0:
            self.rejected[number if handler is not None else UNKNOWN_CALL, result] += 1
            self.consecutive_errors += 1
            if self.consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
                raise GuestFault(
                    f"guest ignored {self.consecutive_errors:,} hypercall errors in a row "
                    f"(last: call {_name(number)} -> {result})"
                )
        else:
            self.consecutive_errors = 0
        return result


def _name(number: int) -> str:
    try:
        return Hypercall(number).name
    except ValueError:
        return str(number)


def as_signed(value: int) -> int:
    """A 64-bit register as a signed integer."""
    value &= 0xFFFF_FFFF_FFFF_FFFF
    return value - (1 << 64) if value >> 63 else value
