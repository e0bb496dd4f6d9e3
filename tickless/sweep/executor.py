"""Where a sweep's points run: a Dask cluster, local by default.

Simulator points run in parallel, one per worker thread. Points that time real hardware
(a KVM guest, the host baseline, idle guests) need the ``kvm`` worker resource, of which
each host has exactly one (the local cluster gives it to its first worker; a user's cluster
gives it with ``dask worker --resources kvm=1``, one worker per host), and they run after
the simulator points, so that nothing of the sweep's own disturbs their timing.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from tickless.errors import InputError, TicklessError
from tickless.sweep.point import Outcome, Point
from tickless.sweep.runners import run_point

__all__ = ["TIMING_RESOURCE", "StopSignalPlugin", "connect", "dashboard_link", "run_points"]

TIMING_RESOURCE = "kvm"
CONNECT_TIMEOUT_S = 10


class StopSignalPlugin(WorkerPlugin):  # type: ignore[misc]
    """Installs, in each worker's main thread, the no-op handler of the signal the VMM
    uses to kick vCPU threads out of KVM_RUN (a task's thread cannot install it)."""

    name = "tickless-stop-signal"

    def setup(self, worker: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            from tickless.vmm.vcpu_run import install_stop_signal

            install_stop_signal()


def _local_cluster(workers: int) -> Any:
    """``workers`` single-threaded worker processes; the first holds the host's one ``kvm``
    slot (in its spec, so that a restarted worker keeps it). The simulator's numba threads
    share the CPUs out among workers: oversubscribed, its per-chunk barrier makes each
    thread wait for a descheduled one (measured: 6 s instead of 1.5 s a point)."""
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=0,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":8787",  # taken: Dask picks a free port
        silence_logs=logging.ERROR,
    )
    numba_threads = max(1, (os.cpu_count() or 1) // workers)
    for i in range(workers):
        spec = copy.deepcopy(cluster.new_spec)
        spec["options"]["env"] = {"NUMBA_NUM_THREADS": str(numba_threads)}
        if i == 0:
            spec["options"]["resources"] = {TIMING_RESOURCE: 1}
        cluster.worker_spec[f"tickless-{i}"] = spec
    cluster.scale(workers)
    return cluster


@contextlib.contextmanager
def connect(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """A Dask client: to the scheduler at ``scheduler``, else to a new local cluster of
    ``workers`` processes (default: one per CPU), closed on the way out."""
    from distributed import Client

    cluster = None
    try:
        if scheduler is None:
            count = workers or os.cpu_count() or 1
            cluster = _local_cluster(count)
            client = Client(cluster)
            client.wait_for_workers(count, timeout=60)
        else:
            try:
                client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        client.register_plugin(StopSignalPlugin())
        try:
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def dashboard_link(client: Any, timeout_s: float = 2.0) -> str | None:
    """The dashboard's address when the scheduler serves one. A scheduler started with
    ``--no-dashboard`` (or without bokeh) still lists its HTTP service under "dashboard",
    and the address answers 404: only a page that answers counts."""
    info = client.scheduler_info()
    if "dashboard" not in info.get("services", {}):
        return None
    link: str = client.dashboard_link
    try:
        with urllib.request.urlopen(link, timeout=timeout_s) as page:
            return link if page.status == 200 else None
    except (OSError, ValueError):  # URLError and HTTPError are OSErrors
        return None


def check_timing_slots(client: Any, points: Sequence[Point]) -> None:
    """Points that time hardware need a worker with the ``kvm`` resource, or they would
    wait for ever: refuse before anything runs."""
    if not any(p.timing for p in points):
        return
    workers = client.scheduler_info()["workers"].values()
    if not any(w.get("resources", {}).get(TIMING_RESOURCE, 0) >= 1 for w in workers):
        raise InputError(
            f"no worker of this cluster has the {TIMING_RESOURCE} resource that KVM points "
            f"need: start one worker per host with 'dask worker ... --resources "
            f"{TIMING_RESOURCE}=1'"
        )


def _run_on_worker(command: str, spec: Any) -> tuple[dict[str, Any], float, str]:
    record, wall_s = run_point(command, spec)
    return record, wall_s, socket.gethostname()


def _error_line(exc: BaseException) -> str:
    if isinstance(exc, TicklessError):
        return str(exc).splitlines()[0]
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _run_phase(
    client: Any, points: Sequence[Point], on_done: Callable[[Point, Outcome], None]
) -> None:
    from distributed import as_completed

    by_cost = sorted(points, key=lambda p: -p.cost)  # the longest first: less idle at the end
    futures = {
        client.submit(
            _run_on_worker,
            p.command,
            p.spec,
            key=f"tickless-sweep-{p.key}",
            resources={TIMING_RESOURCE: 1} if p.timing else None,
            priority=len(by_cost) - rank,
            pure=False,
        ): p
        for rank, p in enumerate(by_cost)
    }
    try:
        for future in as_completed(futures):
            point = futures[future]
            if future.status == "finished":
                record, wall_s, host = future.result()
                on_done(point, Outcome(record, None, wall_s, host))
            else:
                on_done(point, Outcome(None, _error_line(future.exception()), None, None))
    finally:
        client.cancel(list(futures))


def run_points(
    client: Any, points: Sequence[Point], on_done: Callable[[Point, Outcome], None]
) -> None:
    """Run every point, calling ``on_done`` in this thread as each one finishes (failed
    ones too); simulator points first, then the points that time hardware."""
    check_timing_slots(client, points)
    _run_phase(client, [p for p in points if not p.timing], on_done)
    _run_phase(client, [p for p in points if p.timing], on_done)
