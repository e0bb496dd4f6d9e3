"""Guests on a simulated switch: copy this to build your own network around real guests.

Four small KVM guests (addresses 1-4) hang off one switch by links of 5 ms, 10 Mbit/s and
1 % seeded loss each way; guest 1 pings guest 2 and guest 3 pings guest 4, through the
switch, 20 times each. The network is plain SimPy (``SwitchedNetwork.route``); the
coordinator runs the guests in lockstep with it, so every round trip reads, in guest
time, exactly what the network did to it, and the trace hash is the same on every run.

    python examples/cosim_pingpong.py [--seed N] [--count N]
"""

from __future__ import annotations

import argparse
import json
import statistics

from tickless.cosim import (
    Coordinator,
    Network,
    Packet,
    VmmHost,
    pingpong_guest,
    round_trips_ns,
)

SWITCH = 1000  # the switch's node name (not a guest address)
MS = 1_000_000


class SwitchedNetwork(Network):
    """Every guest on its own port of one switch: up the sender's link, down the
    receiver's. Each link transmits one packet at a time, so ports queue."""

    def __init__(self, seed: int, guests: list[int], latency_ns: int, bps: float, loss: float):
        super().__init__(seed)
        for address in guests:
            self.link(address, SWITCH, latency_ns, bps, loss)  # uplink
            self.link(SWITCH, address, latency_ns, bps, loss)  # downlink

    def route(self, packet: Packet, entered_late_ns: int) -> None:
        down = self.links.get((SWITCH, packet.dst))
        if down is None:
            self.lost(packet, "no such port")
            return
        up = self.links[packet.src, SWITCH]
        up.carry(packet, entered_late_ns, then=down.carry)


def main(seed: int = 1, count: int = 20) -> dict[str, object]:
    guests = [1, 2, 3, 4]
    network = SwitchedNetwork(seed, guests, latency_ns=5 * MS, bps=10e6, loss=0.01)
    with VmmHost() as host:
        coordinator = Coordinator(host, network)  # quantum = lookahead = 5 ms
        retry_ns = 100 * MS
        pongs = [coordinator.add_guest(pingpong_guest(b), f"pong{b}") for b in (2, 4)]
        pings = [
            coordinator.add_guest(pingpong_guest(a, a + 1, count, retry_ns), f"ping{a}")
            for a in (1, 3)
        ]
        coordinator.start(pongs, pings)
        coordinator.run(
            done=lambda: all(p.machine.outcome.ok for p in pings), max_guest_ns=60_000 * MS
        )
        host.stop_all("the example is done")
        coordinator.close()
        rtts = [rtt for p in pings for rtt in round_trips_ns(p)]
        result: dict[str, object] = {
            "round_trips": len(rtts),
            "rtt_min_ms": min(rtts) / MS,
            "rtt_mean_ms": statistics.fmean(rtts) / MS,
            "rtt_max_ms": max(rtts) / MS,
            "dropped": coordinator.counts.dropped,
            "quanta": coordinator.counts.quanta,
            "causality_violations": coordinator.counts.causality_violations,
            "trace_hash": coordinator.trace_hash(),
        }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(main(args.seed, args.count), indent=2))
