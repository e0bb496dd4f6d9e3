"""The i8254 PIT's part of the guest ABI: its ports and its input clock, counted in guest
time (``devices/i8254.py`` is the chip; ``user.c`` computes the same edges). ``abi.py``
takes all of it.
"""

from __future__ import annotations

__all__ = [
    "PIT_GATE_PORT",
    "PIT_HZ",
    "PIT_MAX_COUNT",
    "PIT_MIN_PERIODIC_COUNT",
    "PIT_PORT",
    "PIT_PORTS",
    "pit_count",
    "pit_edge_ns",
    "pit_edges",
]

PIT_PORT = 0x40  # channels 0-2 at 0x40-0x42, mode/command at 0x43
PIT_PORTS = 4
PIT_GATE_PORT = 0x61  # NMI status and control: channel 2's gate (bit 0) and output (bit 5)
PIT_HZ = 1_193_182  # the 8254's input clock, counted in guest time
PIT_MAX_COUNT = 0x10000  # a count of 0 is 65536 clocks (54.9 ms)
PIT_MIN_PERIODIC_COUNT = 2  # a count of 1 is illegal in modes 2 and 3


def pit_edges(ns: int) -> int:
    """The 8254's clock edges in (0, ns] of guest time (edge k is at ``pit_edge_ns(k)``);
    ``user.c`` computes the same."""
    return ns * PIT_HZ // 1_000_000_000


def pit_edge_ns(edge: int) -> int:
    """The first guest ns at which ``edge`` clock edges have passed."""
    return -(-edge * 1_000_000_000 // PIT_HZ)


def pit_count(interval_ns: int) -> int:
    """The periodic count nearest ``interval_ns`` (the small guest's mode 2)."""
    return (interval_ns * PIT_HZ + 500_000_000) // 1_000_000_000
