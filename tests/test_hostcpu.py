"""The whole host's CPU over a window: other tasks' time by name, exact, with the fleet's
own process left out; /proc/stat's busy ticks beside it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tickless.host.hostcpu import HostCpuSnapshot, host_cpu_window

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"


def test_another_process_is_seen_by_name_and_ours_is_left_out() -> None:
    script = f"input()\n{BURN}print('burnt', flush=True)\ninput()\n"  # alive till told
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        before = HostCpuSnapshot.take({os.getpid()})
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline() == "burnt\n"
        start = time.process_time()
        while time.process_time() - start < 0.3:  # our own burn: left out
            pass
        after = HostCpuSnapshot.take({os.getpid()})
    finally:
        child.kill()
    name = os.path.basename(sys.executable)[:15]  # comm: the first 15 bytes
    assert before.tasks_ns[child.pid][0] == after.tasks_ns[child.pid][0] == name
    assert os.getpid() not in after.tasks_ns and threading_ids_absent(after)
    assert host_cpu_window(before, after) is not None


def threading_ids_absent(snapshot: HostCpuSnapshot) -> bool:
    """None of this process's threads are among the others."""
    return not set(map(int, os.listdir("/proc/self/task"))) & set(snapshot.tasks_ns)


def test_a_task_that_came_or_went_meanwhile_is_left_out_and_names_add_up() -> None:
    a = HostCpuSnapshot(0.0, 100, {1: ("kdamond.0", 0), 2: ("kworker", 10), 3: ("old", 5)})
    b = HostCpuSnapshot(
        2.0, 300, {1: ("kdamond.0", 400_000_000), 2: ("kworker", 10), 4: ("new", 9 << 30)}
    )
    window = host_cpu_window(a, b)
    assert window is not None
    assert window.other_tasks_top == {"kdamond.0": 20.0}  # 0.4 s of 2 s
    assert window.other_tasks_percent_of_core == 20.0
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    assert window.busy_percent_of_core == 100.0 * 200 / ticks_per_s / 2.0
    assert host_cpu_window(b, b) is None
