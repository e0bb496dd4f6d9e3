"""Every command's bad input, table-driven: each option (and argument) that takes a value
is run with bad values (zero, negative, huge, wrong units, missing files, files of the
wrong kind, unwritable paths) and must be refused the same way.

What "refused" means, for every row:

* the exit status is not 0 (2 for a bad command-line value, 1 for a file that turns out
  unreadable or of the wrong kind once opened);
* stderr has exactly one line starting with ``Error: `` and that message is one line. The
  only other lines allowed are click's usage banner, which click prints above the Error
  line of a usage error (``Usage: ...``, ``Try '... -h' for help.`` and a blank line):
  it is part of click's one error report, not a second message;
* the Error line names the option (``--count``, or ``count``) or quotes the bad value, so
  the user knows what to fix;
* no ``Traceback`` anywhere, and no exception but click's exit (a bug would show here);
* stdout is empty, and nothing ran: every entry point that runs something (KVM, a guest,
  the simulator, a backend, the report builder) is replaced by a tripwire that fails the
  row. So a command that needs KVM refuses its bad input before KVM is touched, and these
  rows need no KVM (no ``kvm`` marker). The one look at /dev/kvm allowed is the probe
  ``--backend auto`` makes to choose a backend; none of these rows needs KVM to be
  refused today. A row that ever does would carry ``kvm=True`` (the ``kvm`` marker).

The table is checked against the click command objects themselves: the test walks
``tickless.cli.main`` and fails for any parameter that takes a value and has neither rows
nor an entry in ``FREE_TEXT`` (a value no input can make bad), so a new option cannot be
forgotten.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tickless.cli import main

HUGE = "1" + "0" * 30
UNWRITABLE = "/sys/tickless-bad-input.json"  # no one, root included, creates files there

COUNTS = ("0", "-1", HUGE, "ten", "5 parsecs")
SEEDS = ("-1", HUGE, "ten")
DURATIONS = ("0ns", "-5us", "10 parsecs", "5", "100000000000s")
DURATIONS_OR_ZERO = ("-5us", "10 parsecs", "5", "100000000000s", "1e3s")
CHOICE = ("bogus", "")
OUTPUT_FILES = ("{tmp}/missing/out.json", "{dir}", UNWRITABLE, "/dev/null")
INPUT_JSON = ("{tmp}/missing.json", "{dir}", "{png}", "{empty}", "{wrong_json}")
KERNELS = ("{tmp}/missing", "{dir}", "{png}", "{empty}", "/bin/sh")
FLEET_TEXT = ("bogus", "", "{png}")


@dataclass(frozen=True)
class Row:
    """Bad ``values`` for one parameter; ``context`` makes it count (a RESULT argument for
    a report option, --guest linux for --kernel)."""

    values: tuple[str, ...]
    context: tuple[str, ...] = ()
    kvm: bool = False  # refused only once KVM is open (none today)


# command -> parameter (an option's first flag, an argument's name) -> its bad values
TABLE: dict[str, dict[str, Row]] = {
    "measure": {
        "--timer": Row(CHOICE),
        "--advance": Row((*CHOICE, "1", "on"), ("--timer", "lapic")),
        "--guests": Row((*COUNTS, "257")),
        "--interval": Row(DURATIONS),
        "--count": Row(COUNTS),
        "--mode": Row(CHOICE),
        "--hz": Row(COUNTS),
        "--guest": Row(CHOICE),
        "--kernel": Row(KERNELS, ("--guest", "linux")),
        "--linux-drivers": Row(CHOICE, ("--guest", "linux")),
        "--console": Row(OUTPUT_FILES),
        "--method": Row(CHOICE),
        "--wait": Row(CHOICE),
        "--slop": Row(DURATIONS_OR_ZERO),
        "--dilation": Row(("0", "-1", "1e9", "abc", "1/0")),
        "--halt-poll": Row(DURATIONS_OR_ZERO),
        "--json": Row(OUTPUT_FILES),
        "--load": Row(CHOICE),
        "--io-rate": Row(("0", "-1", "1e30", "nan", "inf", "fast")),
        "--io-handler": Row(DURATIONS_OR_ZERO),
        "--hold-back": Row(DURATIONS_OR_ZERO, ("--timer", "precise")),
        "--io-cpu": Row((*CHOICE, "1", "both"), ("--load", "io")),
        "--spin-threshold": Row(DURATIONS_OR_ZERO, ("--timer", "precise")),
        "--backend": Row(CHOICE),
        "--platform": Row(("bogus", "", "{tmp}/missing.json", "{dir}", "{png}", "{result}")),
        "--seed": Row(SEEDS),
        "--rtc-epoch": Row(
            ("yesterday", "", "2026-13-01", "1969-12-31T23:59:59Z", "12:00"), ("--timer", "rtc")
        ),
    },
    "idle": {
        "--guests": Row(COUNTS),
        "--mode": Row(CHOICE),
        "--hz": Row(COUNTS),
        "--guest": Row(CHOICE),
        "--kernel": Row(KERNELS, ("--guest", "linux")),
        "--linux-drivers": Row(CHOICE, ("--guest", "linux")),
        "--duration": Row((*DURATIONS, "5ms")),  # an idle run lasts at least 10 ms
        "--slop": Row(DURATIONS_OR_ZERO),
        "--halt-poll": Row(DURATIONS_OR_ZERO),
        "--step": Row(COUNTS, ("--mode", "periodic")),
        "--miss-threshold": Row(("0", "1", "-0.5", "nan", "inf", "lots")),
        "--seed": Row(SEEDS),
        "--timer": Row((*CHOICE, "lapic")),
        "--pv-idle": Row((*CHOICE, "nap")),
        "--processes": Row((*COUNTS, "11")),  # more than the 10 guests
        "--dilation": Row(("0", "-1", "1e9", "abc", "1/0")),
        "--json": Row(OUTPUT_FILES),
    },
    "cron": {
        "--every": Row((*DURATIONS, "500us", "2h")),
        "--guests": Row((*COUNTS, "65")),
        "--duration": Row(DURATIONS),
        "--timer": Row((*CHOICE, "lapic")),
        "--resolution": Row(("0ns", "-1ms", "10 parsecs", "500us", "2s")),
        "--dilation": Row(("0", "-1", "1e9", "abc", "1/0")),
        "--seed": Row(SEEDS),
        "--json": Row(OUTPUT_FILES),
    },
    "cosim pingpong": {
        "--guests": Row((*COUNTS, "3", "65")),
        "--latency": Row((*DURATIONS, "500ns", "11s")),
        "--count": Row((*COUNTS, "1000001")),
        "--seed": Row(SEEDS),
        "--loss": Row(("-0.1", "0.95", "1", "nan", "lots")),
        "--bandwidth": Row(("-1", "nan", "inf", "fast")),
        "--retry": Row(("-5us", "10 parsecs", "5", "2h", "15ms")),
        "--json": Row(OUTPUT_FILES),
        "--guest": Row(CHOICE),
    },
    "table1": {
        "--timer": Row(CHOICE),
        "--interval-us": Row((*COUNTS, "50us")),
        "--load": Row(CHOICE),
        "--guest": Row(CHOICE),
        "--json": Row(OUTPUT_FILES),
    },
    "report": {
        "RESULTS": Row((*INPUT_JSON, "{profile}")),
        "--out": Row(OUTPUT_FILES, ("{result}",)),
        "--figures": Row(("{wrong_json}", "{png}/figs", "/sys/figs"), ("{result}",)),
        "--cyclictest-histogram": Row(OUTPUT_FILES, ("{result}",)),
        "--max-us": Row(COUNTS, ("{result}",)),
    },
    "console": {
        "--guest": Row(CHOICE),
        "--kernel": Row(KERNELS, ("--guest", "linux")),
        "--linux-drivers": Row(CHOICE, ("--guest", "linux")),
        "--timer": Row((*CHOICE, "precise")),  # a Linux kernel ticks on pv, lguest or lapic only
        "--mode": Row(CHOICE),
        "--hz": Row(COUNTS),
        "--dilation": Row(("0", "-1", "1e9", "abc", "1/0")),
        "--duration": Row(DURATIONS),
        "--console": Row(OUTPUT_FILES),
    },
    "fuzz": {
        "--calls": Row(COUNTS),
        "--seed": Row(SEEDS),
        "--json": Row(OUTPUT_FILES),
    },
    "sim fleet": {
        "--guests": Row(COUNTS),
        "--hz": Row(COUNTS),
        "--dilation": Row(("0", "-1", "1e9", "abc", "1/0")),
        "--mode": Row((*FLEET_TEXT, "periodic,bogus")),
        "--duration": Row(DURATIONS),
        "--cpus": Row(COUNTS),
        "--slop": Row(DURATIONS_OR_ZERO),
        "--workload": Row((*FLEET_TEXT, "idle,bogus")),
        "--placement": Row((*FLEET_TEXT, "cpu:-1", "cpu:99")),
        "--housekeeping": Row(("bogus", "5", "0s", "-1s", "1s,2s,3s", "100000000000s")),
        "--count": Row(COUNTS, ("--workload", "measure")),
        "--interval": Row(DURATIONS, ("--workload", "measure")),
        "--io": Row(("bogus", "", "-5/s,5us", "nan/s,5us", "1733/s,5 parsecs", "1733/s,5us,99")),
        "--seed": Row(SEEDS),
        "--cost-model": Row((*CHOICE, "{tmp}/missing.json", "{wrong_json}", "{result}")),
        "--json": Row(OUTPUT_FILES),
    },
    "sweep": {
        "COMMAND [OPTIONS]": Row(("bogus", "sim"), ("--out", "{tmp}/o.parquet")),
        "--param": Row(
            ("bogus", "planets=1,2", "slop=5parsecs", "guests=1,,2", "json=a.json"),
            ("sim", "fleet", "--out", "{tmp}/o.parquet"),
        ),
        "--grid": Row(
            ("{tmp}/missing.toml", "{dir}", "{png}", "{wrong_json}"),
            ("sim", "fleet", "--out", "{tmp}/o.parquet"),
        ),
        "--out": Row((*OUTPUT_FILES, "{tmp}/o.csv", "{wrong_json}"), ("sim", "fleet")),
        "--scheduler": Row(
            ("bogus", "", "tcp://host", "tcp://host:port"), ("sim", "fleet", "--out", "{tmp}/o.pq")
        ),
        "--workers": Row(COUNTS, ("sim", "fleet", "--out", "{tmp}/o.parquet")),
    },
    "sim table1": {
        "--count": Row(("1", *COUNTS)),  # a row needs two events for an interval
        "--seed": Row(SEEDS),
        "--json": Row(OUTPUT_FILES),
    },
    "sim fit": {
        "RESULTS": Row((*INPUT_JSON, "{profile}")),
        "--record": Row(("-1", "1", HUGE, "ten"), ("{result}",)),
        "--out": Row(OUTPUT_FILES, ("{result}",)),
    },
    "sim profiles": {
        "PLATFORM": Row(("bogus", "", "{tmp}/missing.json", "{dir}", "{png}", "{result}")),
        "--out": Row(OUTPUT_FILES, ("KVM",)),
    },
}

FREE_TEXT = {  # parameters whose every value is valid: why
    ("report", "--title"): "any text is a page title",
    ("sim fit", "--name"): "any text names a profile",
}


def _commands(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name)), command


def _key(param: click.Parameter) -> str:
    if isinstance(param, click.Argument):
        return param.human_readable_name
    return param.opts[0]


def _takes_a_value(param: click.Parameter) -> bool:
    return not (isinstance(param, click.Option) and (param.is_flag or param.count))


def _value_params() -> list[tuple[str, click.Parameter]]:
    found = [
        (name, p) for name, command in _commands(main) for p in command.params if _takes_a_value(p)
    ]
    found += [("tickless", p) for p in main.params if _takes_a_value(p)]  # none: --version
    return found


def test_every_option_has_bad_input_rows() -> None:
    """A parameter that takes a value and has no row here is a failure: add its rows."""
    missing = [
        f"{command} {_key(p)}"
        for command, p in _value_params()
        if _key(p) not in TABLE.get(command, {}) and (command, _key(p)) not in FREE_TEXT
    ]
    assert missing == [], f"no bad-input rows for: {', '.join(missing)}"


def test_the_table_names_only_real_parameters() -> None:
    real = {(command, _key(p)) for command, p in _value_params()}
    listed = {(command, key) for command, rows in TABLE.items() for key in rows}
    assert listed - real == set()
    assert set(FREE_TEXT) - real == set()


def _cases() -> Iterator[object]:
    for command, rows in TABLE.items():
        for key, row in rows.items():
            for value in row.values:
                marks = [pytest.mark.kvm] if row.kvm else []
                yield pytest.param(
                    command, key, value, row.context, marks=marks, id=f"{command} {key} {value!r}"
                )


class RanBeforeRefusing(AssertionError):
    """A tripwire: something ran although the input was bad."""


@pytest.fixture
def tripwires(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Replace every entry point that runs something; a row reaching one fails."""
    import tickless.backends
    import tickless.cli.table1
    import tickless.kvm.system
    import tickless.measure.cron
    import tickless.measure.fuzz
    import tickless.measure.idle
    import tickless.report.html_report
    import tickless.sim.fleet
    import tickless.sim.table1
    import tickless.sweep.executor
    import tickless.vmm.host

    def ran(*args: object, **kwargs: object) -> None:
        raise RanBeforeRefusing("the command ran before refusing its input")

    for owner, name in [
        (tickless.kvm.system.KvmSystem, "__init__"),
        (tickless.vmm.host.VmmHost, "__init__"),
        (tickless.backends, "measure"),
        (tickless.measure.idle, "run_idle"),
        (tickless.measure.cron, "run_cron"),
        (tickless.measure.fuzz, "run_fuzz"),
        (tickless.cli.table1, "run_table1"),
        (tickless.sim.fleet, "compile_engine"),
        (tickless.sim.fleet, "run_fleet"),
        (tickless.sim.table1, "simulate_table1"),
        (tickless.sweep.executor, "connect"),
        (tickless.report.html_report, "build_report"),
    ]:
        monkeypatch.setattr(owner, name, ran)
    monkeypatch.chdir(tmp_path)  # a default output (report.html) would land here


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """The placeholders' files: each of a kind a command does not want."""
    from tickless.backends import measure
    from tickless.results.schema import to_json_dict, write_json_atomic
    from tickless.results.spec import MeasureSpec

    (tmp_path / "a-dir").mkdir()
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (tmp_path / "empty.json").write_bytes(b"")
    (tmp_path / "wrong.json").write_text('{"not": "a result"}\n')
    result = tmp_path / "result.json"
    record = measure(MeasureSpec(timer="lguest", interval_ns=50_000, count=50, backend="sim"))
    write_json_atomic(result, to_json_dict(record))
    profile = tmp_path / "profile.json"
    assert (
        CliRunner().invoke(main, ["sim", "profiles", "KVM", "--out", str(profile)]).exit_code == 0
    )
    return {
        "tmp": str(tmp_path),
        "dir": str(tmp_path / "a-dir"),
        "png": str(tmp_path / "image.png"),
        "empty": str(tmp_path / "empty.json"),
        "wrong_json": str(tmp_path / "wrong.json"),
        "result": str(result),
        "profile": str(profile),
    }


