"""The interrupt-interference model: device interrupts that delay the timer's.

The paper's heavy-IO experiment pinned the disk interrupt to the timer's CPU: 1733.35
interrupts/s against 11.52 when idle (its Fig 7). Since Linux 2.6.35 interrupt handlers do
not nest, so a timer interrupt that arrives while a disk handler runs waits for it to end.

* Disk interrupts arrive as a Poisson process at ``PAPER_IO_RATE_PER_S`` on the timer's CPU.
* Each one occupies the CPU, non-preemptibly, for the bare handler cost (``HandlerCost``, a
  gamma distribution: one global model for every platform) plus what the platform adds per
  interrupt (``PlatformProfile.irq_overhead_ns``: its round trips through the VMM).
* Handlers queue behind each other; a timer interrupt waits for the CPU to be free and goes
  before queued device interrupts (timer interrupts have the higher vector).
* A precise channel holds device interrupts back near its deadline (``HoldBackWindow``,
  applied by the simulator); the held ones run right after the timer's handler.

The idle rows are simulated without disk interrupts: the paper's 11.52/s background is
part of what each platform's idle fit already absorbed.

``interference_moments`` is the analytic first-order result for the relative method (one
disk interrupt per timer interval at most, no queueing); the simulator needs no such
approximation; the analytic form is only the inner step of calibrating the bare handler
cost on one row (``tickless.sim.table1.calibrate_bare_handler``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import optimize, special
from scipy import stats as sps

from tickless.axes import Load
from tickless.results.paper import PAPER_IO_RATE_PER_S
from tickless.sim.profile import SimInputError

__all__ = [
    "LOAD_IRQ_RATE_PER_S",
    "HandlerCost",
    "IrqSource",
    "VcpuBusy",
    "fit_handler_cost",
    "interference_moments",
    "irq_rate_for_load",
]

# The paper's idle background (PAPER_IDLE_IRQ_RATE_PER_S) is absorbed in each idle fit, so
# the simulated idle load has no device interrupts.
LOAD_IRQ_RATE_PER_S: dict[str, float] = {Load.IDLE: 0.0, Load.IO: PAPER_IO_RATE_PER_S}


def irq_rate_for_load(load: str) -> float:
    """Device interrupts per second on the timer's CPU for a named load."""
    try:
        return LOAD_IRQ_RATE_PER_S[load]
    except KeyError:
        known = ", ".join(LOAD_IRQ_RATE_PER_S)
        raise SimInputError(
            f"the simulator models load {known} only, not {load!r} "
            "(the paper found CPU load has little effect on timer precision)"
        ) from None


