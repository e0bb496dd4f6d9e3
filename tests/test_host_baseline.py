"""The host baseline runs the real C program: timestamps must be complete, ordered and never
early; bad arguments must fail fast with one clear line. Latency values are not asserted:
they depend on the machine's load."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tickless import buildcache
from tickless.host.baseline import build_hostbench, run_host_baseline
from tickless.host.realtime import RealtimePolicy

INTERVAL_NS = 100_000
COUNT = 200


@pytest.mark.parametrize("method", ["relative", "absolute"])
@pytest.mark.parametrize("fifo_priority", [90, None])
def test_run_is_complete_ordered_and_never_early(method: str, fifo_priority: int | None) -> None:
    seen: list[int] = []
    run = run_host_baseline(
        INTERVAL_NS, COUNT, method, RealtimePolicy(fifo_priority=fifo_priority), seen.append
    )
    t = run.timestamps_ns
    assert t.dtype == np.int64
    assert t.shape == (COUNT + 1,)
    assert np.all(np.diff(t) > 0)
    if method == "relative":
        assert np.all(np.diff(t) >= INTERVAL_NS)
    else:
        assert np.all(t[1:] >= t[0] + INTERVAL_NS * np.arange(1, COUNT + 1))
    assert run.intervals_ns.mean() >= INTERVAL_NS
    assert run.wall_s >= COUNT * INTERVAL_NS / 1e9
    assert run.cpu_s >= 0
    assert seen[-1] == COUNT
    assert all(0 <= n <= COUNT for n in seen)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--count=10", "--method=relative"],
        ["--interval-ns=0", "--count=10", "--method=relative"],
        ["--interval-ns=1000", "--count=0", "--method=relative"],
        ["--interval-ns=1000", "--count=x", "--method=relative"],
        ["--interval-ns=1000", "--count=10", "--method=sideways"],
        ["--interval-ns=1000", "--count=10"],
        ["--interval-ns=1000", "--count=10", "--method=absolute", "--fifo=100"],
        ["--interval-ns=1000", "--count=10", "--method=absolute", "--bogus"],
        ["--interval-ns=1000", "--count=10", "--method=absolute", "stray"],
    ],
)
def test_bad_arguments_exit_2_with_one_usage_line(args: list[str]) -> None:
    proc = subprocess.run(
        [str(build_hostbench()), *args], capture_output=True, text=True, timeout=10, check=False
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("hostbench: ")
    assert "usage: hostbench --interval-ns N --count N" in lines[0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval_ns": 0, "count": 10}, "interval_ns must be positive"),
        ({"interval_ns": -5, "count": 10}, "interval_ns must be positive"),
        ({"interval_ns": 1000, "count": 0}, "count must be between 1 and 10000000"),
        ({"interval_ns": 1000, "count": 10_000_001}, "count must be between"),
        ({"interval_ns": 1000, "count": 10, "method": "sideways"}, "method must be"),
    ],
)
def test_python_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_host_baseline(**kwargs)  # type: ignore[arg-type]


def test_buildcache_rebuilds_exactly_when_an_input_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKLESS_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "answer.c"
    gcc = buildcache.require_tool("gcc")
    builds: list[Path] = []

    def build(work: Path) -> None:
        builds.append(work)
        buildcache.run_tool([gcc, "-O2", "-o", str(work / "answer"), str(src)])

    def answer() -> int:
        out = buildcache.cached_build("answer", [src.read_bytes()], build, ("answer",))
        assert out.parent == tmp_path / "cache"
        return subprocess.run([str(out / "answer")], check=False).returncode

    src.write_text("int main(void) { return 41; }\n")
    assert answer() == 41
    assert answer() == 41
    assert len(builds) == 1  # cached
    src.write_text("int main(void) { return 42; }\n")
    assert answer() == 42
    assert len(builds) == 2  # rebuilt for the new source
    src.write_text("int main(void) { return 41; }\n")
    assert answer() == 41
    assert len(builds) == 2  # the old version is still cached
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # temp build dirs are cleaned up


def test_buildcache_reports_compiler_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKLESS_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "broken.c"
    src.write_text("int main(void) { return undeclared; }\n")
    gcc = buildcache.require_tool("gcc")

    def build(work: Path) -> None:
        buildcache.run_tool([gcc, "-o", str(work / "broken"), str(src)])

    with pytest.raises(buildcache.BuildError, match="undeclared"):
        buildcache.cached_build("broken", [src.read_bytes()], build, ("broken",))
    assert not list((tmp_path / "cache").glob("broken-*"))


def test_require_tool_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(buildcache.BuildError, match="apt-get install binutils"):
        buildcache.require_tool("objcopy")
