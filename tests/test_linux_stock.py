"""The stock Linux kernel on bent time (issue 19): the same kernel without our clocks
(``--linux-drivers stock``), KVM's CPUID leaves hidden, its TSC calibrated against the
zoo's dilated HPET; and what shows from inside and outside that every clock it has follows
the timeline (``measure/linux_clocks.py``).

The pure parts (the CPUID filter, the agreement arithmetic, the console's parsing and fit)
are checked on made-up inputs; the KVM tests boot the stock kernel for real. Their bounds
are structural, not a rate of this host: a clock that ran on wall time at dilation 4 would
be 750,000 ppm off, and 0 early is the design's promise in guest time."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from tickless.axes import GuestKind, LinuxDrivers, TimerPath
from tickless.backends import measure
from tickless.devices.config import STOCK_RIGID, GuestConfig
from tickless.devices.console_buffer import Console
from tickless.errors import InputError
from tickless.guest import abi
from tickless.guest.abi import Scenario
from tickless.guest.linux_build import STOCK_OPTION, fingerprint_inputs, fragment_options
from tickless.kvm import abi as kvm_abi
from tickless.measure.linux_clocks import (
    GuestClocks,
    agreement_ppm,
    console_clocks,
    console_ratio_note,
    fleet_clocks,
    time_ratio,
    unstable_clocksources,
    workload_stamps,
)
from tickless.results.spec import MeasureSpec, default_timer
from tickless.timers.timeline import Timeline
from tickless.vmm import linux_boot
from tickless.vmm.cpuid import hides, without_clock_leaves
from tickless.vmm.linux_boot import stock_cmdline, tsc_told_khz

S = 1_000_000_000
STOCK = LinuxDrivers.STOCK


def _table(functions: list[int]) -> kvm_abi.Cpuid2:
    table = kvm_abi.Cpuid2()
    for i, function in enumerate(functions):
        table.entries[i].function = function
        table.entries[i].eax = 0x100 + i
    table.nent = len(functions)
    return table


def test_the_stock_cpuid_table_hides_kvm_and_the_frequency_leaves_only() -> None:
    functions = [0x0, 0x1, 0x6, 0x15, 0x16, 0x4000_0000, 0x4000_0001, 0x4000_00FF, 0x4000_0100]
    out = without_clock_leaves(_table(functions))
    kept = [int(out.entries[i].function) for i in range(out.nent)]
    assert kept == [0x0, 0x1, 0x6, 0x4000_0100]
    assert [int(out.entries[i].eax) for i in range(out.nent)] == [0x100, 0x101, 0x102, 0x108]
    assert hides(0x4000_0010) and not hides(0x8000_0001)


def test_the_stock_cpuid_table_clears_tsc_adjust_so_the_watchdog_watches_the_tsc() -> None:
    table = _table([0x7, 0x7, 0x8000_0007])
    table.entries[0].ebx = table.entries[1].ebx = 0x1802852 | 0b10  # TSC_ADJUST is bit 1
    table.entries[1].index = 1  # another subleaf: left alone
    out = without_clock_leaves(table)
    assert [int(out.entries[i].ebx) for i in range(3)] == [0x1802850, 0x1802852, 0]
    assert int(table.entries[0].ebx) == 0x1802852  # the host's table is not changed


def test_stock_is_a_build_of_its_own_and_a_command_line_without_our_words() -> None:
    assert fragment_options(100, stock=True)[STOCK_OPTION] == "n"
    assert fragment_options(100)[STOCK_OPTION] == "y"
    plain, stock = (
        fingerprint_inputs(100, gcc="gcc"),
        fingerprint_inputs(100, gcc="gcc", stock=True),
    )
    assert plain != stock
    line = stock_cmdline(TimerPath.LAPIC, 2_600_000_000, Fraction(1))
    assert "tsc=reliable" not in line and "kvmclock" not in line and "nolapic_timer" not in line
    assert "clocksource=hpet" in stock_cmdline(TimerPath.HPET, 2_600_000_000, Fraction(1, 10))
    # told the TSC's rate in guest time at every rate (Linux refines it where it can)
    assert tsc_told_khz(2_600_000_000, Fraction(1, 10)) == 26_000_000
    assert tsc_told_khz(2_600_000_000, Fraction(10)) == 260_000
    assert "tsc_early_khz=650000" in stock_cmdline(TimerPath.LAPIC, 2_600_000_000, Fraction(4))
    # Linux's boot check of the timer interrupt (a TSC-timed wait) is skipped, as kvm-clock
    # skips it in any KVM guest: at 0.1 it would panic
    assert "no_timer_check" in stock_cmdline(TimerPath.LAPIC, 2_600_000_000, Fraction(1, 10))


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"timer": TimerPath.PV}, "lapic"),
        ({"timer": TimerPath.PIT}, "pit"),
        ({"timer": TimerPath.LGUEST}, "lapic"),
        ({"timer": TimerPath.LAPIC, "warp_idle": True}, "cannot warp"),
        ({"timer": TimerPath.LAPIC, "guest": GuestKind.SMALL}, "Linux"),
    ],
)
def test_what_a_stock_guest_cannot_do_is_refused_in_one_line(
    settings: dict[str, object], words: str
) -> None:
    config = {"guest": GuestKind.LINUX, "linux_drivers": STOCK, "scenario": Scenario.IDLE}
    with pytest.raises(InputError, match=words) as err:
        GuestConfig(**{**config, **settings})  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


def test_a_stock_guest_may_be_dilated_on_its_own_lapic_timer_where_ours_may_not() -> None:
    GuestConfig(guest=GuestKind.LINUX, linux_drivers=STOCK, timer=TimerPath.LAPIC, rate=Fraction(4))
    with pytest.raises(InputError, match="cannot be dilated"):
        GuestConfig(guest=GuestKind.LINUX, timer=TimerPath.LAPIC, rate=Fraction(4))
    assert default_timer(GuestKind.LINUX, STOCK) is TimerPath.LAPIC
    with pytest.raises(InputError, match="stock"):
        MeasureSpec(timer=TimerPath.LAPIC, interval_ns=10**7, count=10, linux_drivers=STOCK)


def test_a_timeline_with_a_stock_guest_refuses_a_rate_change_and_a_freeze() -> None:
    timeline = Timeline(10**9, lambda: 0, rate=Fraction(4))
    timeline.join("plain")
    timeline.set_rate(Fraction(2))  # nobody rigid yet
    timeline.join("guest3", rigid=STOCK_RIGID)
    for bend, what in (
        (lambda: timeline.set_rate(Fraction(3)), "rate change"),
        (timeline.freeze, "freeze"),
    ):
        with pytest.raises(InputError, match=f"a {what} refused: guest3: a stock Linux") as err:
            bend()
        assert "\n" not in str(err.value)
    assert timeline.rate == 2 and not timeline.frozen


def _sample(ns: dict[str, int], at: dict[str, int], valid: int) -> abi.ClockSample:
    sample = abi.ClockSample()
    for name in abi.CLOCK_NAMES:
        setattr(sample, f"{name}_ns", ns.get(name, 0))
        setattr(sample, f"{name}_at_ns", at.get(name, 0))
    sample.valid = valid
    return sample


def test_agreement_is_each_clock_against_its_own_timeline_readings() -> None:
    every = (1 << len(abi.CLOCK_NAMES)) - 1
    first = _sample({"tsc": 1000, "monotonic": 5 * S, "hpet": 0}, {"tsc": S, "monotonic": S}, every)
    last = _sample(
        {"tsc": 1000 + 30 * S + 30_000, "monotonic": 5 * S + 30 * S - 300_000, "hpet": 50 * S},
        {"tsc": 31 * S, "monotonic": 31 * S, "hpet": 50 * S},
        every & ~(1 << abi.CLOCK_NAMES.index("rtc")),
    )
    ppm = agreement_ppm(first, last)
    assert ppm["tsc"] == pytest.approx(1.0)  # 30 us fast over 30 s
    assert ppm["monotonic"] == pytest.approx(-10.0)
    assert ppm["rtc"] is None  # not read in the last sample
    assert ppm["hpet"] is None  # 50 s between: a 32-bit wrap could hide
    assert agreement_ppm(first, last, samples=11)["hpet"] == pytest.approx(0.0)  # 5 s apart
    assert ppm["jiffies"] is None  # no time between its readings


def test_the_console_names_unstable_clocksources_and_gives_printk_time_per_wall_second() -> None:
    text = (
        "[    1.0] clocksource: Marking clocksource 'tsc-early' as unstable because the skew\n"
        "[    2.0] tsc: Marking TSC unstable due to clocksource watchdog\n"
        "[    3.0] clocksource: Marking clocksource 'tsc-early' as unstable again\n"
    )
    assert unstable_clocksources(text) == ["tsc-early", "tsc"]
    assert unstable_clocksources("[ 1.0] clocksource: Switched to clocksource hpet") == []
    lines = [(0, "[    0.5] boot"), (S, "[   10.0] tickless: Linux 6.12, HZ=100")]
    lines += [(S + k * S, f"[{10.0 + 4 * k:9.6f}] tickless: clocks sampled") for k in (1, 2, 3)]
    stamps = workload_stamps(lines)
    assert len(stamps) == 4  # from the kernel's announcement on
    assert time_ratio(stamps) == pytest.approx(4.0)
    assert time_ratio(stamps[:2]) is None
    # a line a busy host stamped 50 ms late does not bend the rate (a least-squares line
    # through these would be 0.8 % off)
    late = [(k * S // 2 + (50_000_000 if k == 7 else 0), 10.0 * k / 2) for k in range(8)]
    assert time_ratio(late) == pytest.approx(10.0)


def test_a_fleets_clocks_are_each_guests_at_their_worst_and_its_console_the_median() -> None:
    a = GuestClocks({"tsc": 1.0, "rtc": -300.0, "hpet": None}, ["tsc-early"], 10.01)
    b = GuestClocks({"tsc": -2.0, "rtc": 40.0, "hpet": None}, [], 9.99)
    c = GuestClocks(None, ["tsc"], 10.3)
    fleet = fleet_clocks([a, b, c])
    assert fleet.clock_agreement_ppm == {"hpet": None, "rtc": -300.0, "tsc": -2.0}
    assert fleet.clocksource_unstable == ["tsc-early", "tsc"]
    assert fleet.console_time_ratio == 10.01  # the median: the host's view
    assert fleet_clocks([c]).clock_agreement_ppm is None
    note = console_ratio_note([a, b, c])
    assert note is not None and "9.9900 to 10.3000" in note
    assert console_ratio_note([a]) is None


def test_any_kernels_console_tells_its_clocksource_and_its_printk_rate() -> None:
    lines = [(0, "[    0.1] boot"), (S, "[    5.0] clocksource: Switched to clocksource hpet")]
    lines += [(S + k * S, f"[{5.0 + 10 * k:9.6f}] something") for k in (1, 2, 3)]
    said = console_clocks(lines)
    assert said == [
        "clocksource: hpet",
        "clocksources marked unstable: none",
        "printk s per wall s: 10.0000",
    ]
    assert console_clocks(lines[:1])[0] == "clocksource: not said"


def test_the_console_stamps_each_line_with_when_its_first_byte_came() -> None:
    console = Console()
    for byte in b"[    1.000000] a\n[    2.000000] b":
        console.write(bytes([byte]))
    console.write(b"c\n")
    texts = [text for _, text in console.lines]
    assert texts == ["[    1.000000] a", "[    2.000000] bc"]
    times = [wall for wall, _ in console.lines]
    assert times == sorted(times)


@pytest.mark.kvm
@pytest.mark.linux
def test_a_dilated_stock_kernel_runs_on_its_own_clocks_and_they_follow_the_timeline(
    tmp_path: Path,
) -> None:
    """Dilation 4, the kernel's own choice of clocks: nothing of ours registered, no
    kvm-clock, no tsc=reliable; 0 early in guest time; each clock it has within 5 % of the
    timeline over the ~1.4 s between its two samples (one on wall time would be 75 % off;
    the ppm over a long run are a figure: benchmarks/linux_stock.py), none marked unstable."""
    spec = MeasureSpec(
        guest=GuestKind.LINUX,
        linux_drivers=STOCK,
        timer=TimerPath.LAPIC,
        rate=Fraction(4),
        interval_ns=10_000_000,
        count=100,
        hz=100,
        console_path=tmp_path / "console.log",
    )
    record = measure(spec)
    console = (tmp_path / "console.log").read_text()
    command_line = next(line for line in console.splitlines() if "Command line:" in line)
    assert "tsc=reliable" not in command_line and "kvmclock" not in command_line
    assert "tsc_adjust" in command_line  # so that its watchdog watches the TSC
    assert "kvm-clock" not in console  # CPUID hid KVM: Linux never found it
    assert "Hypervisor detected" not in console
    assert record.lateness.early_count == 0 and record.stats.count == 100
    assert record.guest_clocksource not in ("tickless", "kvm-clock")
    assert record.guest_clockevent not in ("tickless", "tickless-pv")
    assert record.clocksource_unstable == []
    ppm = record.clock_agreement_ppm
    assert ppm is not None
    for name in ("tsc", "monotonic", "realtime", "jiffies", "hpet", "rtc"):
        value = ppm[name]
        assert value is not None and abs(value) < 50_000, (name, ppm)
    assert any(note.startswith("stock kernel:") for note in record.notes)


@pytest.mark.kvm
@pytest.mark.linux
def test_the_stock_kernels_own_watchdog_catches_a_tsc_rate_that_does_not_follow_the_timeline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """clocksource_unstable is a live check: told a TSC rate 2 % off (more than Linux's
    refinement corrects), the kernel's watchdog, which compares its TSC with the zoo's
    HPET because CPUID hides TSC_ADJUST and nothing says tsc=reliable, marks the TSC
    unstable."""
    monkeypatch.setattr(
        linux_boot, "tsc_told_khz", lambda tsc_hz, rate: round(tsc_hz * 1.02 / 1000 / rate)
    )
    spec = MeasureSpec(
        guest=GuestKind.LINUX,
        linux_drivers=STOCK,
        timer=TimerPath.LAPIC,
        interval_ns=100_000_000,
        count=50,  # 5 s: its HPET registers late in boot, and the watchdog checks every 0.5 s
        hz=100,
    )
    record = measure(spec)
    assert any(name.startswith("tsc") for name in record.clocksource_unstable), record.notes
