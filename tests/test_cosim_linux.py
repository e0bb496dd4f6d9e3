"""A Linux end point in lockstep (``tickless cosim pingpong --guest linux``): a real Linux
guest on KVM answers a small guest's pings through its message driver (``message.c``,
``workload.c``'s PINGPONG). It boots at rate 1, then its clock holds and the exchange
starts at a quantum boundary; the trace counts guest time from there. Checked by count and
identity, never by rate: the same hash twice, equal to the small answerer's (the answers
leave at the same guest times), no message early, every round trip at least two links."""

from __future__ import annotations

import pytest

from tickless.axes import GuestKind
from tickless.cosim import (
    Coordinator,
    PingpongSpec,
    VmmHost,
    build_network,
    linux_pingpong_guest,
    pingpong_guest,
    round_trips_ns,
    run_pingpong,
)
from tickless.devices.config import GuestConfig
from tickless.errors import InputError
from tickless.guest.abi import Scenario

MS = 1_000_000
pytestmark = [pytest.mark.kvm, pytest.mark.linux]


def test_a_linux_end_point_repeats_exactly_and_never_beats_the_links() -> None:
    spec = PingpongSpec(guests=2, latency_ns=10 * MS, count=20, seed=1, guest=GuestKind.LINUX)
    first, second = run_pingpong(spec), run_pingpong(spec)
    assert first.linux_guests == second.linux_guests == ["pong0"]
    assert first.trace_hash == second.trace_hash
    assert first.causality_violations == second.causality_violations == 0
    assert first.rtt_ns["count"] == 20
    assert first.rtt_ns["min"] >= 2 * spec.latency_ns  # no round trip beats two links
    assert first.messages["sent"] == first.messages["delivered"] == 40  # Linux answered all
    small = run_pingpong(PingpongSpec(guests=2, latency_ns=10 * MS, count=20, seed=1))
    assert small.linux_guests == []
    assert first.trace_hash == small.trace_hash  # its pongs leave when the small guest's do


def test_the_exchange_starts_at_a_quantum_boundary_after_linux_is_ready() -> None:
    """Linux's clock ran while it booted; the exchange starts at the first boundary at or
    after where it held, the pinger's clock starts there too, and Linux's driver counted
    every message it took and sent."""
    spec = PingpongSpec(guests=2, latency_ns=5 * MS, count=5, seed=2, guest=GuestKind.LINUX)
    with VmmHost() as host:
        coordinator = Coordinator(host, build_network(spec))
        pong = coordinator.add_guest(linux_pingpong_guest(2), "pong")
        ping = coordinator.add_guest(pingpong_guest(1, peer=2, count=5, retry_ns=20 * MS), "ping")
        coordinator.start([pong], [ping])
        t0_ns = coordinator.start_ns
        assert t0_ns > 0 and t0_ns % coordinator.quantum_ns == 0
        assert ping.timeline.now_ns() == pong.timeline.now_ns() == t0_ns
        assert coordinator.run(lambda: ping.machine.outcome.ok, 10**10)
        shared = pong.machine.shared
        counts = (int(shared.msg_received), int(shared.msg_sent), int(shared.msg_irq_count))
        rtts = round_trips_ns(ping)
        host.stop_all("done")
        coordinator.close()
    assert counts[0] == counts[1] == 5 and counts[2] >= 1, counts
    assert rtts == [2 * spec.latency_ns] * 5  # lockstep: Linux's handling takes no guest time


def test_a_linux_end_point_only_answers_and_pairs_are_bounded() -> None:
    with pytest.raises(InputError, match="answers"):
        GuestConfig(guest=GuestKind.LINUX, scenario=Scenario.PINGPONG, msg_address=2, msg_peer=1)
    with pytest.raises(InputError, match="at most"):
        PingpongSpec(guests=18, guest=GuestKind.LINUX)
