"""The simulated world guests talk through: a SimPy environment whose time is guest ns.

The user writes the network in SimPy; the library gives it links with latency, bandwidth
and seeded loss (``Link``) and the guests' end points (by address). A message a guest
sends at guest time ``s`` enters the network ``lookahead_ns`` later (the first stretch of
the link it leaves on: that stretch is what lets the coordinator run the guests a quantum
ahead of the simulator, as SimBricks' channels do), at ``route``; it leaves when the
network calls ``arrive``, at which guest time it is delivered to its receiver.

``route`` sends a message over the link from its sender to its receiver; override it
(subclass ``Network``) for anything else: switches, queues, other paths. Whatever it does
must take at least ``lookahead_ns`` in total (a ``Link`` of at least that latency does).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import simpy

from tickless.errors import InputError


@dataclass
class Packet:
    """A message on its way: who sent it, when (guest ns), and the earliest guest time it
    may arrive (its send time plus the latency of every link it took)."""

    src: int
    dst: int
    seq: int  # the sender's count of sends
    send_ns: int
    payload: bytes
    earliest_ns: int = 0


class Link:
    """One direction between two addresses: ``latency_ns`` of propagation, transmission
    at ``bandwidth_bps`` (0: none) one packet at a time, and each packet lost with
    probability ``loss``, drawn from the network's seed and the link's ends only (so what
    is lost does not depend on what other links carry)."""

    def __init__(
        self,
        network: Network,
        src: int,
        dst: int,
        latency_ns: int,
        bandwidth_bps: float = 0.0,
        loss: float = 0.0,
    ) -> None:
        if latency_ns <= 0:
            raise InputError("a link's latency must be positive (it is the lookahead)")
        if bandwidth_bps < 0 or not 0.0 <= loss < 1.0:
            raise InputError("bandwidth must be >= 0 and loss between 0 and 1 (not 1)")
        self.network, self.src, self.dst = network, src, dst
        self.latency_ns, self.bandwidth_bps, self.loss = latency_ns, bandwidth_bps, loss
        self._wire = simpy.Resource(network.env, capacity=1)
        self._rng = random.Random(f"{network.seed}:{src}:{dst}")

    def transmission_ns(self, packet: Packet) -> int:
        return self.transmission_ns_for(len(packet.payload))

    def transmission_ns_for(self, length: int) -> int:
        """Time to put ``length`` bytes on the wire (0 without a bandwidth)."""
        if not self.bandwidth_bps:
            return 0
        return -(-length * 8 * 10**9 // int(self.bandwidth_bps))

    def carry(
        self,
        packet: Packet,
        entered_late_ns: int = 0,
        then: Callable[[Packet], None] | None = None,
    ) -> None:
        """Start carrying ``packet`` now; ``entered_late_ns`` of its latency has passed
        already (the lookahead, on the link a guest sends on). At the far end ``then``
        takes it (a next hop), by default the network's ``arrive`` (its receiver)."""
        self.network.env.process(self._carry(packet, entered_late_ns, then or self.network.arrive))

    def _carry(
        self, packet: Packet, entered_late_ns: int, then: Callable[[Packet], None]
    ) -> Generator[Any, Any, None]:
        env = self.network.env
        if self.bandwidth_bps:
            with self._wire.request() as turn:
                yield turn
                yield env.timeout(self.transmission_ns(packet))
        if self.loss and self._rng.random() < self.loss:
            self.network.lost(packet, "loss")
            return
        packet.earliest_ns += self.latency_ns
        yield env.timeout(max(0, self.latency_ns - entered_late_ns))
        then(packet)


class Network:
    """The network: ``env`` (SimPy, in guest ns), its links, and the hooks the coordinator
    sets: ``on_arrive(packet)`` at the guest time a packet reaches its receiver,
    ``on_lost(packet, why)`` when the network drops one."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.env = simpy.Environment()
        self.links: dict[tuple[int, int], Link] = {}
        self.on_arrive: Callable[[Packet], None] = lambda packet: None
        self.on_lost: Callable[[Packet, str], None] = lambda packet, why: None

    def link(
        self,
        src: int,
        dst: int,
        latency_ns: int,
        bandwidth_bps: float = 0.0,
        loss: float = 0.0,
    ) -> Link:
        """A link from ``src`` to ``dst`` (one direction; ``duplex`` for both)."""
        if (src, dst) in self.links:
            raise InputError(f"there is a link from {src} to {dst} already")
        link = self.links[src, dst] = Link(self, src, dst, latency_ns, bandwidth_bps, loss)
        return link

    def duplex(
        self, a: int, b: int, latency_ns: int, bandwidth_bps: float = 0.0, loss: float = 0.0
    ) -> None:
        self.link(a, b, latency_ns, bandwidth_bps, loss)
        self.link(b, a, latency_ns, bandwidth_bps, loss)

    @property
    def lookahead_ns(self) -> int:
        """The smallest link latency: how far guests may run ahead of the simulator."""
        if not self.links:
            raise InputError("the network has no links")
        return min(link.latency_ns for link in self.links.values())

    # --- the coordinator's side --------------------------------------------------------------

    def enter(self, packet: Packet) -> None:
        """``packet`` was sent at ``packet.send_ns``; it enters the network (``route``) one
        lookahead later. The environment must not be past that time yet."""
        lookahead = self.lookahead_ns
        packet.earliest_ns = packet.send_ns
        delay = packet.send_ns + lookahead - int(self.env.now)
        if delay < 0:
            raise ValueError(f"packet sent at {packet.send_ns} ns entered too late")
        self.env.process(self._enter(packet, delay, lookahead))

    def _enter(self, packet: Packet, delay: int, lookahead: int) -> Generator[Any, Any, None]:
        yield self.env.timeout(delay)
        self.route(packet, lookahead)

    # --- what a user's network may override or call ------------------------------------------

    def route(self, packet: Packet, entered_late_ns: int) -> None:
        """Send ``packet`` on its way (``entered_late_ns``: the lookahead it has spent
        already). Default: the link from its sender to its receiver, or lost."""
        link = self.links.get((packet.src, packet.dst))
        if link is None:
            self.lost(packet, "no route")
        else:
            link.carry(packet, entered_late_ns)

    def arrive(self, packet: Packet) -> None:
        """``packet`` reaches its receiver now (``env.now``)."""
        self.on_arrive(packet)

    def lost(self, packet: Packet, why: str) -> None:
        self.on_lost(packet, why)