@dataclass(frozen=True)
class HandlerCost:
    """Non-preemptible CPU time of one bare disk interrupt: Gamma with this mean and shape."""

    mean_ns: float
    shape: float

    def __post_init__(self) -> None:
        if not (self.mean_ns > 0 and self.shape > 0):
            raise ValueError("handler cost needs a positive mean and shape")

    @property
    def scale_ns(self) -> float:
        return self.mean_ns / self.shape

    @property
    def sd_ns(self) -> float:
        return self.mean_ns / math.sqrt(self.shape)

    def quantile_ns(self, q: float) -> float:
        return float(sps.gamma.ppf(q, self.shape, scale=self.scale_ns))

    def sample(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
        """By inverse CDF, so that with one seed the costs move smoothly with the
        parameters (the calibration relies on it)."""
        return np.asarray(sps.gamma.ppf(rng.random(n), self.shape, scale=self.scale_ns))


def interference_moments(
    handler: HandlerCost, overhead_ns: float, step_ns: float, rate_per_s: float
) -> tuple[float, float]:
    """Mean and variance (ns, ns²) that disk interrupts add to one relative-method interval.

    A disk interrupt with cost ``S`` arriving at a uniform phase of a timer interval of
    length ``step_ns`` (d plus the delivery latency) delays the timer by ``S - (time left to
    the deadline)`` when positive. Averaging over the phase and ``S`` (with the platform's
    deterministic ``overhead_ns`` added) at rate λ gives the mean ``λ E[S² - (S-step)₊²] / 2``
    and second moment ``λ E[S³ - (S-step)₊³] / 3``: first order in λ·step, no queueing.
    """
    lam = rate_per_s / 1e9
    k, theta = handler.shape, handler.scale_ns
    shift = step_ns - overhead_ns  # S - step = G - shift, G ~ Gamma(k, theta)
    x = max(shift, 0.0) / theta

    def partial(j: int, upper: bool) -> float:  # E[G^j], or E[G^j; G > shift] if upper
        raw = theta**j * math.exp(special.gammaln(k + j) - special.gammaln(k))
        return raw * float(special.gammaincc(k + j, x)) if upper else raw

    def tail(n: int) -> float:  # E[(G - shift)₊^n]
        return sum(math.comb(n, j) * (-shift) ** (n - j) * partial(j, True) for j in range(n + 1))

    def raw(n: int) -> float:  # E[S^n], S = G + overhead
        return sum(
            math.comb(n, j) * overhead_ns ** (n - j) * partial(j, False) for j in range(n + 1)
        )

    m2 = (raw(2) - tail(2)) / 2
    m3 = (raw(3) - tail(3)) / 3
    mean = lam * m2
    return mean, lam * m3 - mean * mean


def fit_handler_cost(
    *, step_ns: float, extra_mean_ns: float, extra_var_ns2: float, rate_per_s: float
) -> HandlerCost:
    """The bare handler cost whose analytic interference adds this mean and variance to
    intervals of ``step_ns`` on a platform that adds nothing per interrupt (bare Linux).

    Solved with ``scipy.optimize.least_squares`` (log-parameters, relative residuals).
    """
    if extra_mean_ns <= 0 or extra_var_ns2 <= 0:
        raise ValueError("the loaded row shows no interference to fit a handler cost on")

    def residuals(x: npt.NDArray[np.float64]) -> list[float]:
        handler = HandlerCost(mean_ns=math.exp(x[0]), shape=math.exp(x[1]))
        mean, var = interference_moments(handler, 0.0, step_ns, rate_per_s)
        return [mean / extra_mean_ns - 1.0, var / extra_var_ns2 - 1.0]

    # Start from a fixed handler of the cost the mean alone implies (λS²/2 = mean).
    start = math.sqrt(2 * extra_mean_ns / (rate_per_s / 1e9))
    result = optimize.least_squares(residuals, x0=[math.log(start), math.log(4.0)])
    if not result.success or max(abs(r) for r in result.fun) > 1e-6:
        raise ValueError(f"handler cost fit did not converge: {result.message}")
    return HandlerCost(mean_ns=math.exp(result.x[0]), shape=math.exp(result.x[1]))


class IrqSource:
    """Poisson device interrupts, each with its CPU cost (bare handler + platform overhead).

    Draws in chunks from its own random stream, so adding interrupts never changes the
    timer's latency draws (common random numbers across platforms and loads).
    """

    CHUNK = 4096

    def __init__(
        self,
        rate_per_s: float,
        handler: HandlerCost,
        overhead_ns: float,
        rng: np.random.Generator,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.handler = handler
        self.overhead_ns = overhead_ns
        self.rng = rng
        self._gaps: list[int] = []
        self._costs: list[int] = []
        self._i = 0
        self.next_at: int | None = None
        self.raised = 0
        if rate_per_s > 0:
            self._refill()
            self.next_at = self._gaps[0]

    def _refill(self) -> None:
        gaps = self.rng.exponential(1e9 / self.rate_per_s, self.CHUNK)
        costs = self.handler.sample(self.rng, self.CHUNK) + self.overhead_ns
        self._gaps = np.ceil(gaps).astype(np.int64).tolist()
        self._costs = np.ceil(costs).astype(np.int64).tolist()
        self._i = 0

    def pop(self) -> int:
        """Take the interrupt at ``next_at``; returns its CPU cost (ns) and draws the next."""
        assert self.next_at is not None
        cost = self._costs[self._i]
        self._i += 1
        self.raised += 1
        if self._i == len(self._gaps):
            self._refill()
        self.next_at += self._gaps[self._i]
        return cost


@dataclass
class VcpuBusy:
    """The guest CPU as handlers see it: busy, non-preemptibly, until ``busy_until``."""

    busy_until: int = 0
    handlers: int = 0
    busy_ns: int = 0

    def run(self, at: int, cost_ns: int) -> int:
        """Run a handler raised at ``at`` as soon as the CPU is free; returns its end."""
        start = max(at, self.busy_until)
        self.busy_until = start + cost_ns
        self.handlers += 1
        self.busy_ns += cost_ns
        return self.busy_until
