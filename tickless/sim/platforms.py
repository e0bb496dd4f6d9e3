"""The paper's seven platforms as profiles, and profiles fitted from our own runs.

What is fitted, and on what (nothing else in Table 1 is used):

* Each platform's delivery latency (mean and sd) on its **idle 50 µs row** only.
* The global bare disk-handler cost (mean and shape) on **Linux, heavy IO, 50 µs** only.

Everything else is fixed beforehand by the mechanism it stands for (``MECHANISMS``), and
the remaining 48 rows of Table 1 are predictions (``tickless sim table1``).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from tickless.axes import Load, TickMode, TimerPath
from tickless.guest.abi import MIN_DELTA_NS
from tickless.results.paper import PLATFORMS, PaperRow, paper_rows
from tickless.results.schema import ResultRecord
from tickless.sim.interference import HandlerCost
from tickless.sim.profile import (
    DeliveryModel,
    FitSource,
    PlatformProfile,
    ProfileError,
    load_profile,
)

__all__ = [
    "EMULATED_DISK_EXITS",
    "FIT_INTERVAL_US",
    "MECHANISMS",
    "Mechanism",
    "bare_disk_handler",
    "builtin_profiles",
    "fit_from_record",
    "handler_fit_row",
    "handler_to_json",
    "hold_back_for",
    "is_fitted_row",
    "paper_profile",
    "resolve_platform",
]

FIT_INTERVAL_US = 50  # the one interval each platform is fitted on (idle)
HANDLER_FIT_PLATFORM = "Linux"  # the one heavy-IO row the bare handler cost is fitted on
PAPER_SOURCE = "Adamczyk & Chydzinski 2015, Table 1"
HANDLER_DATA = "data/bare_disk_handler.json"
HANDLER_FORMAT = "tickless-sim-handler"
# Round trips through the VMM per disk interrupt on an emulated disk controller: Linux 3.17's
# ata_bmdma_interrupt reads the BMDMA status, reads the ATA status, clears the BMDMA status
# and stops the engine (4 port accesses, each trapped), and the guest's EOI traps too.
EMULATED_DISK_EXITS = 5.0
# Xen's PV disk (blkfront) has no registers to trap on: one event-channel upcall per interrupt.
XEN_PV_DISK_EXITS = 1.0
# The hold-back window must outlast the disk handlers that would otherwise overlap the
# deadline: this quantile of the (fitted) bare handler cost.
HOLD_BACK_QUANTILE = 0.99


@dataclass(frozen=True)
class Mechanism:
    """What a platform is, fixed before any fitting: the profile's non-fitted components."""

    description: str
    irq_exits: float
    min_delta_ns: int = MIN_DELTA_NS
    host_slop_ns: int = 0
    precise_channel: bool = False


MECHANISMS: dict[str, Mechanism] = {
    "VMware": Mechanism(
        "VMware Player 6: hosted VMM, emulated LAPIC timer served from the VMM's host "
        "timers, emulated disk controller",
        irq_exits=EMULATED_DISK_EXITS,
    ),
    "VirtualBox": Mechanism(
        "VirtualBox 4.3: hosted VMM, virtual timers run by its TM on host timers, "
        "emulated disk controller",
        irq_exits=EMULATED_DISK_EXITS,
    ),
    "QEMU": Mechanism(
        "QEMU 2.1 (TCG): emulated CPU, LAPIC timer on QEMU's timer lists, emulated IDE",
        irq_exits=EMULATED_DISK_EXITS,
    ),
    "KVM": Mechanism(
        "KVM (Linux 3.17): in-kernel LAPIC timer on a host hrtimer, QEMU-emulated IDE disk",
        irq_exits=EMULATED_DISK_EXITS,
    ),
    "Xen": Mechanism(
        "Xen 4.5 PV: VIRQ_timer through the event-channel upcall; timer_slop and the "
        "guest's TIMER_SLOP both set to 1 us (the paper's setting); PV disk",
        irq_exits=XEN_PV_DISK_EXITS,
        min_delta_ns=1_000,
        host_slop_ns=1_000,
    ),
    "new timers": Mechanism(
        "the paper's dedicated Xen timer: own VIRQ, highest priority, other interrupts "
        "held back near its deadline",
        irq_exits=XEN_PV_DISK_EXITS,
        min_delta_ns=1_000,
        host_slop_ns=1_000,
        precise_channel=True,
    ),
    "Linux": Mechanism(
        "bare Linux 3.17 hrtimers on the LAPIC, no virtualization",
        irq_exits=0.0,
    ),
}


