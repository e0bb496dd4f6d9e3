"""tickless cosim: guests in lockstep with a simulated network (SimPy)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from tickless.axes import GuestKind, choices
from tickless.cli.common import (
    SEED,
    console,
    json_option,
    require_kvm,
)
from tickless.cli.kept import run_and_keep
from tickless.errors import InputError
from tickless.units import DurationParam, format_duration_ns

LATENCY = DurationParam(max_ns=10 * 10**9)
OPTIONAL = DurationParam(allow_zero=True, max_ns=3600 * 10**9)


@click.group()
def cosim() -> None:
    """Guests driven by a discrete-event simulator: time moves only when it says."""


@cosim.command()
@click.option(
    "--guests",
    type=click.IntRange(2, 64),
    default=2,
    show_default=True,
    help="Guests, in pairs: guest 2p+1 (small) pings guest 2p+2 over a duplex link.",
)
@click.option(
    "--latency",
    "latency_ns",
    type=LATENCY,
    default="10ms",
    show_default=True,
    help="Each link's one-way latency (also the lookahead and the quantum).",
)
@click.option("--count", type=click.IntRange(1, 1_000_000), default=100, show_default=True,
              help="Round trips per pair.")  # fmt: skip
@click.option("--seed", type=SEED, default=0, show_default=True, help="Draws the links' losses.")
@click.option(
    "--loss",
    type=click.FloatRange(0.0, 0.9),
    default=0.0,
    show_default=True,
    help="Probability that a link loses a message (seeded); lost pings are sent again.",
)
@click.option(
    "--bandwidth",
    "bandwidth_bps",
    type=click.FloatRange(0.0),
    default=0.0,
    help="Link bandwidth in bit/s (0: none; a message then takes no transmission time).",
)
@click.option(
    "--retry",
    "retry_ns",
    type=OPTIONAL,
    default="0",
    help="A ping unanswered this long (guest time) is sent again (default: 4 x latency).",
)
@click.option(
    "--guest",
    type=click.Choice(choices(GuestKind)),
    default=GuestKind.SMALL.value,
    show_default=True,
    help="The answering guest of each pair: small, or linux (a Linux 6.12 kernel, its "
    "message driver answering; it boots at rate 1, ~10 s, before the exchange starts).",
)
@click.option(
    "--realtime",
    is_flag=True,
    help="Run the same traffic on one clock at wall-clock rate (dilation 1), for comparison.",
)
@json_option("Write the record (RTTs, messages, quanta, trace hash) as JSON here.")
def pingpong(
    guests: int,
    latency_ns: int,
    count: int,
    seed: int,
    loss: float,
    bandwidth_bps: float,
    retry_ns: int,
    guest: str,
    realtime: bool,
    json_path: Path | None,
) -> None:
    """Ping-pong between guests over simulated links, in lockstep with SimPy.

    Each guest's clock holds while it computes and jumps to the next timer or message the
    simulator delivers, so round trips read exactly what the network says in guest time,
    and the ordered message trace (its sha256 is printed) is the same on every run with
    the same --seed, whatever else the host is doing.

    \b
    Examples:
      tickless cosim pingpong --guests 2 --latency 10ms --count 100 --seed 1
      tickless cosim pingpong --loss 0.2 --seed 7          drops, retried by the guest
      tickless cosim pingpong --guest linux --seed 1       Linux answers the pings
      tickless cosim pingpong --realtime                   the same in real time
    """
    from tickless.cosim.pingpong import PingpongSpec

    try:
        spec = PingpongSpec(
            guests=guests,
            latency_ns=latency_ns,
            count=count,
            seed=seed,
            loss=loss,
            bandwidth_bps=bandwidth_bps,
            retry_ns=retry_ns,
            realtime=realtime,
            guest=GuestKind(guest),
        )
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    require_kvm()
    from tickless.cosim.pingpong import run_pingpong

    record = run_and_keep(
        "round trips", lambda progress: run_pingpong(spec, progress), _render, json_path
    )
    if record.causality_violations:
        raise click.ClickException(
            f"{record.causality_violations} messages broke causality (delivered too early)"
        )


def _render(record: object) -> None:
    from tickless.cosim.pingpong import PingpongRecord

    assert isinstance(record, PingpongRecord)
    rtt, handling, messages = record.rtt_ns, record.guest_handling_ns, record.messages
    table = Table(title=f"cosim pingpong: {record.guests} guests, {record.mode}")
    table.add_column("", style="bold")
    table.add_column("value", justify="right")

    def ns(value: float | None) -> str:
        return "n/a" if value is None else format_duration_ns(value)

    dropped = ", ".join(f"{why} {n}" for why, n in messages.get("dropped", {}).items())
    sent, delivered = messages.get("sent", 0), messages.get("delivered", 0)
    rtts = " / ".join(ns(rtt.get(k)) for k in ("mean", "min", "max"))
    beyond = f"{ns(handling.get('mean'))} mean, {ns(handling.get('max'))} max"
    rows = [
        ("round trips (guest time)", f"{int(rtt.get('count', 0)):,}"),
        ("RTT mean / min / max", rtts),
        ("beyond 2 x latency (guest handling)", beyond),
        ("messages sent / delivered", f"{sent:,} / {delivered:,}"),
        ("dropped", dropped or "none"),
        ("retries", f"{record.retries:,}"),
        ("quanta", f"{record.quanta:,}"),
        ("causality violations", str(record.causality_violations)),
        ("guest time / wall time", f"{record.guest_time_s:.3f} s / {record.wall_time_s:.3f} s"),
        ("simulated s per wall s", f"{record.sim_seconds_per_wall_second:.2f}"),
        ("trace sha256", record.trace_hash[:16]),
    ]
    if record.mode == "realtime":
        rows.insert(8, ("late deliveries (host late)", str(record.late_deliveries)))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if record.linux_guests:
        console.print(f"Linux guests: {', '.join(record.linux_guests)}")
    for note in record.notes:
        console.print(f"note: {note}")
