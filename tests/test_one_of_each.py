"""Rules written once and used everywhere they apply (issue 17, "one of each")."""

from __future__ import annotations

from fractions import Fraction

import pytest

from tickless.axes import TimerPath, check_dilation
from tickless.devices.config import GuestConfig
from tickless.errors import InputError
from tickless.results.spec import MeasureSpec


def test_the_spec_and_the_guest_config_refuse_a_dilated_lapic_with_one_message() -> None:
    with pytest.raises(InputError) as direct:
        check_dilation(TimerPath.LAPIC, Fraction(2))
    with pytest.raises(InputError) as spec:
        MeasureSpec(timer=TimerPath.LAPIC, interval_ns=100_000, count=10, rate=Fraction(2))
    with pytest.raises(InputError) as config:
        GuestConfig(timer=TimerPath.LAPIC, count=10, rate=Fraction(2))
    assert str(spec.value) == str(config.value) == str(direct.value)
    check_dilation(TimerPath.LAPIC, Fraction(1))  # undilated: fine
    check_dilation(TimerPath.PV, Fraction(2))


def test_a_channel_with_no_failed_injection_adds_no_note() -> None:
    from tickless.host.deadline_loop import ChannelStats

    names = ChannelStats.__dataclass_fields__
    counts = {n: 0 for n in names}
    assert ChannelStats(**{**counts, "fired": 3}).failure_note("pv") is None
    stats = ChannelStats(**{**counts, "fired": 3, "failed_injections": 2, "inject_errno": 9})
    assert stats.expiries == 5
    assert stats.failure_note("precise") == (
        "precise: 2 of 5 injections failed (Bad file descriptor): those events were never delivered"
    )


def test_the_vmm_names_no_device_it_creates() -> None:
    """Every device registers itself; the machine creates what registered and imports no
    module that holds a device type (its owner asks by type: ``devices/lookup.py``)."""
    from test_layering import import_graph

    from tickless.devices import DEVICE_TYPES

    device_modules = {t.__module__ for t in DEVICE_TYPES}
    assert "tickless.devices.pv_deadline" in device_modules  # the check can fail
    graph = import_graph()
    named = {
        f"{module} -> {target}"
        for module, targets in graph.items()
        if module.startswith("tickless.vmm")
        for target in targets & device_modules
    }
    assert named == set()


def test_shared_options_are_declared_once() -> None:
    """--count, --mode and --hz mean the same on every command that takes them: one
    declaration each in cli/common.py (a command may narrow a range, not redefine it)."""
    import click

    from tickless.cli.console import console_command
    from tickless.cli.idle import idle
    from tickless.cli.measure import measure
    from tickless.cli.sim_fleet import fleet

    def option(command: click.Command, flag: str) -> click.Option:
        found = [p for p in command.params if isinstance(p, click.Option) and flag in p.opts]
        assert len(found) == 1, (command.name, flag)
        return found[0]

    modes = [option(c, "--mode") for c in (measure, idle, console_command)]
    assert len({(tuple(m.type.choices), m.default, m.help) for m in modes}) == 1  # type: ignore[attr-defined]
    hzs = [option(c, "--hz") for c in (measure, idle, console_command)]
    assert {(h.default, h.type.min) for h in hzs} == {(None, 1)}  # type: ignore[attr-defined]
    counts = [option(c, "--count") for c in (measure, fleet)]
    assert len({(c.default, c.type.min, c.type.max) for c in counts}) == 1  # type: ignore[attr-defined]


def test_the_advance_reaches_the_c_loop_by_its_field_names_in_order() -> None:
    """The C channel's configuration holds AdaptiveAdvance's fields in the dataclass's
    order (they are passed by name, and to dl_advance_step by position)."""
    from tickless.host.deadline_abi import ChannelConfigC
    from tickless.host.deadline_loop import ADVANCE_FIELDS

    names = [name for name, *_ in ChannelConfigC._fields_]
    start = names.index(ADVANCE_FIELDS[0])
    assert tuple(names[start : start + len(ADVANCE_FIELDS)]) == ADVANCE_FIELDS
    assert len(ADVANCE_FIELDS) == 7


def test_a_guest_takes_every_setting_its_spec_names_alike() -> None:
    """GuestConfig.from_spec: a measurement's settings reach the guest under their own
    names (no copy by hand to forget), and what the spec words differently is given."""
    from tickless.axes import Method, Wait
    from tickless.measure.kvm import guest_config

    spec = MeasureSpec(
        timer=TimerPath.PV,
        interval_ns=123_000,
        count=77,
        method=Method.ABSOLUTE,
        wait=Wait.SPIN,
        halt_poll_ns=5_000,
        io_handler_ns=9_000,
        spin_threshold_ns=11_000,
        seed=42,
        explain=True,
        rate=Fraction(2),
    )
    config = guest_config(spec)
    for name in (
        "timer",
        "interval_ns",
        "count",
        "method",
        "wait",
        "halt_poll_ns",
        "io_handler_ns",
        "spin_threshold_ns",
        "seed",
        "explain",
        "rate",
    ):
        assert getattr(config, name) == getattr(spec, name), name
    assert config.io_rate_per_s == 0.0  # no --load io: the spec's rate is not the guest's
    assert GuestConfig.from_spec(spec, hold_back_ns=0, count=5).count == 5
