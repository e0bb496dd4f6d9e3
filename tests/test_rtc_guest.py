"""``--timer rtc`` on real KVM: the small guest programs the CMOS RTC's periodic interrupt
from ring 3 and takes each one through the IOAPIC (GSI 8), reading register C after it.
Checked in guest time and in counts: never before the chip's own grid (counted from the
divider release, 2^-k s apart), one interrupt raised per one taken, on a dilated timeline
too. The lateness is a figure (``benchmarks/timer_paths.py``)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from click.testing import CliRunner
from never_early import assert_never_early

from tickless.axes import TimerPath
from tickless.backends import measure
from tickless.cli import main
from tickless.results.spec import MeasureSpec


@pytest.mark.kvm
@pytest.mark.parametrize("rate", [Fraction(1), Fraction(1, 2), Fraction(4)])
def test_rtc_row_never_early_on_its_own_grid(rate: Fraction) -> None:
    count = 300
    record = measure(
        MeasureSpec(timer=TimerPath.RTC, interval_ns=1_000_000, count=count, rate=rate)
    )
    assert record.stats.count == count
    assert (record.hz, record.interval_ns, record.mode) == (1024, 976_562, "periodic")
    assert_never_early(record)  # every event is an interrupt's arrival, none before its edge
    assert record.interrupt_lateness is not None and record.interrupt_lateness.count == count
    # each interrupt the chip raised reached the guest; one more may come before PIE is off
    assert record.host.injections == record.host.timer_events
    assert count <= record.host.timer_events <= count + 1
    # each deadline is at or after the event before (a lost edge moves it on, see
    # rtc_deadlines_ns): no event is later than its interval, however long a stall was
    assert all(
        late <= gap for late, gap in zip(record.lateness_ns, record.intervals_ns, strict=True)
    )
    assert any(
        n.startswith("rtc: periodic interrupt at 1024 Hz (register A RS=6)") for n in record.notes
    ), record.notes


@pytest.mark.kvm
def test_rtc_row_in_two_guests_at_once() -> None:
    """Each guest's RTC (a chip each, one timeline): its deadlines from its own bracket."""
    record = measure(MeasureSpec(timer=TimerPath.RTC, interval_ns=2_000_000, count=150, guests=2))
    assert record.guest_rows is not None and [r.events for r in record.guest_rows] == [150, 150]
    assert all(r.early_count == 0 for r in record.guest_rows)
    assert_never_early(record)
    assert all(
        late <= gap for late, gap in zip(record.lateness_ns, record.intervals_ns, strict=True)
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interval", "600ms"], "--interval between 122.07us and 500ms"),
        (["--interval", "100us"], "2 to 8192 Hz"),
        (["--rtc-epoch", "yesterday"], "is not an ISO 8601 time"),
        (["--rtc-epoch", "1969-12-31T23:00:00Z"], "before 1970"),
    ],
)
def test_bad_rtc_options_are_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["measure", "--timer", "rtc", "--count", "5", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_rtc_epoch_reaches_the_guest_config() -> None:
    from tickless.axes import Backend
    from tickless.cli.measure import measure as measure_command
    from tickless.cli.measure import spec_from_options
    from tickless.measure.kvm import guest_config

    def options(*args: str) -> dict[str, object]:
        return measure_command.make_context("measure", ["--timer", "rtc", *args]).params

    given = options("--interval", "2ms", "--rtc-epoch", "2030-01-02T03:04:05.5+01:00")
    spec = spec_from_options(Backend.KVM, given)
    assert spec.hz == 512 and spec.rtc_epoch_ns == 1_893_549_845_500_000_000
    assert guest_config(spec).rtc_epoch_ns == spec.rtc_epoch_ns
    assert options("--rtc-epoch", "now")["rtc_epoch_ns"] is None
    assert options("--rtc-epoch", "2030-01-01T00:00:00")["rtc_epoch_ns"] == 1_893_456_000 * 10**9
