"""Guests in lockstep with a SimPy network (``tickless.cosim``): real small guests on KVM,
their message device, and the coordinator. What is checked holds by count and identity,
never by rate: the same trace hash run after run, no message delivered early, every
round trip at least the path's latency in guest time, losses retried one for one, a full
ring dropping and counting, and a quantum beyond the lookahead caught as violations."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import signal
import sys
from pathlib import Path

import pytest
from cli_signals import interrupt_once_under_way
from click.testing import CliRunner

from tickless.cli import main
from tickless.cosim import Network, Packet, PingpongSpec, pingpong_guest, run_pingpong
from tickless.cosim.coordinator import Coordinator
from tickless.devices.message import MessageDevice, SentMessage
from tickless.errors import InputError
from tickless.guest.abi import (
    EAGAIN,
    EINVAL,
    MSG_MAX_BYTES,
    MSG_MAX_QUEUED,
    MSG_RING_GPA,
    MSG_RING_SLOTS,
    MsgRing,
)
from tickless.vmm.host import VmmHost

MS = 1_000_000
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.kvm
def test_pingpong_repeats_exactly_and_never_beats_the_links() -> None:
    spec = PingpongSpec(guests=2, latency_ns=10 * MS, count=30, seed=1)
    first, second = run_pingpong(spec), run_pingpong(spec)
    assert first.trace_hash == second.trace_hash
    assert first.causality_violations == second.causality_violations == 0
    assert first.rtt_ns["count"] == 30
    assert first.rtt_ns["min"] >= 2 * spec.latency_ns  # no round trip beats two links
    assert first.guest_handling_ns["min"] >= 0
    assert first.messages["sent"] == first.messages["delivered"] == 60
    assert first.quanta == second.quanta and first.guest_time_s == second.guest_time_s


@pytest.mark.kvm
def test_losses_are_counted_and_each_is_retried_once() -> None:
    spec = PingpongSpec(guests=4, latency_ns=2 * MS, count=40, seed=3, loss=0.25)
    record = run_pingpong(spec)
    lost = record.messages["dropped"].get("loss", 0)
    assert lost > 0
    assert record.retries == lost  # a lost ping or pong: the ping is sent once more
    assert record.rtt_ns["count"] == 2 * 40
    assert record.messages["sent"] == record.messages["delivered"] + lost
    assert record.causality_violations == 0
    assert run_pingpong(spec).trace_hash == record.trace_hash


@pytest.mark.kvm
def test_a_quantum_beyond_the_lookahead_is_caught() -> None:
    """The causality check can fail: guests run 3 latencies ahead of the network, so
    their messages reach it after it has passed their entry."""
    spec = PingpongSpec(guests=2, latency_ns=2 * MS, count=5, quantum_ns=6 * MS)
    assert run_pingpong(spec).causality_violations > 0


@pytest.mark.kvm
def test_real_time_runs_the_same_traffic() -> None:
    record = run_pingpong(PingpongSpec(guests=2, latency_ns=MS, count=5, realtime=True))
    assert record.mode == "realtime" and record.rtt_ns["count"] == 5
    assert record.rtt_ns["min"] >= 2 * MS
    assert record.causality_violations == 0


@pytest.mark.kvm
def test_the_message_device_bounds_what_a_guest_can_do() -> None:
    """Sends are validated and their queue bounded; a full ring (or a nonsense tail)
    drops and counts, and the host never waits for the guest."""
    network = Network()
    network.duplex(1, 2, MS)
    with VmmHost() as host:
        endpoint = Coordinator(host, network).add_guest(pingpong_guest(2), "idle")
        device: MessageDevice = endpoint.device  # never started: nothing drains the ring
        assert device.hc_send(0, 8) == -EINVAL
        assert device.hc_send(1, 0) == -EINVAL
        assert device.hc_send(1, MSG_MAX_BYTES + 1) == -EINVAL
        assert device.hc_send(1 << 40, 8) == -EINVAL
        assert all(device.hc_send(1, 8) == 0 for _ in range(MSG_MAX_QUEUED))
        assert device.hc_send(1, 8) == -EAGAIN
        assert device.counts.refused == 5 and len(device.take_sent()) == MSG_MAX_QUEUED
        message = SentMessage(1, 2, 0, 0, b"x" * 24)
        results = [device.deliver(message, 0) for _ in range(MSG_RING_SLOTS + 3)]
        assert results[MSG_RING_SLOTS:] == ["ring full"] * 3
        assert all(isinstance(r, int) for r in results[:MSG_RING_SLOTS])
        device.publish()
        ring = MsgRing.from_buffer(
            endpoint.machine.memory.view(MSG_RING_GPA, ctypes.sizeof(MsgRing), "test")
        )
        assert (ring.head, ring.dropped) == (MSG_RING_SLOTS, 3)
        ring.tail = ring.head + 7  # a guest's nonsense: counted as full, nothing written
        assert device.deliver(message, 0) == "ring full"
        assert ring.head == MSG_RING_SLOTS and device.counts.dropped_full == 4
        del ring


def test_links_carry_with_latency_transmission_and_seeded_loss() -> None:
    """The network alone (no guests): arrival times and which packets are lost."""

    def run(seed: int) -> tuple[list[tuple[int, int]], list[int]]:
        network = Network(seed)
        network.link(1, 2, 10 * MS, bandwidth_bps=8e6, loss=0.3)  # 1 us per byte
        arrived: list[tuple[int, int]] = []
        lost: list[int] = []
        network.on_arrive = lambda p: arrived.append((p.seq, int(network.env.now)))
        network.on_lost = lambda p, why: lost.append(p.seq)
        for seq in range(50):
            network.enter(Packet(1, 2, seq, 0, b"x" * 100))
        network.env.run()
        return arrived, lost

    arrived, lost = run(7)
    assert len(arrived) + len(lost) == 50 and lost
    # all sent at 0: each waits for the wire, 100 us per packet, then 10 ms on the way
    assert all(at == 10 * MS + (seq + 1) * 100_000 for seq, at in arrived)
    assert run(7) == (arrived, lost)
    assert run(8)[1] != lost


def test_network_inputs_are_checked() -> None:
    network = Network()
    with pytest.raises(InputError, match="no links"):
        network.lookahead_ns  # noqa: B018
    with pytest.raises(InputError, match="positive"):
        network.link(1, 2, 0)
    with pytest.raises(InputError, match="loss"):
        network.link(1, 2, MS, loss=1.0)
    network.link(1, 2, MS)
    with pytest.raises(InputError, match="already"):
        network.link(1, 2, MS)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--guests", "3"], "even number"),
        (["--retry", "15ms"], "longer than a round trip"),
        (["--loss", "0.95"], "0.95"),
        (["--latency", "0"], "no unit"),
        (["--count", "0"], "--count"),
    ],
)
def test_bad_pingpong_input_is_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["cosim", "pingpong", *args])
    assert result.exit_code == 2
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1 and message in error_lines[0]


@pytest.mark.kvm
def test_pingpong_command_writes_its_record(tmp_path: Path) -> None:
    out = tmp_path / "pp.json"
    args = ["cosim", "pingpong", "--latency", "1ms", "--count", "5", "--json", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    for key in ("rtt_ns", "guest_handling_ns", "messages", "quanta", "causality_violations",
                "sim_seconds_per_wall_second", "trace_hash"):  # fmt: skip
        assert f'"{key}"' in text


@pytest.mark.kvm
def test_the_example_runs_and_repeats() -> None:
    path = ROOT / "examples" / "cosim_pingpong.py"
    spec = importlib.util.spec_from_file_location("cosim_pingpong_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    first, second = module.main(seed=1, count=10), module.main(seed=1, count=10)
    assert first == second
    assert first["round_trips"] == 20 and first["causality_violations"] == 0
    assert first["rtt_min_ms"] >= 4 * 5  # four links of 5 ms


@pytest.mark.kvm
def test_ctrl_c_keeps_the_round_trips_recorded(tmp_path: Path) -> None:
    out = tmp_path / "pp.json"
    args = ["cosim", "pingpong", "--count", "20000", "--json", str(out)]
    status, stderr = interrupt_once_under_way(args, signal.SIGINT)
    assert status == 130, stderr
    record = json.loads(out.read_text())
    assert record["partial"] is True
    assert 0 < record["rtt_ns"]["count"] < 20000
    assert record["causality_violations"] == 0


class Flood(Network):
    """Every ping arrives 40 times at once: more than the receiver's ring holds."""

    def route(self, packet: Packet, entered_late_ns: int) -> None:
        copies = 40 if packet.payload[:8] == (1).to_bytes(8, "little") else 1
        for _ in range(copies):
            copy = Packet(packet.src, packet.dst, packet.seq, packet.send_ns, packet.payload)
            self.links[packet.src, packet.dst].carry(copy, entered_late_ns)


@pytest.mark.kvm
def test_a_full_ring_drops_and_counts_while_the_guest_runs_on() -> None:
    network = Flood()
    network.duplex(1, 2, MS)
    with VmmHost() as host:
        coordinator = Coordinator(host, network)
        pong = coordinator.add_guest(pingpong_guest(2), "pong")
        ping = coordinator.add_guest(pingpong_guest(1, 2, count=1, retry_ns=10 * MS), "ping")
        coordinator.start([pong], [ping])
        assert coordinator.run(lambda: ping.machine.outcome.ok, 10**9)
        host.stop_all("done")
        assert coordinator.counts.dropped == {"ring full": 40 - MSG_RING_SLOTS}
        assert pong.device.counts.dropped_full == 40 - MSG_RING_SLOTS
        assert int(pong.machine.shared.msg_received) == MSG_RING_SLOTS
        assert coordinator.counts.causality_violations == 0
