"""Versioned JSON result record, shared by real KVM runs and the simulator.

One measurement run becomes one JSON object; multi-run commands write a JSON list of them.
The on-disk shape (``SCHEMA_VERSION`` = 5; versions 1 to 4 still load) is flat so that
``jq`` and spreadsheets can read it.
Durations are integer or float nanoseconds (``_ns``), host totals are seconds (``_s``), rates are
per second of wall-clock run time (``_per_s``). Every key below is always written, and
``from_json_dict`` requires every key and rejects unknown ones, so a record survives a
load/save round trip without losing anything.

Top level
    schema_version  int    Format version of this record; readers refuse versions they do not know.
    backend         str    Where the timer ran: "kvm" (real VM), "sim" (simulator), "host" (bare).
    timer           str    Timer device under test: "pv", "lapic", "host", ... (open set).
    mode            str    "tickless" (one-shot deadlines) or "periodic" (a fixed tick).
    method          str    "relative" (next = now + d) or "absolute" (next = previous deadline + d).
    hz              int?   Tick rate of the guest's periodic tick in Hz; null when not meaningful.
    load            str    Host/guest load during the run: "idle" (paper), "io" (paper), "cpu", ...
    platform        str?   Simulator profile name; null for real runs.
    interval_ns     int    Requested interval d between timer events, ns.
    count           int    Number of measured intervals.
    mean_ns         float  Mean measured interval, ns.
    sd_ns           float  Uncorrected (ddof=0) standard deviation of the intervals, ns.
    ci99_ns         [float, float]  Student-t 99% confidence interval of the mean, [low, high], ns.
    min_ns, p50_ns, p99_ns, p999_ns, max_ns  float  Minimum, median, 99th and 99.9th
                                   percentiles (numpy linear interpolation) and maximum, ns.
    lateness        object Event lateness = actual firing time - deadline, ns:
        mean_ns, sd_ns (ddof=0), p99_ns, max_ns  float
        early_count  int   Events that fired before their deadline (any is a failure).
    host            object Host-side counters over the run:
        exits        int    VM exits.
        hypercalls   int    Guest hypercalls (e.g. timer programming).
        injections   int    Timer interrupts injected into the guest.
        wakeups      int    Host timer wake-ups taken on behalf of the guest timer.
        timer_events int    Timer events delivered to the guest.
        duration_s   float  Wall-clock duration of the run, s.
        cpu_s        float  Host CPU time (user + system) used by the VMM, s.
        wakeups_per_s, timer_events_per_s, injections_per_s  float  The counts above divided
                     by duration_s (0 when duration_s is 0); stored for readers, checked on load.
    machine         object Free-form str -> str facts about the host: kernel release, cpu model,
                           tsc_khz, ... filled by the caller. ``timer_thread``: the host
                           thread that served the timer and its policy as the kernel
                           reports it ("deadline loop, SCHED_FIFO 90"); ``guest_wait``:
                           "halt", "spin" or "block ..." (--warp-idle: every idle wait a BLOCK).
    notes           [str]  Human remarks, e.g. "3 events merged by the host".
    created_utc     str    ISO 8601 UTC time the record was created.
    tool_version    str    Version of the tickless package that wrote it ("unknown" if it is
                           not installed).
    intervals_ns    [int]  Raw measured intervals, ns, in event order (for figures).
    lateness_ns     [int]  Raw lateness of each event, ns, in event order.

Added in version 2 (a version 1 file reads as: guest "small" for kvm records, else null; the
rest null or empty):
    guest            str?   What ran in the VM: "small" (tickless's own kernel) or "linux";
                            null when no guest ran (host, sim).
    guest_kernel     str?   The Linux guest's kernel release (utsname), else null.
    guest_clockevent str?   The clock-event device the guest kernel's tick used ("tickless",
                            "lapic-deadline", ...); null for the small guest.
    guest_clocksource str?  The clocksource the guest kernel chose; null for the small guest.
    assists          object str -> int: emulator gaps of this host the VMM filled, by name
                            (e.g. "int3": the kernel's int3 self-test).

Added in version 3 (``results/breakdown.py``; until version 2 timer "pv" named lguest's
device, so older kvm and sim "pv" records read as "lguest"):
    explain          object? ``--explain``: per-event parts (ns), their summary, and the cause
                            that dominates the mean, p99 and max lateness; else null.
    guest_rows       [object] ``--guests N``: one row per guest; empty for one guest.

Added in version 4 (each field and its units: ``results/interrupts.py``; a version 1-3
record reads as advance "auto" for pv and precise, else "off", and null blocks): ``advance``
("auto" | "off"), ``interrupt_lateness`` (count, mean_ns, p99_ns, max_ns, early_count: when
each interrupt reached the guest, before any spin), ``interrupt_lateness_ns`` (per interrupt)
and ``spin`` (mean_ns, cpu_s). ``lateness`` above is the *delivered* event, never early by
construction on a path that spins.

Added in version 5 (a version 1-4 record reads as null: not known):
    pit              str?   Which i8254 the guest had: "tickless-i8254" (the timer zoo's,
                            on the group's timeline), "kvm-pit2" (KVM's in-kernel one) or
                            "none"; null for runs without a guest.
    io               object? The I/O load's accounting and steering (``results/io_counts.py``).
    late_causes      object? ``--explain`` on the precise channel: each late event's cause.
    guest_realtime_at_boot int?  Linux: its wall clock at the workload's start minus the
                            guest time since the start, ns since the Unix epoch: the wall
                            time Linux believes the guest started at (on the zoo, set at
                            boot from the emulated CMOS RTC); null for other guests.
    clock_agreement_ppm object? A Linux guest's clocks (tsc, hpet, jiffies, monotonic, rtc,
                            realtime) -> each one's rate against the group's timeline, ppm,
                            from the workload's first and last samples (null per clock the
                            kernel lacks; the whole null where it took no samples: only the
                            stock kernel samples, ``measure/linux_clocks.py``).
    clocksource_unstable [str]? Every clocksource the Linux kernel marked unstable (its
                            console); null for the small guest.
    console_time_ratio float? Linux: printk seconds per host wall second over the workload's
                            console lines (the dilation, seen from outside); null if too few.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from tickless.atomicfile import write_bytes_atomic
from tickless.axes import Advance, Backend, Method, TickMode, choices
from tickless.errors import TicklessError
from tickless.jsonfields import StrictReader, json_type, read_json_file
from tickless.results.breakdown import Breakdown, GuestRow, breakdown_from_json, breakdown_to_json
from tickless.results.host_counts import (
    HostCounts,
    host_counts_from_json,
    host_counts_to_json,
)
from tickless.results.interrupts import (
    InterruptLateness,
    SpinCost,
    interrupt_lateness_from_json,
    interrupt_lateness_to_json,
    spin_from_json,
    spin_to_json,
)
from tickless.results.io_counts import (
    IoCounts,
    LateCauses,
    io_counts_from_json,
    io_counts_to_json,
    late_causes_from_json,
    late_causes_to_json,
)
from tickless.results.stats import (
    IntervalStats,
    LatenessStats,
    read_interval_stats,
    read_lateness,
)

__all__ = [
    "BACKENDS",
    "METHODS",
    "MODES",
    "SCHEMA_VERSION",
    "HostCounts",
    "ResultRecord",
    "SchemaError",
    "from_json_dict",
    "load_results",
    "to_json_dict",
    "write_json_atomic",
]

SCHEMA_VERSION = 5
READABLE_VERSIONS = (1, 2, 3, 4, 5)
PITS = ("tickless-i8254", "kvm-pit2", "none")
# The closed axes a record is checked against; "timer" and "load" stay open sets of strings.
BACKENDS = tuple(choices(Backend))
MODES = tuple(choices(TickMode))
METHODS = tuple(choices(Method))
ADVANCES = tuple(choices(Advance))


class SchemaError(TicklessError, ValueError):
    """A result file or record that cannot be read; the message is one line naming the problem."""


def _now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# Once per process: a lookup scans sys.path and keeps a cache per directory mtime, which,
# once per record, grew the heap of a long-lived process (the lifecycle soak found it).
@functools.cache
def _tool_version() -> str:
    try:
        return metadata.version("tickless")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(kw_only=True)
class ResultRecord:
    """One measurement run; keyword-only so call sites stay readable with this many fields."""

    backend: str
    timer: str
    mode: str
    method: str
    hz: int | None
    load: str = "idle"
    interval_ns: int
    stats: IntervalStats
    lateness: LatenessStats
    host: HostCounts
    intervals_ns: list[int]
    lateness_ns: list[int]
    platform: str | None = None
    machine: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    created_utc: str = field(default_factory=_now_utc)
    tool_version: str = field(default_factory=_tool_version)
    guest: str | None = None
    guest_kernel: str | None = None
    guest_clockevent: str | None = None
    guest_clocksource: str | None = None
    assists: dict[str, int] = field(default_factory=dict)
    explain: Breakdown | None = None
    guest_rows: list[GuestRow] = field(default_factory=list)
    advance: str = "off"
    interrupt_lateness: InterruptLateness | None = None
    interrupt_lateness_ns: list[int] = field(default_factory=list)
    spin: SpinCost | None = None
    pit: str | None = None
    io: IoCounts | None = None
    late_causes: LateCauses | None = None
    guest_realtime_at_boot: int | None = None
    clock_agreement_ppm: dict[str, float | None] | None = None
    clocksource_unstable: list[str] | None = None
    console_time_ratio: float | None = None

    @property
    def path_label(self) -> str:
        """The timer path as tables name it: "pv", or "pv (linux)" for a Linux guest's."""
        return f"{self.timer} (linux)" if self.guest == "linux" else self.timer

    def __post_init__(self) -> None:
        # Fail when the record is built, not later when someone tries to load the file.
        for name, value, allowed in (
            ("backend", self.backend, BACKENDS),
            ("mode", self.mode, MODES),
            ("method", self.method, METHODS),
            ("advance", self.advance, ADVANCES),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.interval_ns <= 0:
            raise ValueError(f"interval_ns must be positive, got {self.interval_ns}")


def to_json_dict(record: ResultRecord) -> dict[str, Any]:
    """The on-disk shape documented in the module docstring."""
    s, late, host = record.stats, record.lateness, record.host
    return {
        "schema_version": SCHEMA_VERSION,
        "backend": record.backend,
        "timer": record.timer,
        "mode": record.mode,
        "method": record.method,
        "hz": record.hz,
        "load": record.load,
        "platform": record.platform,
        "interval_ns": record.interval_ns,
        "count": s.count,
        "mean_ns": s.mean_ns,
        "sd_ns": s.sd_ns,
        "ci99_ns": [s.ci99_low_ns, s.ci99_high_ns],
        "min_ns": s.min_ns,
        "p50_ns": s.p50_ns,
        "p99_ns": s.p99_ns,
        "p999_ns": s.p999_ns,
        "max_ns": s.max_ns,
        "lateness": {
            "mean_ns": late.mean_ns,
            "sd_ns": late.sd_ns,
            "p99_ns": late.p99_ns,
            "max_ns": late.max_ns,
            "early_count": late.early_count,
        },
        "host": host_counts_to_json(host),
        "machine": dict(record.machine),
        "notes": list(record.notes),
        "created_utc": record.created_utc,
        "tool_version": record.tool_version,
        "intervals_ns": list(record.intervals_ns),
        "lateness_ns": list(record.lateness_ns),
        "guest": record.guest,
        "guest_kernel": record.guest_kernel,
        "guest_clockevent": record.guest_clockevent,
        "guest_clocksource": record.guest_clocksource,
        "assists": dict(record.assists),
        "explain": breakdown_to_json(record.explain),
        "guest_rows": [row.to_json() for row in record.guest_rows],
        "advance": record.advance,
        "interrupt_lateness": interrupt_lateness_to_json(record.interrupt_lateness),
        "interrupt_lateness_ns": list(record.interrupt_lateness_ns),
        "spin": spin_to_json(record.spin),
        "pit": record.pit,
        "io": io_counts_to_json(record.io),
        "late_causes": late_causes_to_json(record.late_causes),
        "guest_realtime_at_boot": record.guest_realtime_at_boot,
        "clock_agreement_ppm": record.clock_agreement_ppm,
        "clocksource_unstable": record.clocksource_unstable,
        "console_time_ratio": record.console_time_ratio,
    }


def _reader(obj: Any) -> StrictReader:
    return StrictReader(obj, SchemaError, format_name="the schema")


def _iso8601(reader: StrictReader, key: str) -> str:
    value = reader.str_(key)
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise reader.fail(key, f"must be an ISO 8601 time, got {value!r}") from None
    return value


def from_json_dict(d: Any) -> ResultRecord:
    """Validate an on-disk record and rebuild it; raises SchemaError naming the first bad key."""
    if not isinstance(d, dict):
        raise SchemaError(f"a result record must be a JSON object, got {json_type(d)}")
    top = _reader(d)
    version = top.int_("schema_version")
    if version not in READABLE_VERSIONS:
        raise SchemaError(
            f"key 'schema_version' is {version}; this tool reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )

    stats, lateness, host = read_interval_stats(top), read_lateness(top), host_counts_from_json(top)
    record = ResultRecord(
        backend=top.str_("backend", BACKENDS),
        timer=top.str_("timer"),
        mode=top.str_("mode", MODES),
        method=top.str_("method", METHODS),
        hz=top.optional_int("hz"),
        load=top.str_("load"),
        platform=top.optional_str("platform"),
        interval_ns=top.int_("interval_ns", minimum=1),
        stats=stats,
        lateness=lateness,
        host=host,
        machine=top.str_dict("machine"),
        notes=top.str_list("notes"),
        created_utc=_iso8601(top, "created_utc"),
        tool_version=top.str_("tool_version"),
        intervals_ns=top.int_list("intervals_ns"),
        lateness_ns=top.int_list("lateness_ns"),
    )
    if version >= 2:
        record.guest = top.optional_str("guest")
        record.guest_kernel = top.optional_str("guest_kernel")
        record.guest_clockevent = top.optional_str("guest_clockevent")
        record.guest_clocksource = top.optional_str("guest_clocksource")
        record.assists = top.int_dict("assists")
    elif record.backend == "kvm":
        record.guest = "small"  # version 1 knew no other guest
    if version >= 3:
        explain = top.get("explain")
        record.explain = None if explain is None else breakdown_from_json(top.object_("explain"))
        record.guest_rows = [GuestRow.from_json(_reader(row)) for row in top.list_("guest_rows")]
    elif record.timer == "pv" and record.backend in ("kvm", "sim"):
        record.timer = "lguest"  # the device "pv" named until version 3
    if version >= 4:
        record.advance = top.str_("advance", ADVANCES)
        record.interrupt_lateness_ns = top.int_list("interrupt_lateness_ns")
        record.interrupt_lateness = interrupt_lateness_from_json(top, record.interrupt_lateness_ns)
        record.spin = spin_from_json(top)
    else:  # pv and precise always spun; nothing else could
        record.advance = "auto" if record.timer in ("pv", "precise") else "off"
    if version >= 5:
        pit = top.optional_str("pit")
        if pit is not None and pit not in PITS:
            raise top.fail("pit", f"must be one of {', '.join(PITS)} or null; got {pit!r}")
        record.pit = pit
        io, late = top.get("io"), top.get("late_causes")
        record.io = None if io is None else io_counts_from_json(top.object_("io"))
        record.late_causes = (
            None if late is None else late_causes_from_json(top.object_("late_causes"))
        )
        record.guest_realtime_at_boot = top.optional_int("guest_realtime_at_boot")
        record.clock_agreement_ppm = _optional_ppm(top)
        if top.get("clocksource_unstable") is not None:
            record.clocksource_unstable = top.str_list("clocksource_unstable")
        if top.get("console_time_ratio") is not None:
            record.console_time_ratio = top.float_("console_time_ratio")
    top.check_no_extra()
    return record


def _optional_ppm(top: StrictReader) -> dict[str, float | None] | None:
    """``clock_agreement_ppm``: null, or clock name -> ppm (a number) or null."""
    if top.get("clock_agreement_ppm") is None:
        return None
    clocks = top.object_("clock_agreement_ppm")
    out: dict[str, float | None] = {}
    for name in list(clocks.obj):
        out[name] = None if clocks.get(name) is None else clocks.float_(name)
    return out


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON so that readers see the old file or the complete new one, never a torn
    write. Serialises first, so an unserialisable payload leaves the old file untouched."""
    text = json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    write_bytes_atomic(Path(path), text.encode("utf-8"))


def load_results(path: Path) -> list[ResultRecord]:
    """Read a file holding one record or a list of records; errors are one line naming the file."""
    path = Path(path)
    data = read_json_file(path, SchemaError)
    if isinstance(data, dict):
        items: list[Any] = [data]
        single = True
    elif isinstance(data, list):
        items = data
        single = False
    else:
        raise SchemaError(
            f"{path}: expected a result object or a list of them, got {json_type(data)}"
        )
    records = []
    for i, item in enumerate(items):
        try:
            records.append(from_json_dict(item))
        except SchemaError as exc:
            where = f"{path}" if single else f"{path}: record {i}"
            raise SchemaError(f"{where}: {exc}") from None
    return records
