"""tickless sweep names a Dask dashboard only when the scheduler really serves one: a
scheduler started with ``--no-dashboard`` still lists an HTTP service called "dashboard"
(whose pages answer 404), so the service list alone would print a dead address."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client

from tickless.sweep.executor import dashboard_link

START_BOUND_S = 60  # a generous bound for a scheduler to start on a loaded machine


@pytest.fixture(params=[True, False], ids=["dashboard", "no-dashboard"])
def scheduler(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, bool]]:
    """A real ``dask scheduler`` on loopback, with or without its dashboard."""
    with_dashboard: bool = request.param
    info = tmp_path / "scheduler.json"
    flag = "--dashboard" if with_dashboard else "--no-dashboard"
    dask = Path(sys.executable).with_name("dask")
    proc = subprocess.Popen(
        [str(dask), "scheduler", "--host", "127.0.0.1", "--port", "0", flag,
         "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(info)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        end = time.monotonic() + START_BOUND_S
        while not info.exists() or not info.read_text().strip():
            assert proc.poll() is None, "dask scheduler exited"
            assert time.monotonic() < end, "dask scheduler did not start"
            time.sleep(0.1)
        yield json.loads(info.read_text())["address"], with_dashboard
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_dashboard_is_named_only_when_it_answers(scheduler: tuple[str, bool]) -> None:
    address, with_dashboard = scheduler
    with Client(address, timeout=START_BOUND_S) as client:
        assert "dashboard" in client.scheduler_info()["services"]  # listed either way
        link = dashboard_link(client)
    if with_dashboard:
        assert link is not None and link.startswith("http://127.0.0.1:"), link
    else:
        assert link is None, link
