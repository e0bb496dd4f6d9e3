"""Guests in lockstep with a SimPy network: the public API.

Write the network in SimPy (``Network``: its ``env`` counts guest ns; ``link``/``duplex``
give links with latency, bandwidth and seeded loss; subclass it and override ``route``
for anything else), boot guests on it (small guests, or Linux guests that answer:
``linux_pingpong_guest``) with a ``Coordinator`` (each guest's message
device is its end point, by address), and run: guest time moves only when the
coordinator says, so the same seed gives the same message trace on any host, under any
load. ``docs/cosim.md`` explains the synchronisation; ``examples/cosim_pingpong.py`` is a
complete script to copy.
"""

from tickless.cosim.coordinator import Coordinator, CosimCounts, Endpoint
from tickless.cosim.network import Link, Network, Packet
from tickless.cosim.pingpong import (
    PingpongRecord,
    PingpongSpec,
    build_network,
    linux_pingpong_guest,
    pingpong_guest,
    round_trips_ns,
    run_pingpong,
)
from tickless.vmm.host import VmmHost

__all__ = [
    "Coordinator",
    "CosimCounts",
    "Endpoint",
    "Link",
    "Network",
    "Packet",
    "PingpongRecord",
    "PingpongSpec",
    "VmmHost",
    "build_network",
    "linux_pingpong_guest",
    "pingpong_guest",
    "round_trips_ns",
    "run_pingpong",
]
