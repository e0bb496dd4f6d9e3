"""The measurement spec: typed axes in, the same strings out, one number per paper fact."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tickless.axes import Backend, Load, Method, TickMode, TimerPath, Wait
from tickless.backends import BACKENDS, backend_for
from tickless.errors import InputError
from tickless.results.paper import PAPER_EVENTS, PAPER_IO_RATE_PER_S
from tickless.results.record import build_record
from tickless.results.schema import HostCounts, from_json_dict, to_json_dict
from tickless.results.spec import MeasureSpec
from tickless.sim.interference import LOAD_IRQ_RATE_PER_S


def test_strings_become_axis_members_and_loads_a_set() -> None:
    spec = MeasureSpec(
        timer="precise",  # type: ignore[arg-type]
        interval_ns=50_000,
        count=10,
        method="absolute",  # type: ignore[arg-type]
        wait="spin",  # type: ignore[arg-type]
        loads={"io", "cpu"},  # type: ignore[arg-type]
        backend="sim",  # type: ignore[arg-type]
    )
    assert spec.timer is TimerPath.PRECISE and spec.method is Method.ABSOLUTE
    assert spec.wait is Wait.SPIN and spec.backend is Backend.SIM
    assert spec.loads == frozenset({Load.CPU, Load.IO}) and spec.load == "cpu+io"
    assert spec.mode is TickMode.TICKLESS


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"timer": "acpi_pm"},
            "--timer must be one of pv, lguest, lapic, precise, host, hpet, pit, rtc, "
            "not 'acpi_pm'",
        ),
        ({"loads": {"disk"}}, "--load takes idle, cpu, io"),
        ({"loads": frozenset()}, "--load takes"),
        ({"loads": {Load.IDLE, Load.IO}}, "cannot be combined"),
        ({"timer": TimerPath.HOST, "loads": {Load.IO}}, "has no guest"),
        ({"timer": TimerPath.LAPIC, "mode": TickMode.PERIODIC}, "--timer lguest"),
        ({"timer": TimerPath.PV, "mode": TickMode.PERIODIC}, "offered by the lguest device"),
        ({"backend": Backend.HOST}, "host backend runs --timer host only"),
        ({"count": 0}, "--count"),
    ],
)
def test_bad_settings_are_input_errors(changes: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"timer": TimerPath.PV, "interval_ns": 50_000, "count": 10}
    with pytest.raises(InputError, match=message):
        MeasureSpec(**{**base, **changes})  # type: ignore[arg-type]


def test_records_keep_the_same_plain_strings() -> None:
    spec = MeasureSpec(
        timer=TimerPath.LGUEST,
        interval_ns=1000,
        count=3,
        mode=TickMode.PERIODIC,
        hz=250,
        loads=frozenset({Load.IO, Load.CPU}),
    )
    counts = HostCounts(0, 0, 0, 3, 3, 1.0, 0.0)
    timestamps = np.array([0, 1000, 2100, 3000], dtype=np.int64)
    record = build_record(spec, Backend.KVM, timestamps, counts, {}, [])
    fields = (record.backend, record.timer, record.mode, record.method, record.load)
    assert fields == ("kvm", "lguest", "periodic", "relative", "cpu+io")
    assert all(type(value) is str for value in fields)  # not enum members
    d = json.loads(json.dumps(to_json_dict(record)))
    assert (d["backend"], d["timer"], d["load"], d["hz"]) == ("kvm", "lguest", "cpu+io", 250)
    assert from_json_dict(d) == record


def test_every_backend_is_registered_and_host_timer_runs_on_the_host() -> None:
    assert set(BACKENDS) == set(Backend)
    host = MeasureSpec(timer=TimerPath.HOST, interval_ns=1000, count=3)
    assert backend_for(host) is Backend.HOST
    simulated = MeasureSpec(timer=TimerPath.HOST, interval_ns=1000, count=3, backend=Backend.SIM)
    assert backend_for(simulated) is Backend.SIM


def test_one_io_rate_everywhere() -> None:
    """The paper's text gives 1733.35 IRQ/s; the CLI, the spec and the simulator share it."""
    from tickless.cli.measure import measure as command

    assert PAPER_IO_RATE_PER_S == 1733.35
    spec = MeasureSpec(timer=TimerPath.PV, interval_ns=1000, count=PAPER_EVENTS)
    assert spec.io_rate_per_s == PAPER_IO_RATE_PER_S
    assert LOAD_IRQ_RATE_PER_S[Load.IO] == PAPER_IO_RATE_PER_S
    defaults = {p.name: p.default for p in command.params}
    assert defaults["io_rate_per_s"] == PAPER_IO_RATE_PER_S
    assert defaults["count"] == PAPER_EVENTS
