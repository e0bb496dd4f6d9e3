"""The hypercall port: dispatch, errno pass-through, the error-storm and flood limits,
and the 64-bit register to signed conversion."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickless.devices import hypercall
from tickless.devices.faults import GuestFault
from tickless.devices.hypercall import (
    MAX_CONSECUTIVE_ERRORS,
    HypercallPort,
    TokenBucket,
    as_signed,
)
from tickless.guest.abi import EINVAL, ENOSYS, Hypercall


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Replace the module's ``time`` (only there) so the token bucket is deterministic."""
    fake = FakeClock()
    monkeypatch.setattr(hypercall, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


def test_unknown_call_is_enosys(clock: FakeClock) -> None:
    """A call number nobody registered answers -ENOSYS, it does not crash the VMM."""
    port = HypercallPort()
    assert port.call(999, 0, 0) == -ENOSYS
    assert port.call(max(Hypercall) + 1, 0, 0) == -ENOSYS


def test_nop(clock: FakeClock) -> None:
    """NOP is registered by default and answers 0."""
    port = HypercallPort()
    assert port.call(Hypercall.NOP, 1, 2) == 0
    assert port.calls == 1


@pytest.mark.parametrize("value", [0, 1, 12345, -EINVAL, -1, (1 << 63) - 1])
def test_handler_result_and_args_pass_through(clock: FakeClock, value: int) -> None:
    """The handler gets (arg0, arg1) unchanged and its answer goes back unchanged."""
    port = HypercallPort()
    seen: list[tuple[int, int]] = []

    def handler(a0: int, a1: int) -> int:
        seen.append((a0, a1))
        return value

    port.register(Hypercall.SET_CLOCKEVENT, handler)
    assert port.call(int(Hypercall.SET_CLOCKEVENT), 7, 1 << 63) == value
    assert seen == [(7, 1 << 63)]


def test_error_storm_raises_and_success_resets(clock: FakeClock) -> None:
    """MAX_CONSECUTIVE_ERRORS failed calls in a row are a guest fault; one success in
    between starts the count again."""
    port = HypercallPort()
    for _ in range(MAX_CONSECUTIVE_ERRORS - 1):
        assert port.call(999, 0, 0) == -ENOSYS
    assert port.consecutive_errors == MAX_CONSECUTIVE_ERRORS - 1
    assert port.call(Hypercall.NOP, 0, 0) == 0
    assert port.consecutive_errors == 0
    for _ in range(MAX_CONSECUTIVE_ERRORS - 1):
        port.call(999, 0, 0)
    with pytest.raises(GuestFault, match="in a row"):
        port.call(999, 0, 0)


def test_flood_raises(clock: FakeClock) -> None:
    """A burst of more than max_rate_per_s immediate calls is a guest fault ('flood')."""
    port = HypercallPort(max_rate_per_s=10)
    burst = int(port.bucket.burst)
    for _ in range(burst):
        assert port.call(Hypercall.NOP, 0, 0) == 0
    with pytest.raises(GuestFault, match="flood"):
        port.call(Hypercall.NOP, 0, 0)


def test_flood_limit_refills(clock: FakeClock) -> None:
    """After the burst, tokens come back at the configured rate, never above the burst."""
    port = HypercallPort(max_rate_per_s=10)
    for _ in range(10):
        port.call(Hypercall.NOP, 0, 0)
    clock.t += 0.5  # 5 tokens
    for _ in range(5):
        assert port.call(Hypercall.NOP, 0, 0) == 0
    with pytest.raises(GuestFault, match="flood"):
        port.call(Hypercall.NOP, 0, 0)
    clock.t += 3600  # a long idle period refills only up to the burst
    for _ in range(10):
        port.call(Hypercall.NOP, 0, 0)
    with pytest.raises(GuestFault, match="flood"):
        port.call(Hypercall.NOP, 0, 0)


def test_token_bucket(clock: FakeClock) -> None:
    """The bucket alone: burst tokens at first, then rate_per_s per second."""
    bucket = TokenBucket(rate_per_s=4, burst=2)
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    clock.t += 0.25
    assert [bucket.take() for _ in range(2)] == [True, False]
    clock.t += 0.125  # half a token: not a whole one yet (binary-exact steps)
    assert bucket.take() is False
    clock.t += 0.125
    assert bucket.take() is True


@given(st.integers(-(1 << 63), (1 << 63) - 1))
def test_as_signed_round_trip(value: int) -> None:
    """A signed value put in a 64-bit register reads back as itself."""
    assert as_signed(value & 0xFFFF_FFFF_FFFF_FFFF) == value
    assert as_signed(value) == value


@pytest.mark.parametrize(
    ("raw", "signed"),
    [
        (0, 0),
        (0x7FFF_FFFF_FFFF_FFFF, (1 << 63) - 1),
        (0x8000_0000_0000_0000, -(1 << 63)),
        (0xFFFF_FFFF_FFFF_FFFF, -1),
        (0x1_0000_0000_0000_0005, 5),  # bits above 64 are not part of the register
    ],
)
def test_as_signed_values(raw: int, signed: int) -> None:
    """Two's complement at the 64-bit boundary."""
    assert as_signed(raw) == signed
