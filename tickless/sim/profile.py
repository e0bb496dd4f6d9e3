"""A platform profile: the latency model of one timer delivery path, and its JSON form.

A profile is a handful of physically meaningful components, each documented where it is
defined, so that a profile fitted at one setting can *predict* others:

* ``delivery``: the time from the host timer's expiry to the guest handler's timestamp,
  ``floor_ns + Gamma(shape, scale_ns)``, plus with probability ``stall_prob`` a gamma
  stall of mean ``stall_mean_ns`` and sd ``stall_sd_ns``. Never negative: never early.
* ``min_delta_ns``: the guest clock-event device's minimum programmable delta (Linux's
  ``min_delta_ns``; Xen's guest ``TIMER_SLOP``); shorter requests are rounded up to it.
* ``host_slop_ns``: the host timer queue's slop (Xen's ``timer_slop``).
* ``hold_back_ns``: the precise channel's window before its deadline in which other
  interrupts are held back (the paper's new timer); 0 for an ordinary channel.
* ``irq_exits`` and ``exit_cost_ns``: what the platform adds to every device interrupt the
  guest takes, as round trips through the VMM (injection, EOI, emulated register reads),
  each costing ``exit_cost_ns``. The interference model adds this to the bare handler.

On-disk format (``format`` = ``"tickless-sim-profile"``, ``version`` = 1), every key
required, unknown keys refused; times are nanoseconds::

    {"format": "tickless-sim-profile", "version": 1, "name": "KVM", "description": "...",
     "fitted_on": {"source": "...", "interval_ns": 50000, "load": "idle",
                   "mean_ns": 65310.0, "sd_ns": 1526.0},
     "delivery": {"floor_ns": 12258.0, "shape": 4.0, "scale_ns": 763.0,
                  "stall_prob": 0.0, "stall_mean_ns": 0.0, "stall_sd_ns": 0.0},
     "min_delta_ns": 100, "host_slop_ns": 0, "hold_back_ns": 0,
     "irq_exits": 5.0, "exit_cost_ns": 15310.0}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tickless.errors import InputError
from tickless.guest.abi import MAX_DELTA_NS, MIN_DELTA_NS
from tickless.jsonfields import StrictReader, read_json_file

__all__ = [
    "DEFAULT_JITTER_SHAPE",
    "PROFILE_FORMAT",
    "PROFILE_VERSION",
    "DeliveryModel",
    "FitSource",
    "PlatformProfile",
    "ProfileError",
    "SimInputError",
    "load_profile",
    "profile_from_json",
    "profile_to_json",
]

PROFILE_FORMAT = "tickless-sim-profile"
PROFILE_VERSION = 1
# The paper gives only mean and sd, not the shape of the jitter: a gamma of shape 4 is a
# moderately right-skewed wake-up jitter. It changes percentiles, never the mean or sd.
DEFAULT_JITTER_SHAPE = 4.0
# Latencies beyond median + this many robust sds are stalls, not jitter (a fitted run's tail).
STALL_CUTOFF_SDS = 8.0


class SimInputError(InputError):
    """Bad input to the simulator: a user error (and a ValueError, as callers expect)."""


class ProfileError(SimInputError):
    """A profile that cannot be used; the message is one line naming the problem."""


@dataclass(frozen=True)
class DeliveryModel:
    """Delivery latency = ``floor_ns`` (the fixed path: exit, VMM, injection, entry) plus a
    gamma-distributed jitter (wake-up, scheduling, cache state) plus, with probability
    ``stall_prob``, a gamma-distributed stall of mean ``stall_mean_ns`` and sd
    ``stall_sd_ns`` (the host preempted the timer's thread or vCPU: the rare long tail of a
    real host; none for the paper's platforms, whose mean and sd alone cannot tell a tail
    from jitter)."""

    floor_ns: float
    shape: float
    scale_ns: float
    stall_prob: float = 0.0
    stall_mean_ns: float = 0.0
    stall_sd_ns: float = 0.0

    def __post_init__(self) -> None:
        for key, value in (
            ("floor_ns", self.floor_ns),
            ("shape", self.shape),
            ("scale_ns", self.scale_ns),
            ("stall_prob", self.stall_prob),
            ("stall_mean_ns", self.stall_mean_ns),
            ("stall_sd_ns", self.stall_sd_ns),
        ):
            if not math.isfinite(value) or value < 0:
                raise ProfileError(f"delivery.{key} must be a finite number >= 0, got {value}")
        if self.shape == 0 and self.scale_ns > 0:
            raise ProfileError("delivery.shape must be > 0 when delivery.scale_ns is")
        if self.stall_prob > 1:
            raise ProfileError(f"delivery.stall_prob must be at most 1, got {self.stall_prob}")

    @property
    def mean_ns(self) -> float:
        return self.floor_ns + self.shape * self.scale_ns + self.stall_prob * self.stall_mean_ns

    @property
    def sd_ns(self) -> float:
        p, m, s = self.stall_prob, self.stall_mean_ns, self.stall_sd_ns
        return math.sqrt(self.shape * self.scale_ns**2 + p * (m * m + s * s) - (p * m) ** 2)

    @classmethod
    def from_moments(
        cls,
        mean_ns: float,
        sd_ns: float,
        *,
        floor_ns: float | None = None,
        shape: float = DEFAULT_JITTER_SHAPE,
    ) -> DeliveryModel:
        """The model (without stalls) with this mean and sd: with a known ``floor_ns`` (the
        fastest delivery observed) the shape follows; otherwise ``shape`` is kept, lowered
        only as far as needed to keep the floor at or above zero."""
        if not (math.isfinite(mean_ns) and math.isfinite(sd_ns)) or mean_ns < 0 or sd_ns < 0:
            raise ProfileError(
                f"delivery latency must have a mean and sd >= 0, got {mean_ns} and {sd_ns}"
            )
        if sd_ns == 0:
            return cls(floor_ns=mean_ns, shape=0.0, scale_ns=0.0)
        if floor_ns is not None:
            floor_ns = min(max(floor_ns, 0.0), mean_ns)
            excess = mean_ns - floor_ns
            if excess == 0:  # all the spread above a floor equal to the mean: impossible
                floor_ns, excess = 0.0, mean_ns
            shape = (excess / sd_ns) ** 2
        else:
            shape = min(shape, (mean_ns / sd_ns) ** 2)
        scale = sd_ns / math.sqrt(shape)
        return cls(floor_ns=max(0.0, mean_ns - shape * scale), shape=shape, scale_ns=scale)

    @classmethod
    def from_samples(cls, latencies_ns: npt.ArrayLike) -> DeliveryModel:
        """Fit measured latencies: the bulk (up to median + 8 robust sd, MAD-based) gives
        floor (its minimum) and jitter (its mean and sd); the rest are stalls, counted for
        ``stall_prob`` and measured from the bulk's mean for ``stall_mean_ns`` and
        ``stall_sd_ns``. The model's mean and sd equal the samples'."""
        x = np.asarray(latencies_ns, dtype=np.float64)
        if x.size < 2 or not np.all(np.isfinite(x)) or np.any(x < 0):
            raise ProfileError("need at least 2 finite, non-negative latencies to fit")
        median = float(np.median(x))
        robust_sd = max(1.4826 * float(np.median(np.abs(x - median))), 1000.0)
        cutoff = median + STALL_CUTOFF_SDS * robust_sd
        bulk, stalls = x[x <= cutoff], x[x > cutoff]
        model = cls.from_moments(float(bulk.mean()), float(bulk.std()), floor_ns=float(bulk.min()))
        if stalls.size == 0:
            return model
        return cls(
            floor_ns=model.floor_ns,
            shape=model.shape,
            scale_ns=model.scale_ns,
            stall_prob=stalls.size / x.size,
            stall_mean_ns=float(stalls.mean()) - float(bulk.mean()),
            # The stalled samples carry the bulk's jitter too: only the rest is the stall's.
            stall_sd_ns=math.sqrt(max(float(stalls.var()) - float(bulk.var()), 0.0)),
        )

    def sample(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.int64]:
        """``n`` latencies in whole ns, rounded up (a delivery is never shorter than the model)."""
        value: npt.NDArray[np.float64] = np.full(n, self.floor_ns, dtype=np.float64)
        if self.shape > 0:
            value += rng.gamma(self.shape, self.scale_ns, n)
        if self.stall_prob > 0 and self.stall_mean_ns > 0:
            hit = rng.random(n) < self.stall_prob
            if self.stall_sd_ns > 0:
                k = (self.stall_mean_ns / self.stall_sd_ns) ** 2
                value += hit * rng.gamma(k, self.stall_mean_ns / k, n)
            else:
                value += hit * self.stall_mean_ns
        return np.ceil(value).astype(np.int64)


@dataclass(frozen=True)
class FitSource:
    """What a profile was fitted on: one measured setting (mean and sd of its intervals)."""

    source: str
    interval_ns: int
    load: str
    mean_ns: float
    sd_ns: float


@dataclass(frozen=True)
class PlatformProfile:
    """One platform's timer delivery path; see the module docstring for each component."""

    name: str
    description: str
    fitted_on: FitSource
    delivery: DeliveryModel
    min_delta_ns: int = MIN_DELTA_NS
    host_slop_ns: int = 0
    hold_back_ns: int = 0
    irq_exits: float = 0.0
    exit_cost_ns: float = 0.0

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ProfileError("name must be a non-empty string")
        if not MIN_DELTA_NS <= self.min_delta_ns <= MAX_DELTA_NS:
            raise ProfileError(
                f"min_delta_ns must be between {MIN_DELTA_NS} and {MAX_DELTA_NS}, "
                f"got {self.min_delta_ns}"
            )
        for key, value in (
            ("host_slop_ns", self.host_slop_ns),
            ("hold_back_ns", self.hold_back_ns),
            ("irq_exits", self.irq_exits),
            ("exit_cost_ns", self.exit_cost_ns),
        ):
            if not math.isfinite(value) or value < 0:
                raise ProfileError(f"{key} must be a finite number >= 0, got {value}")

    @property
    def irq_overhead_ns(self) -> float:
        """What the platform adds to each device interrupt the guest handles."""
        return self.irq_exits * self.exit_cost_ns


