"""What a simulated guest's host did: the record's host counts and its notes' numbers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SimCounts:
    """What the simulated host did, for the record's host counts and notes."""

    hypercalls: int = 0
    exits: int = 0
    wakeups: int = 0  # host timer-queue wake-ups
    injections: int = 0  # timer interrupts taken by the guest
    merged: int = 0  # timer interrupts raised while one was still pending
    blocked: int = 0  # timer interrupts that waited for a device handler
    blocked_ns: int = 0
    io_irqs: int = 0  # device interrupts handled
    held: int = 0  # times the precise channel held the next device interrupt back
    starved: int = 0  # device interrupts still waiting when the run ended
    halts: int = 0
    end_ticks: int = 0
