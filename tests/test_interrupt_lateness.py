"""When the interrupt arrived, beside the delivered event (``interrupt_lateness``, ``spin``),
and the control experiment ``--timer lapic --advance auto``. No latency is asserted: what
holds on any host is that the figures are recorded per event, that their summary agrees
with them, that a path with no advance and no spin is never early, and the counts the
design fixes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from never_early import ADVANCE_MAX_NS, assert_never_early
from records import record_from

from tickless.axes import Advance, Backend, TimerPath
from tickless.backends import measure
from tickless.cli import main
from tickless.devices.config import GuestConfig
from tickless.errors import InputError
from tickless.measure.cron import run_cron
from tickless.results.cron import CronSpec, checked_wakes
from tickless.results.interrupts import NO_SPIN, summarize_interrupts
from tickless.results.record import build_record
from tickless.results.schema import HostCounts, SchemaError, from_json_dict, to_json_dict
from tickless.results.spec import MeasureSpec
from tickless.timers.pv_deadline import pv_advance


def test_summary_counts_interrupts_before_their_deadline() -> None:
    late = summarize_interrupts([-3_000, 0, 5_000, -1])
    assert (late.count, late.early_count, late.max_ns) == (4, 2, 5_000)
    none = summarize_interrupts([])
    assert none.count == 0 and none.mean_ns is None and none.early_count == 0


def test_record_round_trips_and_a_summary_must_match_its_values() -> None:
    record = record_from([50_100, 50_200], [100, 200], advance="auto")
    record.interrupt_lateness_ns = [-2_000, 150]
    record.interrupt_lateness = summarize_interrupts(record.interrupt_lateness_ns)
    record.spin = NO_SPIN
    d = json.loads(json.dumps(to_json_dict(record)))
    assert from_json_dict(d) == record
    d["interrupt_lateness"]["early_count"] = 0  # one value is < 0
    with pytest.raises(SchemaError, match="early_count"):
        from_json_dict(d)
    d["interrupt_lateness"]["early_count"] = 1
    d["interrupt_lateness_ns"] = [150]
    with pytest.raises(SchemaError, match="count"):
        from_json_dict(d)


def test_a_version_3_record_reads_with_its_advance_and_no_blocks() -> None:
    d = to_json_dict(record_from([50_100], [100], timer="precise"))
    for key in (
        "advance",
        "interrupt_lateness",
        "interrupt_lateness_ns",
        "spin",
        "pit",
        "io",
        "late_causes",
        "guest_realtime_at_boot",
        "clock_agreement_ppm",
        "clocksource_unstable",
        "console_time_ratio",
    ):
        del d[key]
    d["schema_version"] = 3
    record = from_json_dict(d)
    assert record.advance == "auto" and record.interrupt_lateness is None
    assert record.spin is None and record.interrupt_lateness_ns == []


def test_a_path_that_does_not_spin_has_its_event_as_its_interrupt() -> None:
    stamps = np.array([0, 50_300, 100_700, 150_900], dtype=np.int64)
    host = HostCounts(0, 0, 3, 3, 3, 1.0, 0.1)
    plain = build_record(
        MeasureSpec(timer="lapic", interval_ns=50_000, count=3), Backend.KVM, stamps, host, {}, []
    )
    assert plain.advance == "off" and plain.spin == NO_SPIN
    assert plain.interrupt_lateness_ns == plain.lateness_ns == [300, 400, 200]
    spun = build_record(
        MeasureSpec(timer="pv", interval_ns=50_000, count=3), Backend.KVM, stamps, host, {}, []
    )
    assert spun.advance == "auto" and spun.interrupt_lateness is None  # the backend must say


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timer": "pv", "advance": "auto"}, "applies to --timer lapic"),
        ({"timer": "precise", "advance": "auto"}, "applies to --timer lapic"),
        ({"timer": "lapic", "advance": "auto", "backend": "sim"}, "simulator does not model"),
        ({"timer": "lapic", "advance": "auto", "guest": "linux"}, "small guest"),
        ({"timer": "lapic", "advance": "sometimes"}, "--advance must be one of"),
    ],
)
def test_advance_is_refused_where_it_does_not_apply(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        MeasureSpec(interval_ns=100_000, count=10, **kwargs)  # type: ignore[arg-type]


def test_the_cli_refuses_advance_on_pv_in_one_line() -> None:
    result = CliRunner().invoke(main, ["measure", "--advance", "auto", "--count", "5"])
    assert result.exit_code == 2
    assert "--advance auto applies to --timer lapic" in result.output


def test_guest_config_refuses_advance_off_the_lapic_path() -> None:
    with pytest.raises(InputError, match="--advance auto"):
        GuestConfig(timer="lguest", advance=Advance.AUTO)  # type: ignore[arg-type]


# --- real guests -------------------------------------------------------------------------


@pytest.mark.kvm
@pytest.mark.parametrize("method", ["relative", "absolute"])
def test_lapic_without_advance_is_never_early_and_its_event_is_its_interrupt(method: str) -> None:
    record = measure(MeasureSpec(timer="lapic", interval_ns=300_000, count=200, method=method))
    assert record.advance == "off"
    assert_never_early(record)
    assert record.interrupt_lateness is not None and record.interrupt_lateness.count == 200


def _by_interrupt_and_spun(notes: list[str], prefix: str) -> tuple[int, int]:
    """(events by early interrupt, events spun to without one) from the path's note."""
    (note,) = [n for n in notes if n.startswith(prefix) and "events by early interrupt" in n]
    head = note.removeprefix(prefix).split(" events by early interrupt, ")
    return int(head[0].rsplit(" ", 1)[-1]), int(head[1].split(" ", 1)[0])


