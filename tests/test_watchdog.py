"""The watchdog stops a guest that burns its vCPU without progress, and only that one: an
idle guest halted for long, or a busy one that makes progress, is left alone."""

from __future__ import annotations

import pytest

from tickless.devices.config import GuestConfig
from tickless.guest.abi import Scenario
from tickless.vmm.host import VmmHost
from tickless.vmm.watchdog import Watchdog

SECOND_NS = 1_000_000_000


class FakeMachine:
    def __init__(self, name: str) -> None:
        self.name = name
        self.running = True
        self.counter = 0
        self.cpu_ns = 0
        self.reason: str | None = None
        self.watchdog_s: float | None = None

    def activity(self) -> bytes:
        return self.counter.to_bytes(8, "little")

    def vcpu_busy_ns(self) -> int:
        return self.cpu_ns

    def request_stop(self, reason: str) -> None:
        self.reason, self.running = reason, False


def _run(
    machines: list[FakeMachine], steps: int, step_s: float, work: dict[str, tuple[float, int]]
) -> Watchdog:
    """Advance a fake clock; ``work`` says per machine (CPU fraction, counter increments)."""
    now = [0.0]
    dog = Watchdog(lambda: machines, bound_s=1.0, clock=lambda: now[0])
    for _ in range(steps):
        dog.check()
        now[0] += step_s
        for m in machines:
            busy, progress = work[m.name]
            m.cpu_ns += int(busy * step_s * 1e9)
            m.counter += progress
    dog.check()
    return dog


def test_only_the_runaway_is_stopped() -> None:
    runaway, idle, busy = FakeMachine("runaway"), FakeMachine("idle"), FakeMachine("busy")
    work = {"runaway": (1.0, 0), "idle": (0.0, 0), "busy": (1.0, 1)}
    dog = _run([runaway, idle, busy], steps=6, step_s=0.25, work=work)
    assert runaway.reason is not None and runaway.reason.startswith("watchdog: no progress")
    assert idle.reason is None  # halted: no CPU, no progress, and that is fine
    assert busy.reason is None  # computing, but the host sees it move
    assert dog.stopped == [f"runaway: {runaway.reason}"]


def test_stopped_within_the_bound_plus_one_period() -> None:
    runaway = FakeMachine("runaway")
    now = [0.0]
    dog = Watchdog(lambda: [runaway], bound_s=1.0, clock=lambda: now[0])
    while runaway.reason is None:
        dog.check()
        now[0] += 0.25
        runaway.cpu_ns += 250_000_000
        assert now[0] <= 1.0 + 0.25 + 0.25, "not stopped in time"


def test_a_half_busy_spinner_at_the_threshold() -> None:
    """Below half a CPU it counts as mostly halted (a guest polling now and then)."""
    lazy = FakeMachine("lazy")
    _run([lazy], steps=12, step_s=0.25, work={"lazy": (0.3, 0)})
    assert lazy.reason is None


@pytest.mark.kvm
@pytest.mark.parametrize("scenario", [Scenario.RUNAWAY_RING3, Scenario.RUNAWAY_RING0])
def test_real_runaway_guests_are_stopped_and_the_host_goes_on(scenario: Scenario) -> None:
    """A real runaway is stopped by the watchdog (how soon is the fake clock's business,
    above: here the wait is only a generous bound on a failing test), the idle guest
    beside it is not, and the host boots and runs another guest after."""
    with VmmHost(watchdog_s=1.0) as host:
        idle = host.boot(GuestConfig(scenario=Scenario.IDLE, duration_ns=4 * SECOND_NS))
        idle.start()
        runaway = host.boot(GuestConfig(scenario=scenario))
        runaway.start()
        assert runaway.join(120), "the runaway guest was not stopped"
        assert runaway.outcome.reason.startswith("watchdog: no progress")
        assert idle.join(120) and idle.outcome.ok, idle.outcome.reason  # halted, not runaway
        good = host.boot(GuestConfig(interval_ns=100_000, count=50))
        good.start()
        assert good.join(120) and good.outcome.ok, good.outcome.reason


def test_interrupt_counts_are_no_progress_but_the_workload_is() -> None:
    """A ring-3 loop taking a periodic chip's interrupts moves only its handlers' counts:
    the activity the watchdog compares stays the same; a count its workload writes, an exit
    or a hypercall changes it."""
    from tickless.guest import abi
    from tickless.vmm.vcpu_run import guest_activity

    shared = abi.Shared()
    before = guest_activity(10, 3, shared)
    shared.irq_count, shared.lapic_irq_count, shared.io_irq_count = 500, 7, 9
    shared.msg_irq_count, shared.host_fired = 2, 400
    assert guest_activity(10, 3, shared) == before
    shared.events_recorded = 1
    assert guest_activity(10, 3, shared) != before
    assert guest_activity(11, 3, abi.Shared()) != guest_activity(10, 3, abi.Shared())
