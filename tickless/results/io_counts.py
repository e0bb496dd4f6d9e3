"""What the record says about the I/O load (``io``) and, for ``--explain`` on the precise
channel, why each late event was late (``late_causes``). Added in schema version 5.

``io`` (null without ``--load io``): every arrival accounted for. ``arrivals`` = ``covered``
+ ``pending`` (arrivals still waiting when the guest stopped: counted, never lost);
``covered`` arrivals went in as ``delivered`` interrupts, ``coalesced`` = covered -
delivered of them rode on another arrival's interrupt (the device's status told the guest
how many); ``held``: arrivals the precise channel's window held back at least once;
``forced``: interrupts that went in after ``max_hold`` though the window never closed;
``lost``: interrupts injected but never handled. ``io_cpu``: the vCPU that took them
("same": the timer's, "other": vCPU 1), and ``handled_cpu0``/``handled_cpu1`` what each
vCPU's handler counted. Rates per second of the load's lifetime (guest clock): the
``requested_per_s``, the ``achieved_per_s`` of arrivals covered, ``interrupts_per_s``. What an
interrupt cost the guest (injection to its handler's end): ``cost_mean_ns``,
``cost_max_ns`` and the loop's running ``cost_estimate_ns`` at the end (0: no sample).

``late_causes`` (null unless ``--explain`` on ``--timer precise``): events later than
``late_threshold_ns``, each given one cause, in this order: ``io`` (an I/O interrupt on its
vCPU ran in its wait, came before its deadline and cost at least the lateness),
``preemption`` (a gap of at least ``gap_threshold_ns`` in its clock reads, or an interrupt
that cost over twice the median: something else had the CPU), ``loop_late`` (its early
interrupt was injected after the deadline), else ``unexplained``; the four sum to
``late``. ``undisturbed_*``: sd and p99 lateness of the events the platform did not
disturb (neither preempted nor served late by the loop), beside the whole run's
``sd_ns`` and ``p99_ns``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from tickless.jsonfields import StrictReader


@dataclass(frozen=True)
class IoCounts:
    io_cpu: str
    requested_per_s: float
    arrivals: int
    delivered: int
    covered: int
    coalesced: int
    held: int
    forced: int
    pending: int
    lost: int
    handled_cpu0: int
    handled_cpu1: int
    achieved_per_s: float
    interrupts_per_s: float
    cost_mean_ns: float
    cost_max_ns: int
    cost_estimate_ns: int

    @property
    def accounted(self) -> bool:
        """Every arrival covered by a delivered interrupt or still pending."""
        return self.arrivals == self.covered + self.pending


@dataclass(frozen=True)
class LateCauses:
    late_threshold_ns: int
    gap_threshold_ns: int
    events: int
    late: int
    io: int
    preemption: int
    loop_late: int
    unexplained: int
    undisturbed: int
    undisturbed_sd_ns: float
    undisturbed_p99_ns: float
    sd_ns: float
    p99_ns: float


def _to_json(value: IoCounts | LateCauses | None) -> dict[str, Any] | None:
    return None if value is None else asdict(value)


io_counts_to_json = _to_json
late_causes_to_json = _to_json


def _read(reader: StrictReader, kind: type[Any]) -> Any:
    values: dict[str, Any] = {}
    for f in fields(kind):
        if f.type == "str":
            values[f.name] = reader.str_(f.name)
        elif f.type == "float":
            values[f.name] = reader.float_(f.name)
        else:
            values[f.name] = reader.int_(f.name)
    reader.check_no_extra()
    return kind(**values)


def io_counts_from_json(reader: StrictReader) -> IoCounts:
    return _read(reader, IoCounts)  # type: ignore[no-any-return]


def late_causes_from_json(reader: StrictReader) -> LateCauses:
    return _read(reader, LateCauses)  # type: ignore[no-any-return]
