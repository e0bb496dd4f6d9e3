"""The axes a measurement varies along, one enum each.

The values are what users type (``--timer pv``) and what result records store, so the
CLI's choices, the JSON and the guest's boot parameters all come from here. Where a guest
sees an axis, its wire code is the member's position (``wire_code``); ``guest/abi.py``
renders those codes into the C header.
"""

from __future__ import annotations

from enum import Enum, StrEnum
from fractions import Fraction
from typing import TypeVar

from tickless.errors import InputError

E = TypeVar("E", bound=Enum)


class TimerPath(StrEnum):
    """Which timer delivers the measured events."""

    PV = "pv"  # our PV deadline device: absolute, exitless re-arming, adaptive advance
    LGUEST = "lguest"  # lguest's relative clock-event device: one exit per re-arm
    LAPIC = "lapic"  # KVM's in-kernel LAPIC timer, TSC-deadline mode (the paper's "KVM")
    PRECISE = "precise"  # the dedicated precise channel
    HOST = "host"  # the same method on the host itself: the floor
    # The timer zoo a PC guest has, emulated by tickless on the group's timeline:
    HPET = "hpet"  # IA-PC HPET 1.0a at 0xFED00000: a comparator per event
    PIT = "pit"  # i8254 channel 0 on ISA IRQ 0 (ports 0x40-0x43, gate at 0x61)
    RTC = "rtc"  # MC146818 CMOS RTC's periodic interrupt on ISA IRQ 8 (ports 0x70-0x71)


ZOO_TIMERS = frozenset({TimerPath.HPET, TimerPath.PIT, TimerPath.RTC})


class LinuxDrivers(StrEnum):
    """Which clocks a Linux guest runs on (``--linux-drivers``)."""

    TICKLESS = "tickless"  # our clocksource, sched_clock and clock-event device (PV clock)
    # Linux's own (TSC, LAPIC, HPET, PIT, RTC) on the timer zoo, KVM's leaves hidden: the
    # kernel calibrates its TSC against the dilated HPET (docs/linux-stock-on-bent-time.md)
    STOCK = "stock"


STOCK_TIMERS = frozenset({TimerPath.LAPIC, TimerPath.HPET})  # Linux's own, with a reference


def check_stock(timer: TimerPath, warp_idle: bool) -> None:
    """What a stock Linux guest cannot do, one line each: its TSC and LAPIC timer run on
    the host's TSC at the rate Linux calibrated at boot, so its time can be dilated by a
    constant only, never warped (nor frozen or re-rated: a rigid ``Timeline`` member)."""
    if timer not in STOCK_TIMERS:
        raise InputError(
            "--linux-drivers stock runs Linux's own clocks: --timer lapic (Linux's choice) "
            "or hpet (its HPET steered in); pit leaves the TSC no reference to calibrate "
            "against, and pv/lguest are our drivers"
        )
    if warp_idle:
        raise InputError(
            "--linux-drivers stock cannot warp: its TSC runs on the host's, which this host "
            "cannot make jump (no TSC scaling or offset writes mid-run)"
        )


def check_dilation(timer: TimerPath, rate: Fraction, *, stock: bool = False) -> None:
    """Refuse a dilated ``timer`` that cannot follow bent time (one line saying why); the
    measurement spec and the guest's configuration both ask here. A stock Linux's LAPIC
    timer follows a constant rate: the kernel calibrated its TSC in guest time."""
    if rate != 1 and timer is TimerPath.LAPIC and not stock:
        raise InputError(
            "--timer lapic cannot be dilated: its TSC-deadline timer runs on the guest's "
            "TSC, which this host cannot scale (no TSC scaling); use --timer pv or lguest"
        )


class GuestKind(StrEnum):
    """What runs inside the VM."""

    SMALL = "small"  # tickless's own freestanding kernel (tickless/guest/src)
    LINUX = "linux"  # a Linux kernel on our PV clocksource and clock-event device


class TickMode(StrEnum):
    TICKLESS = "tickless"  # one-shot events when needed
    PERIODIC = "periodic"  # a fixed HZ tick drives the guest's timers


class Method(StrEnum):
    RELATIVE = "relative"  # arm the next event d after the last one fired (the paper's)
    ABSOLUTE = "absolute"  # deadlines on a fixed grid t0 + i*d (cyclictest's)


class Wait(StrEnum):
    HALT = "halt"  # idle in HLT between events (a real idle guest)
    SPIN = "spin"  # spin in ring 3 on the interrupt counter


class Advance(StrEnum):
    """Whether a guest on ``--timer lapic`` arms early and spins the rest, as ``pv`` does."""

    OFF = "off"  # the TSC deadline is the deadline; the event is the interrupt's arrival
    AUTO = "auto"  # arm early by the PV device's adaptive advance, spin to the deadline


class IoCpu(StrEnum):
    """Which vCPU of the small guest takes the I/O load's interrupts (irqaffinity=)."""

    SAME = "same"  # the timer's vCPU: the paper's harder case
    OTHER = "other"  # vCPU 1: the timer's vCPU sees none (isolcpus= + irqaffinity=)


class Load(StrEnum):
    IDLE = "idle"  # the paper's idle scenario
    CPU = "cpu"  # stress-ng on every host CPU and a busy second vCPU
    IO = "io"  # device interrupts into the timer's vCPU (the paper's heavy I/O)


class Backend(StrEnum):
    """Where a measurement ran (``host`` is the timer path run on bare Linux)."""

    KVM = "kvm"
    SIM = "sim"
    HOST = "host"


def choices(enum: type[E]) -> list[str]:
    """The values of ``enum`` in declaration order, for ``click.Choice``."""
    return [str(member.value) for member in enum]


def wire_code(member: Enum) -> int:
    """The integer the guest sees for ``member``: its position in its enum."""
    return list(type(member)).index(member)


def format_loads(loads: frozenset[Load]) -> str:
    """A set of loads as records store it: sorted names joined by "+" ("cpu+io")."""
    return "+".join(sorted(load.value for load in loads)) or Load.IDLE.value


def parse_loads(text: str) -> frozenset[Load]:
    """The inverse of ``format_loads``; raises ValueError naming the bad part."""
    try:
        return frozenset(Load(part) for part in text.split("+") if part)
    except ValueError:
        raise ValueError(
            f"load must be {', '.join(choices(Load))} or a +-joined set, not {text!r}"
        ) from None
