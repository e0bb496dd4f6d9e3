"""Where a measurement runs: every backend, registered in one table.

``kvm`` boots a real guest (``tickless.measure.kvm``), ``host`` runs the same method on the
bare host (``tickless.measure.host``) and ``sim`` runs it in virtual time
(``tickless.sim.measure``). Each runner is imported only when it runs, so choosing the
simulator loads no KVM code and a machine without KVM can still simulate. Nothing below
``tickless.backends`` imports it: it sits on top of the backends, never between them.
"""

from __future__ import annotations

from collections.abc import Callable

from tickless.axes import Backend, TimerPath
from tickless.results.schema import ResultRecord
from tickless.results.spec import MeasureSpec, Progress

__all__ = ["AUTO", "BACKENDS", "backend_for", "kvm_problem", "measure", "resolve_backend"]

Runner = Callable[[MeasureSpec, Progress | None], ResultRecord]
AUTO = "auto"  # the CLI's default: KVM where /dev/kvm is usable, else the simulator


def _run_kvm(spec: MeasureSpec, progress: Progress | None) -> ResultRecord:
    if spec.guests > 1:
        from tickless.measure.kvm_guests import measure_kvm_guests

        return measure_kvm_guests(spec, progress)
    from tickless.measure.kvm import measure_kvm

    return measure_kvm(spec, progress)


def _run_host(spec: MeasureSpec, progress: Progress | None) -> ResultRecord:
    from tickless.measure.host import measure_host

    return measure_host(spec, progress)


def _run_sim(spec: MeasureSpec, progress: Progress | None) -> ResultRecord:
    from tickless.sim.measure import simulate_measurement

    return simulate_measurement(spec, progress)


BACKENDS: dict[Backend, Runner] = {
    Backend.KVM: _run_kvm,
    Backend.HOST: _run_host,
    Backend.SIM: _run_sim,
}


def backend_for(spec: MeasureSpec) -> Backend:
    """The backend that runs ``spec``: ``--timer host`` on the KVM backend has no guest to
    boot, so it is the host baseline (the simulator simulates the host path itself)."""
    if spec.backend is Backend.KVM and spec.timer is TimerPath.HOST:
        return Backend.HOST
    return spec.backend


def measure(spec: MeasureSpec, progress: Progress | None = None) -> ResultRecord:
    """Run ``spec`` on its backend; ``progress`` is called with the events done so far."""
    return BACKENDS[backend_for(spec)](spec, progress)


def kvm_problem() -> str | None:
    """Why /dev/kvm cannot be used here, or None when it can."""
    from tickless.kvm.system import kvm_problem as probe

    return probe()


def resolve_backend(requested: str) -> tuple[Backend, str | None]:
    """``auto`` means KVM where /dev/kvm is usable, else the simulator; returns the backend
    and, when auto fell back, the one line saying why."""
    if requested != AUTO:
        return Backend(requested), None
    problem = kvm_problem()
    if problem is None:
        return Backend.KVM, None
    return Backend.SIM, f"no usable KVM ({problem.split(':')[0]}): running the simulator instead"