@pytest.mark.kvm
@pytest.mark.parametrize("timer", ["lapic", "pv"])
def test_a_spinning_path_records_every_interrupt_it_took(timer: str) -> None:
    """At 1 ms (beyond the advance and the spin threshold) each event arms its timer early,
    takes its interrupt and spins the rest: every interrupt the guest counted has its
    lateness in the record, and none came earlier than an advance can make it."""
    advance = Advance.AUTO if timer == "lapic" else Advance.OFF
    record = measure(MeasureSpec(timer=timer, interval_ns=1_000_000, count=200, advance=advance))
    assert record.advance == "auto"
    assert_never_early(record)
    irq = record.interrupt_lateness
    by_irq, spun = _by_interrupt_and_spun(record.notes, f"{timer}")
    assert irq is not None and irq.count == by_irq and by_irq + spun == 200
    assert record.spin is not None and record.spin.cpu_s > 0  # every event spun some
    assert min(record.interrupt_lateness_ns) >= -pv_advance().max_ns >= -ADVANCE_MAX_NS


@pytest.mark.kvm
def test_lapic_advance_spins_near_deadlines_without_an_interrupt() -> None:
    """100 us is below the 200 us spin threshold: the same policy as pv, no interrupt."""
    spec = MeasureSpec(timer="lapic", interval_ns=100_000, count=100, advance=Advance.AUTO)
    record = measure(spec)
    assert record.interrupt_lateness is not None and record.interrupt_lateness.count == 0
    assert record.host.timer_events == 0
    assert any("0 events by early interrupt, 100 spun" in n for n in record.notes)


# --- cron guests -------------------------------------------------------------------------


def test_cron_wakes_out_of_their_window_are_dropped() -> None:
    ran = np.array([10, 20, 20, 35], dtype=np.int64)
    woke = np.array([5, 15, 12, 40], dtype=np.int64)  # the last after its own run: a lie
    assert checked_wakes(ran, woke).tolist() == [5, 15, 12, 0]
    assert checked_wakes(ran, np.array([0, 9, 20, 20])).tolist() == [0, 0, 20, 0]


@pytest.mark.kvm
@pytest.mark.parametrize("timer", [TimerPath.PV, TimerPath.LGUEST])
def test_cron_records_when_each_interrupt_came(timer: TimerPath) -> None:
    """pv spins to the deadline before it runs its timers, lguest does not: on both the
    interrupts are timed per run and counted consistently; lguest's are never early."""
    record = run_cron(CronSpec(periods_ns=(10_000_000,), duration_ns=300_000_000, timer=timer))
    assert record.early == 0
    assert 0 < record.interrupts == len(record.interrupt_lateness_ns) <= record.runs
    assert record.interrupt_early == sum(1 for v in record.interrupt_lateness_ns if v < 0)
    if timer is TimerPath.LGUEST:
        assert record.interrupt_early == 0 and record.spin_cpu_s == 0
    else:
        assert min(record.interrupt_lateness_ns) >= -ADVANCE_MAX_NS
        assert record.spin_cpu_s > 0


@pytest.mark.parametrize("timer", ["pv", "precise", "lapic", "lguest"])
def test_the_simulator_reports_interrupts_beside_delivered_events(timer: str) -> None:
    """The simulator's pv and precise guests spin like the real one: their modelled
    interrupts are in the record; its lapic and lguest events are their interrupts."""
    spec = MeasureSpec(timer=timer, interval_ns=1_000_000, count=300, backend="sim")  # type: ignore[arg-type]
    record = measure(spec)
    assert_never_early(record)
    assert record.advance == ("auto" if timer in ("pv", "precise") else "off")
    if record.advance == "auto":
        irq = record.interrupt_lateness
        assert irq is not None and 0 < irq.count <= 300
        assert record.spin is not None and record.spin.cpu_s > 0


@pytest.mark.kvm
def test_several_guests_pool_their_interrupts() -> None:
    spec = MeasureSpec(timer="pv", interval_ns=1_000_000, count=50, guests=2)  # type: ignore[arg-type]
    record = measure(spec)
    assert_never_early(record)
    irq = record.interrupt_lateness
    assert irq is not None and irq.count <= 100 == record.stats.count
