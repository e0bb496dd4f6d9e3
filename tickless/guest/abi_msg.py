"""The message device's part of the guest ABI (``devices/message.py``,
``Scenario.PINGPONG``, ``tickless cosim``); ``abi.py`` takes all of it, so the C header and
every importer of ``abi`` see it there.

``MSG_SEND(dst, len)`` sends the ``len`` bytes at the send buffer to ``dst`` on the simulated
network; the host stamps it with the sender's guest time. Messages arrive in the ring with
``MSG_VECTOR``.
"""

from __future__ import annotations

import ctypes as C

__all__ = [
    "MSG_MAX_ADDRESS",
    "MSG_MAX_BYTES",
    "MSG_MAX_QUEUED",
    "MSG_RING_GPA",
    "MSG_RING_SLOTS",
    "MSG_SLOTS_OFFSET",
    "MSG_TX_GPA",
    "MsgRing",
    "MsgSlot",
]

MSG_TX_GPA = 0x30000  # the small guest's send buffer (MSG_SEND reads len bytes here)
MSG_RING_GPA = 0x40000  # struct tickless_msg_ring, then MSG_RING_SLOTS struct tickless_msg_slot
MSG_SLOTS_OFFSET = 0x40  # where the slots start, from MSG_RING_GPA
MSG_MAX_BYTES = 256  # payload bytes per message
MSG_RING_SLOTS = 32  # a full ring drops (and counts) what arrives
MSG_MAX_QUEUED = 64  # sends waiting for the simulator, per guest, before -EAGAIN
MSG_MAX_ADDRESS = 0xFFFF  # network addresses are 1..this


class MsgRing(C.Structure):
    """struct tickless_msg_ring at MSG_RING_GPA: the host fills slot ``head % SLOTS`` and
    bumps ``head``; the guest consumes at ``tail``. ``tail`` is the guest's: untrusted."""

    _fields_ = [
        (name, C.c_uint64)
        for name in (
            "head",  # host: messages written
            "tail",  # guest: messages taken
            "dropped",  # host: messages that found the ring full
            "pad0",
            "pad1",
            "pad2",
            "pad3",
            "pad4",
        )
    ]


class MsgSlot(C.Structure):
    """struct tickless_msg_slot: one delivered message."""

    _fields_ = [
        ("src", C.c_uint64),  # the sender's address
        ("len", C.c_uint64),  # payload bytes
        ("send_ns", C.c_uint64),  # the sender's guest time at MSG_SEND
        ("deliver_ns", C.c_uint64),  # the receiver's guest time at delivery
        ("payload", C.c_uint8 * MSG_MAX_BYTES),
    ]
