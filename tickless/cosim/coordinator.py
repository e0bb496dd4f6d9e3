"""Guests in lockstep with the network: conservative synchronisation with a lookahead.

Each guest is a group of its own on a lockstep timeline (``DrivenTimeline``, in
``timers/driven.py``): its clock holds while it computes and moves only when the
coordinator lets it. One quantum
(at most the lookahead, the smallest link latency) from ``T`` to ``T1``:

1. the network (SimPy) runs to ``T1``: every packet arriving before then was sent before
   ``T`` (it spent at least the lookahead on the way), so it is known; each arrival is
   scheduled on its receiver's timeline (``DrivenTimeline.at``);
2. every group runs to ``T1`` (``release_until`` for all, then ``wait_until``): guests take
   their timers and messages at their exact guest times, and rest at ``T1``;
3. the messages sent in the quantum (stamped with the sender's guest time) enter the
   network at their send time plus the lookahead, which is not before ``T1``.

A message is never delivered before its send time plus the latency of its path; every
message is checked (``causality_violations``).

A Linux guest boots on a clock of its own at rate 1 (warping over idle, as
``--warp-idle``): a clock held from boot would stall its calibration busy-waits. Once
every answering guest is ready, each group holds (``DrivenTimeline.engage_lockstep``) and
the exchange starts at ``t0``, the first quantum boundary at or after the latest clock;
the groups that booted held jump there, the guests started then begin there
(``start_at``). The trace counts guest time from ``t0``, so how long a boot took never
reaches it. ``realtime=True`` runs the same traffic on
one clock at wall-clock rate instead (no holding, arrivals by host timers): the
comparison for what lockstep costs and gains.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tickless.axes import GuestKind
from tickless.cosim.network import Network, Packet
from tickless.devices.config import GuestConfig
from tickless.devices.message import MessageDevice, SentMessage
from tickless.errors import GuestStopped, InputError
from tickless.host.tsc import rdtsc
from tickless.timers.driven import RUN_UNTIL_TIMEOUT_S, DrivenTimeline
from tickless.vmm.host import VmmHost
from tickless.vmm.machine import GuestMachine

READY_TIMEOUT_S = 120.0  # wall time an answering guest gets to boot and wait
POLL_S = 0.005
_KIND_ORDER = {"send": 0, "deliver": 1}  # drops after both


@dataclass
class Endpoint:
    """A guest on the network: its address, machine, message device and clock."""

    address: int
    machine: GuestMachine
    device: MessageDevice
    timeline: DrivenTimeline


@dataclass
class CosimCounts:
    sent: int = 0
    delivered: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # why -> messages
    causality_violations: int = 0  # delivered before send + path latency, or scheduled late
    late_deliveries: int = 0  # realtime: delivered after the network said (host late)
    quanta: int = 0


def _ready(endpoint: Endpoint) -> bool:
    """A small guest waits for messages once it blocked; a Linux guest's workload says."""
    shared = endpoint.machine.shared
    if endpoint.machine.config.guest is GuestKind.LINUX:
        return int(shared.ready) != 0
    return int(shared.blocks) != 0