def profile_to_json(profile: PlatformProfile) -> dict[str, Any]:
    """The on-disk shape documented in the module docstring."""
    fit, d = profile.fitted_on, profile.delivery
    return {
        "format": PROFILE_FORMAT,
        "version": PROFILE_VERSION,
        "name": profile.name,
        "description": profile.description,
        "fitted_on": {
            "source": fit.source,
            "interval_ns": fit.interval_ns,
            "load": fit.load,
            "mean_ns": fit.mean_ns,
            "sd_ns": fit.sd_ns,
        },
        "delivery": {
            "floor_ns": d.floor_ns,
            "shape": d.shape,
            "scale_ns": d.scale_ns,
            "stall_prob": d.stall_prob,
            "stall_mean_ns": d.stall_mean_ns,
            "stall_sd_ns": d.stall_sd_ns,
        },
        "min_delta_ns": profile.min_delta_ns,
        "host_slop_ns": profile.host_slop_ns,
        "hold_back_ns": profile.hold_back_ns,
        "irq_exits": profile.irq_exits,
        "exit_cost_ns": profile.exit_cost_ns,
    }


def _reader(obj: Any) -> StrictReader:
    return StrictReader(obj, ProfileError, format_name="the profile format")


def profile_from_json(data: Any) -> PlatformProfile:
    """Validate a profile object and rebuild it; ProfileError names the first bad key."""
    top = _reader(data)
    if top.get("format") != PROFILE_FORMAT:
        raise ProfileError(f"key 'format' must be {PROFILE_FORMAT!r}: not a tickless sim profile")
    version = top.get("version")
    if type(version) is not int or version != PROFILE_VERSION:
        raise ProfileError(
            f"key 'version' is {version!r}; this tool reads profile version {PROFILE_VERSION}"
        )
    fit = top.object_("fitted_on")
    fitted_on = FitSource(
        source=fit.str_("source"),
        interval_ns=fit.int_("interval_ns"),
        load=fit.str_("load"),
        mean_ns=fit.float_("mean_ns", minimum=0),
        sd_ns=fit.float_("sd_ns", minimum=0),
    )
    fit.check_no_extra()
    dl = top.object_("delivery")
    delivery = DeliveryModel(
        floor_ns=dl.float_("floor_ns", minimum=0),
        shape=dl.float_("shape", minimum=0),
        scale_ns=dl.float_("scale_ns", minimum=0),
        stall_prob=dl.float_("stall_prob", minimum=0),
        stall_mean_ns=dl.float_("stall_mean_ns", minimum=0),
        stall_sd_ns=dl.float_("stall_sd_ns", minimum=0),
    )
    dl.check_no_extra()
    profile = PlatformProfile(
        name=top.str_("name"),
        description=top.str_("description"),
        fitted_on=fitted_on,
        delivery=delivery,
        min_delta_ns=top.int_("min_delta_ns"),
        host_slop_ns=top.int_("host_slop_ns"),
        hold_back_ns=top.int_("hold_back_ns"),
        irq_exits=top.float_("irq_exits", minimum=0),
        exit_cost_ns=top.float_("exit_cost_ns", minimum=0),
    )
    top.check_no_extra()
    return profile


def load_profile(path: Path) -> PlatformProfile:
    """Read a profile JSON file; every failure is a ProfileError of one line naming the file."""
    path = Path(path)
    data = read_json_file(path, ProfileError, "no such profile file")
    try:
        return profile_from_json(data)
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None
