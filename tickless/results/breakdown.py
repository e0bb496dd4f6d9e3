"""Where each event's time went (``measure --explain``), and one row per guest of a
several-guest run (``measure --guests N``): the parts of a result record added in schema 3.

The breakdown follows rtla timerlat's auto-analysis: for every event that came through an
interrupt, the chain from the host's planned wake-up to the guest's ring-3 wake-up, then
the spin to the deadline, and the longest gap the guest saw in its own clock while
spinning (a sign that this host's hypervisor took the CPU away). A summary names the part
that dominates the mean lateness, its p99 tail and its maximum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tickless.jsonfields import StrictReader

# The parts of one event, in the order they happen. The first four delay the event; the
# spin is time the guest absorbed (the advance it did not need).
CAUSES = ("host_wake_late", "injection", "guest_entry", "clock_gap")
PARTS = (*CAUSES, "spin")
PART_HELP = {
    "host_wake_late": "the host loop woke this long after its planned (early) wake-up",
    "injection": "KVM_SIGNAL_MSI, from the wake-up to the interrupt being posted",
    "guest_entry": "from the injection to the guest's ring-3 wake-up (entry, #GP, HLT exit)",
    "clock_gap": "the longest jump the guest saw in its clock while spinning",
    "spin": "the residual the guest spun to reach the deadline",
}
TAILS = ("mean", "p99", "max")


@dataclass
class Breakdown:
    """Per-event parts (ns; one array per part, aligned with ``event_index``) and summary."""

    event_index: list[int]  # which events (1-based, as in the record) came by interrupt
    parts_ns: dict[str, list[int]]  # PARTS -> values
    spun_events: int  # events reached by spinning alone (no interrupt, nothing to explain)
    advance_ns: int  # the host loop's advance when the run ended
    dominant: dict[str, str]  # TAILS -> the cause that dominates it

    def summary_ns(self) -> dict[str, dict[str, float]]:
        """Mean, p99 and max of each part."""
        out = {}
        for part in PARTS:
            values = np.asarray(self.parts_ns[part], dtype=np.float64)
            if values.size == 0:
                out[part] = {"mean": 0.0, "p99": 0.0, "max": 0.0}
                continue
            out[part] = {
                "mean": float(values.mean()),
                "p99": float(np.percentile(values, 99)),
                "max": float(values.max()),
            }
        return out


def dominant_causes(
    parts_ns: dict[str, npt.NDArray[np.int64]], lateness_ns: npt.NDArray[np.int64]
) -> dict[str, str]:
    """The cause behind the mean (largest mean part), the p99 tail (events at or above the
    p99 lateness) and the maximum (the latest event): for the tails, the cause furthest
    above its own median, since every event pays the medians."""
    if lateness_ns.size == 0:
        return {tail: "none" for tail in TAILS}
    medians = {c: float(np.median(parts_ns[c])) for c in CAUSES}
    mean = max(CAUSES, key=lambda c: float(parts_ns[c].mean()))
    tail = lateness_ns >= np.percentile(lateness_ns, 99)
    p99 = max(CAUSES, key=lambda c: float(parts_ns[c][tail].mean()) - medians[c])
    worst = int(np.argmax(lateness_ns))
    top = max(CAUSES, key=lambda c: float(parts_ns[c][worst]) - medians[c])
    return {"mean": mean, "p99": p99, "max": top}


def breakdown_to_json(b: Breakdown | None) -> dict[str, Any] | None:
    if b is None:
        return None
    return {
        "event_index": list(b.event_index),
        "parts_ns": {part: list(b.parts_ns[part]) for part in PARTS},
        "summary_ns": b.summary_ns(),
        "spun_events": b.spun_events,
        "advance_ns": b.advance_ns,
        "dominant": dict(b.dominant),
    }


def breakdown_from_json(reader: StrictReader) -> Breakdown:
    parts = reader.object_("parts_ns")
    b = Breakdown(
        event_index=reader.int_list("event_index"),
        parts_ns={part: parts.int_list(part) for part in PARTS},
        spun_events=reader.int_("spun_events", minimum=0),
        advance_ns=reader.int_("advance_ns"),
        dominant=reader.str_dict("dominant"),
    )
    parts.check_no_extra()
    reader.object_("summary_ns")  # derived: rebuilt from the parts
    if any(len(v) != len(b.event_index) for v in b.parts_ns.values()):
        raise reader.fail("parts_ns", "every part needs one value per event_index")
    reader.check_no_extra()
    return b


@dataclass(frozen=True)
class GuestRow:
    """One guest of a several-guest run."""

    name: str
    events: int
    mean_ns: float  # mean measured interval
    sd_ns: float
    lateness_mean_ns: float
    lateness_p99_ns: float
    lateness_max_ns: float
    early_count: int
    vcpu_cpu_s: float  # CPU time of its vCPU thread (its guest code included)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, reader: StrictReader) -> GuestRow:
        row = cls(
            name=reader.str_("name"),
            events=reader.int_("events", minimum=0),
            mean_ns=reader.float_("mean_ns"),
            sd_ns=reader.float_("sd_ns"),
            lateness_mean_ns=reader.float_("lateness_mean_ns"),
            lateness_p99_ns=reader.float_("lateness_p99_ns"),
            lateness_max_ns=reader.float_("lateness_max_ns"),
            early_count=reader.int_("early_count", minimum=0),
            vcpu_cpu_s=reader.float_("vcpu_cpu_s"),
        )
        reader.check_no_extra()
        return row
