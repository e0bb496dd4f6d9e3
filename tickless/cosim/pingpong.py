"""``tickless cosim pingpong``: pairs of small guests pinging each other over simulated
links, in lockstep with the network (or in real time, for comparison).

Guest ``2p+1`` pings guest ``2p+2`` ``count`` times, each ping after the last one's pong; a
ping unanswered for ``retry_ns`` (guest time) is sent again, so lost messages are retried.
Every round trip takes at least twice the link latency in guest time; what it takes
beyond that is the guests' own handling (zero in lockstep: compute takes no guest time
while the clock holds) and transmission at the link's bandwidth.

``guest=linux``: the answering guest of each pair is a Linux guest (its driver
``message.c`` and ``workload.c``'s PINGPONG), which boots at rate 1 before the exchange
starts (``Coordinator.start``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from tickless.axes import GuestKind, TimerPath
from tickless.cosim.coordinator import Coordinator, Endpoint
from tickless.cosim.network import Network
from tickless.devices.config import GuestConfig
from tickless.devices.results import ResultsDevice
from tickless.errors import GuestStopped, InputError
from tickless.guest.abi import MAX_DELTA_NS, Scenario
from tickless.host.realtime import RealtimePolicy
from tickless.vmm.host import VmmHost

MAX_GUESTS = 64
MAX_LINUX_GUESTS = 8  # Linux end points in one run (each boots ~10 s of emulated ring 0)
LINUX_HZ = 100  # the Linux end point's HZ (HZ=1000 cannot keep up here: linux-guest notes)
MAX_COUNT = 1_000_000
PAYLOAD_BYTES = 24  # {kind, seq, try} (user.c: msg_send)


@dataclass(frozen=True)
class PingpongSpec:
    guests: int = 2
    latency_ns: int = 10_000_000
    count: int = 100
    seed: int = 0
    loss: float = 0.0
    bandwidth_bps: float = 0.0
    retry_ns: int = 0  # 0: four latencies
    realtime: bool = False  # one clock at wall-clock rate instead of lockstep
    quantum_ns: int = 0  # 0: the lookahead (the link latency)
    max_guest_ns: int = 0  # stop there unfinished (0: enough for every ping to be retried 20 times)
    guest: GuestKind = GuestKind.SMALL  # the answering end of each pair (pingers are small)

    def __post_init__(self) -> None:
        if self.guests < 2 or self.guests % 2 or self.guests > MAX_GUESTS:
            raise InputError(f"--guests must be an even number from 2 to {MAX_GUESTS} (pairs)")
        if not 1_000 <= self.latency_ns <= 10 * 10**9:
            raise InputError("--latency must be between 1us and 10s")
        if not 1 <= self.count <= MAX_COUNT:
            raise InputError(f"--count must be between 1 and {MAX_COUNT:,}")
        if not 0.0 <= self.loss <= 0.9:
            raise InputError("--loss must be between 0 and 0.9")
        if not 0 <= self.bandwidth_bps < 1e15:  # also refuses nan and inf
            raise InputError("--bandwidth must be a number of bit/s, 0 or more")
        if self.retry_ns and not 2 * self.latency_ns < self.retry_ns <= MAX_DELTA_NS // 4:
            raise InputError(
                "--retry must be longer than a round trip (2 x latency), at most 15 min"
            )
        if self.guest is GuestKind.LINUX and self.guests > MAX_LINUX_GUESTS * 2:
            raise InputError(
                f"--guest linux runs a Linux guest (128 MiB) per pair: at most "
                f"{MAX_LINUX_GUESTS * 2} guests"
            )
        if self.quantum_ns < 0 or self.max_guest_ns < 0:
            raise InputError("--quantum and the guest time bound must not be negative")

    @property
    def retry_timeout_ns(self) -> int:
        return self.retry_ns or 4 * self.latency_ns

    @property
    def guest_time_bound_ns(self) -> int:
        return self.max_guest_ns or self.count * self.retry_timeout_ns * 20 + 10**9


@dataclass
class PingpongRecord:
    """What a pingpong run measured, in guest time (ns) unless named otherwise."""

    guests: int
    latency_ns: int
    count: int
    seed: int
    loss: float
    bandwidth_bps: float
    mode: str  # "lockstep" or "realtime"
    quantum_ns: int
    rtt_ns: dict[str, float] = field(default_factory=dict)  # count, mean, min, max
    guest_handling_ns: dict[str, float] = field(default_factory=dict)  # rtt minus the path
    messages: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    quanta: int = 0
    causality_violations: int = 0
    late_deliveries: int = 0
    guest_time_s: float = 0.0
    wall_time_s: float = 0.0
    sim_seconds_per_wall_second: float = 0.0
    trace_hash: str = ""
    linux_guests: list[str] = field(default_factory=list)  # which guests ran Linux
    partial: bool = False
    notes: list[str] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def pingpong_guest(
    address: int, peer: int = 0, count: int = 0, retry_ns: int = 0, lockstep: bool = True
) -> GuestConfig:
    """A small guest running PINGPONG at ``address``: ``count`` pings to ``peer``, each
    sent again after ``retry_ns`` unanswered (guest time); without a peer it answers."""
    return GuestConfig(
        scenario=Scenario.PINGPONG,
        timer=TimerPath.LGUEST,  # BLOCK's one-shot
        warp_idle=lockstep,
        count=count if peer else 0,
        msg_address=address,
        msg_peer=peer,
        msg_retry_ns=retry_ns,
    )


def round_trips_ns(endpoint: Endpoint) -> list[int]:
    """The round trips a pinging guest recorded (guest time: its pong's arrival minus
    its ping's last send), read from its memory and checked (untrusted)."""
    machine = endpoint.machine
    device = machine.device(ResultsDevice)
    assert device is not None
    events = int(machine.shared.events_recorded)
    answered = device.timestamps_ns(events)[1:]
    sent = device.arrivals_ns(events)
    rtts = [int(a - s) for a, s in zip(answered, sent, strict=True)]
    if any(r <= 0 for r in rtts):
        raise GuestStopped(f"{machine.name} reported a round trip that ended before it began")
    return rtts


def linux_pingpong_guest(address: int, lockstep: bool = True) -> GuestConfig:
    """A Linux guest answering pings at ``address`` (workload.c's PINGPONG): the lguest
    device, whose BLOCK its idle calls in lockstep (``--warp-idle``'s cpuidle state)."""
    return GuestConfig(
        guest=GuestKind.LINUX,
        scenario=Scenario.PINGPONG,
        timer=TimerPath.LGUEST,
        hz=LINUX_HZ,
        warp_idle=lockstep,
        msg_address=address,
    )


def _config(spec: PingpongSpec, address: int, peer: int) -> GuestConfig:
    if not peer and spec.guest is GuestKind.LINUX:
        return linux_pingpong_guest(address, not spec.realtime)
    return pingpong_guest(address, peer, spec.count, spec.retry_timeout_ns, not spec.realtime)


def build_network(spec: PingpongSpec) -> Network:
    """Each pair on a duplex link of the spec's latency, bandwidth and loss."""
    network = Network(spec.seed)
    for pair in range(spec.guests // 2):
        network.duplex(2 * pair + 1, 2 * pair + 2, spec.latency_ns, spec.bandwidth_bps, spec.loss)
    return network


def run_pingpong(
    spec: PingpongSpec, progress: Callable[[float], None] | None = None
) -> PingpongRecord:
    """Boot the pairs, run them with the network until every pinging guest is done (or
    the guest time bound); Ctrl-C keeps what was recorded (``partial``). ``progress``
    gets the fraction of round trips done."""
    network = build_network(spec)
    record = PingpongRecord(
        spec.guests, spec.latency_ns, spec.count, spec.seed, spec.loss, spec.bandwidth_bps,
        "realtime" if spec.realtime else "lockstep", spec.quantum_ns or spec.latency_ns,
    )  # fmt: skip
    with VmmHost(0, RealtimePolicy()) as host:
        coordinator = Coordinator(host, network, spec.quantum_ns or None, spec.realtime)
        pingers: list[Endpoint] = []
        answerers: list[Endpoint] = []
        for pair in range(spec.guests // 2):
            a, b = 2 * pair + 1, 2 * pair + 2
            answerers.append(coordinator.add_guest(_config(spec, b, 0), f"pong{pair}"))
            pingers.append(coordinator.add_guest(_config(spec, a, b), f"ping{pair}"))
        t0 = time.monotonic()
        finished = False
        total = spec.count * len(pingers)
        try:
            coordinator.start(answerers, pingers)
            t0 = time.monotonic()  # booted: the rate is of the exchange, not of booting
            finished = coordinator.run(
                lambda: all(e.machine.outcome.ok or not e.machine.running for e in pingers),
                spec.guest_time_bound_ns,
                None if progress is None else lambda: progress(_done(pingers) / total),
            )
        except KeyboardInterrupt:
            record.partial = True
        record.wall_time_s = time.monotonic() - t0
        host.stop_all("end of the pingpong run")
        coordinator.close()
        if not finished and not record.partial:
            record.partial = True
            record.notes.append(f"stopped at the guest time bound ({spec.guest_time_bound_ns} ns)")
        for e in pingers:
            if not e.machine.outcome.ok and not record.partial:
                raise GuestStopped(f"{e.machine.name} stopped: {e.machine.outcome.reason}")
        _summarize(record, spec, coordinator, pingers)
    return record


def _done(pingers: list[Endpoint]) -> int:
    return sum(min(int(e.machine.shared.events_recorded), e.machine.config.count) for e in pingers)


def _summarize(
    record: PingpongRecord, spec: PingpongSpec, coordinator: Coordinator, pingers: list[Endpoint]
) -> None:
    rtts: list[int] = []
    for e in pingers:
        rtts += round_trips_ns(e)
        record.retries += int(e.machine.shared.msg_retries)
    link = coordinator.network.links[1, 2]
    path_ns = 2 * (spec.latency_ns + link.transmission_ns_for(PAYLOAD_BYTES))
    if rtts:
        record.rtt_ns = _stats(rtts)
        record.guest_handling_ns = _stats([r - path_ns for r in rtts])
    counts = coordinator.counts
    refused = sum(e.device.counts.refused for e in coordinator.endpoints.values())
    record.messages = {
        "sent": counts.sent,
        "delivered": counts.delivered,
        "dropped": dict(sorted(counts.dropped.items())),
        "refused": refused,
    }
    record.quanta = counts.quanta
    record.causality_violations = counts.causality_violations
    record.late_deliveries = counts.late_deliveries
    record.guest_time_s = (coordinator.now_ns - coordinator.start_ns) / 1e9
    if record.wall_time_s > 0:
        record.sim_seconds_per_wall_second = record.guest_time_s / record.wall_time_s
    record.trace_hash = coordinator.trace_hash()
    record.linux_guests = [
        e.machine.name
        for _, e in sorted(coordinator.endpoints.items())
        if e.machine.config.guest is GuestKind.LINUX
    ]


def _stats(values: list[int]) -> dict[str, float]:
    return {
        "count": len(values),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
    }
