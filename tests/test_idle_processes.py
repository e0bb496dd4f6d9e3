"""An idle fleet over several VMM processes: the guests split evenly with a seed each, the
spec refused where one process's ramp or warp is needed, and a real two-process fleet that
boots, measures one window and comes back as one record with every guest in it."""

from __future__ import annotations

import pytest

from tickless.axes import TickMode
from tickless.errors import InputError
from tickless.measure.idle_processes import run_idle_processes, shares
from tickless.results.idle import IdleResult, IdleSpec

SECOND_NS = 1_000_000_000


def test_the_guests_split_as_evenly_as_they_go_each_share_its_own_seed() -> None:
    parts = shares(IdleSpec(guests=1003, processes=4, seed=7))
    assert [p.guests for p in parts] == [251, 251, 251, 250]
    assert [p.seed for p in parts] == [7, 8, 9, 10]
    assert all(p.processes == 1 and p.pv_idle == "lapic" for p in parts)


@pytest.mark.parametrize(
    "kw",
    [
        {"guests": 2, "processes": 3},
        {"guests": 4, "processes": 0},
        {"guests": 4, "processes": 2, "mode": TickMode.PERIODIC},
        {"guests": 4, "processes": 2, "warp_idle": True},
        {"guests": 4, "processes": 2, "guest": "linux"},
    ],
)
def test_a_split_that_cannot_run_is_refused_in_one_line(kw: dict[str, object]) -> None:
    with pytest.raises(InputError, match="--processes"):
        IdleSpec(**kw)  # type: ignore[arg-type]


@pytest.mark.kvm
def test_two_processes_measure_one_window_and_make_one_record() -> None:
    spec = IdleSpec(guests=5, processes=2, duration_ns=3 * SECOND_NS, seed=3)
    result = run_idle_processes(spec)
    assert result.guests == 5 and not result.partial
    names = [g.name for g in result.per_guest]
    assert len(set(names)) == 5
    assert sum(n.startswith("p0/") for n in names) == 3
    assert sum(n.startswith("p1/") for n in names) == 2
    for guest in result.per_guest:
        assert guest.housekeeping_runs >= 2  # its 1 s timer, in the one window
        assert guest.timer_interrupts >= 2
    assert result.early_timer_runs == 0
    # the sums hold together: every process's vCPU threads are inside the fleet's CPU
    assert 0 < result.vcpu_cpu_s < result.process_cpu_s
    assert any("2 VMM processes" in note for note in result.notes)
    assert result.other_tasks_percent_of_core is not None
    again = IdleResult.from_json_dict(result.to_json_dict())
    assert again.per_guest == result.per_guest and again.other_tasks_top == result.other_tasks_top