def is_fitted_row(row: PaperRow) -> bool:
    """Whether a Table 1 row was used for fitting (the rest are predictions)."""
    if row.interval_us != FIT_INTERVAL_US:
        return False
    return row.load == Load.IDLE or row.platform == HANDLER_FIT_PLATFORM


def _row(platform: str, load: str) -> PaperRow:
    (row,) = (r for r in paper_rows(FIT_INTERVAL_US, load) if r.platform == platform)
    return row


def _idle_delivery(platform: str) -> DeliveryModel:
    """Delivery latency from the idle 50 µs row: mean interval - d, and its sd."""
    row = _row(platform, Load.IDLE)
    return DeliveryModel.from_moments((row.mean_us - row.interval_us) * 1000, row.sd_us * 1000)


def handler_fit_row() -> tuple[PaperRow, DeliveryModel]:
    """The one heavy-IO row the bare handler cost is fitted on, and that platform's idle
    delivery model (the part of the row that is not interference)."""
    return _row(HANDLER_FIT_PLATFORM, Load.IO), _idle_delivery(HANDLER_FIT_PLATFORM)


@functools.cache
def bare_disk_handler() -> HandlerCost:
    """The global bare disk-handler cost, fitted on the Linux heavy-IO 50 µs row only.

    Shipped in ``data/bare_disk_handler.json``: fitting it takes the simulator a few
    seconds (``tickless.sim.table1.calibrate_bare_handler`` regenerates it; a test checks
    that the shipped value still reproduces its row).
    """
    text = resources.files("tickless.sim").joinpath(HANDLER_DATA).read_text(encoding="utf-8")
    data = json.loads(text)
    if data.get("format") != HANDLER_FORMAT or data.get("version") != 1:
        raise ProfileError(f"{HANDLER_DATA}: not a version 1 {HANDLER_FORMAT} file")
    return HandlerCost(mean_ns=float(data["mean_ns"]), shape=float(data["shape"]))


def handler_to_json(handler: HandlerCost, count: int, seed: int) -> dict[str, object]:
    """The shipped handler file's content."""
    return {
        "format": HANDLER_FORMAT,
        "version": 1,
        "fitted_on": f"{PAPER_SOURCE}, {HANDLER_FIT_PLATFORM}, io, {FIT_INTERVAL_US} us",
        "method": "simulated mean and sd matched to the row (analytic moments, "
        "corrected by simulation)",
        "count": count,
        "seed": seed,
        "mean_ns": handler.mean_ns,
        "shape": handler.shape,
    }


def hold_back_for(irq_overhead_ns: float) -> int:
    """A precise channel's hold-back window on a platform: long enough for all but 1 % of
    device handlers (bare cost plus the platform's per-interrupt overhead) to finish."""
    return math.ceil(bare_disk_handler().quantile_ns(HOLD_BACK_QUANTILE) + irq_overhead_ns)