class Coordinator:
    """Runs guests and a ``Network`` together; see the module docstring."""

    def __init__(
        self,
        host: VmmHost,
        network: Network,
        quantum_ns: int | None = None,
        realtime: bool = False,
        stall_timeout_s: float = RUN_UNTIL_TIMEOUT_S,
    ) -> None:
        self.host, self.network, self.realtime = host, network, realtime
        self.lookahead_ns = network.lookahead_ns
        self.quantum_ns = quantum_ns or self.lookahead_ns
        if self.quantum_ns <= 0:
            raise InputError("the quantum must be positive")
        self.stall_timeout_s = stall_timeout_s
        self.endpoints: dict[int, Endpoint] = {}
        self.counts = CosimCounts()
        self.now_ns = 0  # every group rests here between quanta
        self.start_ns = 0  # where the exchange began (real time: after booting)
        self._trace: list[tuple[int, int, int, int, str, int, str]] = []
        self._lock = threading.Lock()  # arrivals run on vCPU threads
        self._shared = (
            DrivenTimeline(host.tsc_hz, rdtsc, 1, False, host.timers) if realtime else None
        )
        network.on_arrive = self._arrive
        network.on_lost = self._lost

    def add_guest(self, config: GuestConfig, name: str) -> Endpoint:
        """Boot a guest with a message device (``config.msg_address``) on the network: a
        small guest held from boot, a Linux guest at rate 1 until ``start`` holds it."""
        if not config.msg_address or config.msg_address in self.endpoints:
            raise InputError(f"guest {name} needs an address of its own on the network")
        held = config.guest is not GuestKind.LINUX
        timeline = self._shared or DrivenTimeline(
            self.host.tsc_hz, rdtsc, 1, config.warp_idle, self.host.timers, lockstep=held
        )
        machine = self.host.boot(config, name, timeline=timeline)
        device = machine.device(MessageDevice)
        assert device is not None  # the config asked for it
        endpoint = self.endpoints[config.msg_address] = Endpoint(
            config.msg_address, machine, device, timeline
        )
        return endpoint

    def start(self, first: list[Endpoint], then: list[Endpoint]) -> None:
        """Start ``first`` (guests that answer), wait until each is ready (a small guest
        waits for messages, a Linux guest's workload began), then ``then``: nothing is sent
        to a guest still booting. In lockstep the exchange starts at ``t0`` (the module
        docstring); in real time when the last answering guest was ready."""
        for endpoint in first:
            endpoint.machine.start()
        give_up = time.monotonic() + READY_TIMEOUT_S
        for endpoint in first:
            while not _ready(endpoint):
                self.check_guests()
                if time.monotonic() > give_up:
                    raise GuestStopped(f"{endpoint.machine.name} did not start waiting")
                time.sleep(POLL_S)
        if self._shared is not None:  # real time: the clock ran while they booted
            for endpoint in then:
                endpoint.machine.start()
            self.now_ns = self.start_ns = self._shared.now_ns()
            self.network.env.run(until=self.now_ns)
            return
        timelines = {id(e.timeline): e.timeline for e in first}.values()
        latest_ns = max([t.engage_lockstep() for t in timelines], default=0)
        t0_ns = -(-latest_ns // self.quantum_ns) * self.quantum_ns
        for timeline in timelines:
            timeline.release_until(t0_ns)
        for timeline in timelines:
            timeline.wait_until(self.stall_timeout_s)
        for endpoint in then:
            endpoint.timeline.start_at(t0_ns)
            endpoint.machine.start()
        self.now_ns = self.start_ns = t0_ns
        if t0_ns > self.network.env.now:
            self.network.env.run(until=t0_ns)

    def close(self) -> None:
        """After the guests stopped: no arrival runs any more (real time: host timers)."""
        for timeline in {id(e.timeline): e.timeline for e in self.endpoints.values()}.values():
            timeline.drop_arrivals()

    def check_guests(self) -> None:
        for endpoint in self.endpoints.values():
            machine = endpoint.machine
            if (
                not machine.running
                and not machine.outcome.ok
                and machine.outcome.reason != ("not started")
            ):
                raise GuestStopped(f"{machine.name} stopped: {machine.outcome.reason}")

    def run(
        self,
        done: Callable[[], bool],
        max_guest_ns: int,
        after_quantum: Callable[[], None] | None = None,
    ) -> bool:
        """Quantum after quantum until ``done()`` or ``max_guest_ns`` of guest time from the
        exchange's start (``start_ns``); True when done. Ctrl-C (KeyboardInterrupt) leaves
        every group held at a quantum's boundary."""
        while not done():
            if self.now_ns - self.start_ns >= max_guest_ns:
                return False
            self.check_guests()
            self.quantum(self.now_ns + self.quantum_ns)
            if after_quantum is not None:
                after_quantum()
        return True

    def quantum(self, t1_ns: int) -> None:
        """One round: the network to ``t1_ns``, the guests to ``t1_ns``, their sends in."""
        self.network.env.run(until=t1_ns)
        if self._shared is not None:
            while (left := t1_ns - self._shared.now_ns()) > 0:
                time.sleep(left / 1e9)
        else:
            timelines = [e.timeline for e in self.endpoints.values()]
            for timeline in timelines:
                timeline.release_until(t1_ns)
            for timeline in timelines:
                timeline.wait_until(self.stall_timeout_s)
        self.now_ns = t1_ns
        self.counts.quanta += 1
        self._collect()

    def _collect(self) -> None:
        sent: list[SentMessage] = []
        for address in sorted(self.endpoints):
            sent += self.endpoints[address].device.take_sent()
        sent.sort(key=lambda m: (m.send_ns, m.src, m.seq))
        env = self.network.env
        for m in sent:
            self._record(m.send_ns, "send", m.src, m.dst, m.seq, m.payload)
            self.counts.sent += 1
            packet = Packet(m.src, m.dst, m.seq, m.send_ns, m.payload)
            if m.send_ns + self.lookahead_ns < env.now:  # the network is past its entry
                self._late(packet)
                packet.send_ns = int(env.now) - self.lookahead_ns
            self.network.enter(packet)

    # --- the network's hooks (inside env.run, at env.now) ------------------------------------

    def _arrive(self, packet: Packet) -> None:
        at_ns = int(self.network.env.now)
        endpoint = self.endpoints.get(packet.dst)
        if endpoint is None:
            self._lost(packet, "no such address")
            return
        if at_ns < packet.earliest_ns:
            self.counts.causality_violations += 1
        due_ns = max(at_ns, endpoint.timeline.now_ns())
        if due_ns > at_ns:
            self._late(packet)
        message = SentMessage(packet.src, packet.dst, packet.seq, packet.send_ns, packet.payload)

        def deliver(now_ticks: int) -> Callable[[], None]:
            arrived = endpoint.device.deliver(message, now_ticks)
            if isinstance(arrived, str):
                self._lost(packet, arrived, due_ns)
            else:
                with self._lock:
                    self.counts.delivered += 1
                    if arrived < packet.earliest_ns:
                        self.counts.causality_violations += 1
                self._record(arrived, "deliver", packet.src, packet.dst, packet.seq, packet.payload)
            return endpoint.device.publish  # the guest sees the batch due now at once

        endpoint.timeline.at(due_ns, deliver, late_runs_now=self.realtime)

    def _late(self, packet: Packet) -> None:
        """In lockstep a late step breaks causality; in real time the host was late."""
        with self._lock:
            if self.realtime:
                self.counts.late_deliveries += 1
            else:
                self.counts.causality_violations += 1

    def _lost(self, packet: Packet, why: str, at_ns: int | None = None) -> None:
        """Dropped: by the network (at its time) or by the receiver (at ``at_ns``)."""
        with self._lock:
            self.counts.dropped[why] = self.counts.dropped.get(why, 0) + 1
        when = int(self.network.env.now) if at_ns is None else at_ns
        self._record(when, f"drop: {why}", packet.src, packet.dst, packet.seq, packet.payload)

    def _record(self, at_ns: int, kind: str, src: int, dst: int, seq: int, payload: bytes) -> None:
        at_ns -= self.start_ns  # guest time from the exchange's start: no boot in it
        with self._lock:
            order = _KIND_ORDER.get(kind, 2)
            self._trace.append((at_ns, order, src, seq, kind, dst, payload.hex()))

    def trace_hash(self) -> str:
        """sha256 of the ordered message trace: every send, delivery and drop with its guest
        time (from the exchange's start), ends, sequence number and payload."""
        with self._lock:
            entries = sorted(self._trace)
        digest = hashlib.sha256()
        for at_ns, _, src, seq, kind, dst, payload in entries:
            digest.update(f"{at_ns} {kind} {src}>{dst} #{seq} {payload}\n".encode())
        return digest.hexdigest()