def _args(key: str, value: str, context: tuple[str, ...]) -> list[str]:
    if key.startswith("-"):
        return [*context, key, value]
    return [*context, value]  # an argument


@pytest.mark.parametrize(("command", "key", "value", "context"), list(_cases()))
def test_bad_input_is_one_line_before_anything_runs(
    command: str,
    key: str,
    value: str,
    context: tuple[str, ...],
    files: dict[str, str],
    tripwires: None,
) -> None:
    value = value.format(**files)
    context = tuple(c.format(**files) for c in context)
    result = CliRunner().invoke(main, [*command.split(), *_args(key, value, context)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a tripwire, or a bug: shown with its traceback
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    banner = ("Usage: ", "Try '")
    lines = [line for line in result.stderr.splitlines() if line and not line.startswith(banner)]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    names = {key, key.lstrip("-"), key.lower()}
    assert any(n in lines[0] for n in names) or (value and value in lines[0]), lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["measure", "--backend", "sim", "--count", "10"],
        ["measure", "--backend", "kvm", "--count", "10"],
        ["idle", "--guests", "1"],
        ["cron", "--duration", "1s"],
        ["table1", "--quick"],
        ["console"],
        ["fuzz", "--calls", "10"],
        ["report", "{result}"],
        ["sim", "fleet"],
        ["sim", "table1"],
    ],
    ids=" ".join,
)
def test_the_tripwires_catch_a_run(
    args: list[str], files: dict[str, str], tripwires: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Good input reaches a tripwire: the rows above pass because nothing ran, not because
    a tripwire was missing. (KVM is said to be usable, so that commands needing it go on.)"""
    import tickless.backends
    import tickless.cli.common

    monkeypatch.setattr(tickless.backends, "kvm_problem", lambda: None)
    monkeypatch.setattr(tickless.cli.common, "kvm_problem", lambda: None)
    result = CliRunner().invoke(main, [a.format(**files) for a in args])
    assert isinstance(result.exception, RanBeforeRefusing), result.output