def paper_profile(platform: str) -> PlatformProfile:
    """One paper platform: delivery fitted on its idle 50 µs row, the rest from MECHANISMS.

    Each VMM round trip of a device interrupt is taken to cost what the platform's own timer
    delivery costs (``exit_cost_ns`` = the fitted mean latency): both are an exit, a pass
    through the VMM and an entry with an injection.
    """
    mech = MECHANISMS[platform]
    row = _row(platform, Load.IDLE)
    delivery = _idle_delivery(platform)
    exit_cost = delivery.mean_ns
    hold_back = hold_back_for(mech.irq_exits * exit_cost) if mech.precise_channel else 0
    return PlatformProfile(
        name=platform,
        description=mech.description,
        fitted_on=FitSource(
            source=f"{PAPER_SOURCE}, idle, {FIT_INTERVAL_US} us",
            interval_ns=row.interval_us * 1000,
            load=Load.IDLE.value,
            mean_ns=row.mean_us * 1000,
            sd_ns=row.sd_us * 1000,
        ),
        delivery=delivery,
        min_delta_ns=mech.min_delta_ns,
        host_slop_ns=mech.host_slop_ns,
        hold_back_ns=hold_back,
        irq_exits=mech.irq_exits,
        exit_cost_ns=exit_cost,
    )


@functools.cache
def builtin_profiles() -> dict[str, PlatformProfile]:
    """The seven paper platforms, by their Table 1 names, in the paper's order."""
    return {name: paper_profile(name) for name in PLATFORMS}


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def resolve_platform(name_or_path: str) -> PlatformProfile:
    """A built-in platform (case-insensitive; "new timers", "new-timers", "newtimers" alike)
    or a profile JSON file; anything else is a ProfileError listing the known names."""
    builtins = builtin_profiles()
    known = ", ".join(builtins)
    if not name_or_path.strip():
        raise ProfileError(f"no platform given: use one of {known}, or a profile JSON file")
    wanted = _key(name_or_path)
    for name, profile in builtins.items():
        if wanted and _key(name) == wanted:
            return profile
    path = Path(name_or_path)
    if path.suffix.lower() == ".json" or path.exists():
        return load_profile(path)
    raise ProfileError(
        f"unknown platform {name_or_path!r}: use one of {known}, or a profile JSON file"
    )


def fit_from_record(record: ResultRecord, name: str, source: str) -> PlatformProfile:
    """A profile from a real ``tickless measure`` run: its delivery latency distribution.

    Each event's lateness (interval - d for the relative method) is one delivery latency;
    ``DeliveryModel.from_samples`` splits them into floor, jitter and stalls. The
    interference components are KVM's (an emulated disk; a round trip costs the run's mean
    latency).
    """
    if record.mode != TickMode.TICKLESS:
        raise ProfileError(
            "fit needs a tickless run: a periodic run measures the tick, not delivery"
        )
    if record.timer in (TimerPath.PV, TimerPath.PRECISE):
        raise ProfileError(
            f"fit needs a run whose lateness is the delivery (--timer lguest, lapic or host): "
            f"a {record.timer} run wakes early and spins to its deadlines"
        )
    if record.load != Load.IDLE:
        raise ProfileError(f"fit needs an idle run, this one ran under {record.load!r} load")
    lateness = np.asarray(record.lateness_ns, dtype=np.float64)
    if lateness.size < 2:
        raise ProfileError("fit needs a run with at least 2 intervals")
    if np.any(lateness < 0):
        raise ProfileError("the run has events that fired early: it cannot describe a delivery")
    delivery = DeliveryModel.from_samples(lateness)
    return PlatformProfile(
        name=name,
        description=(
            f"fitted from a {record.backend} {record.timer} run: {record.stats.count} events "
            f"every {record.interval_ns / 1000:g} us, {record.method} method"
        ),
        fitted_on=FitSource(
            source=source,
            interval_ns=record.interval_ns,
            load=record.load,
            mean_ns=record.stats.mean_ns,
            sd_ns=record.stats.sd_ns,
        ),
        delivery=delivery,
        irq_exits=MECHANISMS["KVM"].irq_exits,
        exit_cost_ns=delivery.mean_ns,
    )
