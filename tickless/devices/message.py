"""The message device: a guest's network card onto a simulated network (``tickless cosim``).

A guest sends with ``MSG_SEND(dst, len)`` (the payload in the send buffer:
``MSG_TX_GPA``, in a Linux guest's window ``WINDOW_MSG_TX_OFFSET``: the small guest's
``pingpong.c`` and the Linux driver ``guest/linux/drivers/tickless/message.c`` are the two
kinds of end point; a Linux guest gets ``MSG_VECTOR`` on ISA IRQ ``LINUX_MSG_IRQ``); the host stamps
the send with the sender's guest time and keeps it in an outbox until the coordinator
takes it (``take_sent``) and hands it to the simulator. The simulator decides when it
arrives; the coordinator schedules that on the receiver's timeline (``Timeline.at``), and
``deliver`` writes it into the ring (``GuestLayout.msg_ring_gpa``) and raises ``MSG_VECTOR``.

The guest is untrusted: an address or length out of range is ``-EINVAL``, more than
``MSG_MAX_QUEUED`` sends waiting for the simulator ``-EAGAIN`` (a guest sending in a loop
while its clock holds cannot grow the host's memory), and the hypercall port's rate limit
bounds the calls. The ring's ``tail`` is the guest's: a value that makes no sense counts as
a full ring. A full ring drops the message and counts it; nothing ever waits for the guest.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

from tickless.devices.device import Device, MachineContext, register_device
from tickless.guest.abi import (
    EAGAIN,
    EINVAL,
    MSG_MAX_ADDRESS,
    MSG_MAX_BYTES,
    MSG_MAX_QUEUED,
    MSG_RING_SLOTS,
    MSG_SLOTS_OFFSET,
    MSG_VECTOR,
    Hypercall,
    MsgRing,
    MsgSlot,
)


@dataclass(frozen=True)
class SentMessage:
    """A message as the sender's host stamped it (``seq``: the sender's count of sends)."""

    src: int
    dst: int
    seq: int
    send_ns: int  # the sender's guest time at MSG_SEND
    payload: bytes


@dataclass
class MessageCounts:
    sent: int = 0  # sends accepted
    refused: int = 0  # sends refused (-EINVAL, -EAGAIN)
    delivered: int = 0  # written into the ring
    dropped_full: int = 0  # found the ring full (or its tail nonsense)
    dropped_stopped: int = 0  # arrived after the guest stopped


@register_device
class MessageDevice(Device):
    """MSG_SEND, the outbox, and the receive ring; see the module docstring."""

    def __init__(self, ctx: MachineContext) -> None:
        self.ctx = ctx
        self.address = ctx.config.msg_address
        self.counts = MessageCounts()
        self._outbox: list[SentMessage] = []
        self._lock = threading.Lock()  # the vCPU thread sends, the coordinator takes
        self._stopped = False
        self._head = 0  # slots written; the guest sees them at publish

    @classmethod
    def create(cls, ctx: MachineContext) -> MessageDevice | None:
        if not ctx.config.msg_address:
            return None
        device = cls(ctx)
        ctx.hypercalls.register(Hypercall.MSG_SEND, device.hc_send)
        return device

    # --- the vCPU thread: the guest sends ---------------------------------------------------

    def hc_send(self, dst: int, length: int) -> int:
        """MSG_SEND(dst, len): stamp and queue ``len`` bytes from the send buffer."""
        if not (0 < dst <= MSG_MAX_ADDRESS and 0 < length <= MSG_MAX_BYTES):
            self.counts.refused += 1
            return -EINVAL
        with self._lock:
            if len(self._outbox) >= MSG_MAX_QUEUED:
                self.counts.refused += 1
                return -EAGAIN
            tx_gpa = self.ctx.layout.msg_tx_gpa
            payload = self.ctx.memory.read(tx_gpa, length, "message send buffer")
            message = SentMessage(
                self.address, dst, self.counts.sent, self.ctx.timeline.now_ns(), payload
            )
            self._outbox.append(message)
            self.counts.sent += 1
        return 0

    # --- the coordinator ----------------------------------------------------------------------

    def take_sent(self) -> list[SentMessage]:
        """Every message sent since the last call, in the order they were sent."""
        with self._lock:
            taken, self._outbox = self._outbox, []
        return taken

    def deliver(self, message: SentMessage, now_ticks: int) -> int | str:
        """Write ``message`` into the ring (called when its guest time has come, by the
        timeline); returns the guest time it arrived at, or why it was dropped ("ring full",
        "stopped"). The guest sees it at ``publish``: messages due at one guest time are
        all written first, so a guest already running cannot take some of them early and
        make room for others (which would make what a full ring drops depend on timing)."""
        with self._lock:
            if self._stopped:
                self.counts.dropped_stopped += 1
                return "stopped"
            ring_gpa = self.ctx.layout.msg_ring_gpa
            view = self.ctx.memory.view(ring_gpa, ctypes.sizeof(MsgRing), "message ring")
            ring = MsgRing.from_buffer(view)
            head, tail = self._head, int(ring.tail)
            if not 0 <= head - tail < MSG_RING_SLOTS:  # full, or a tail that makes no sense
                self.counts.dropped_full += 1
                ring.dropped = self.counts.dropped_full
                del ring
                return "ring full"
            del ring
            slot_bytes = ctypes.sizeof(MsgSlot)
            gpa = ring_gpa + MSG_SLOTS_OFFSET + (head % MSG_RING_SLOTS) * slot_bytes
            slot = MsgSlot.from_buffer(self.ctx.memory.view(gpa, ctypes.sizeof(MsgSlot), "slot"))
            arrived_ns = self.ctx.timeline.now_ns(now_ticks)
            slot.src, slot.len = message.src, len(message.payload)
            slot.send_ns, slot.deliver_ns = message.send_ns, arrived_ns
            ctypes.memmove(ctypes.addressof(slot.payload), message.payload, len(message.payload))
            del slot
            self._head = head + 1
            self.counts.delivered += 1
        return arrived_ns

    def publish(self) -> None:
        """Show the guest what ``deliver`` wrote (``head``, after the slots: x86 keeps the
        stores in order) and interrupt it once."""
        with self._lock:
            ring_gpa = self.ctx.layout.msg_ring_gpa
            view = self.ctx.memory.view(ring_gpa, ctypes.sizeof(MsgRing), "message ring")
            ring = MsgRing.from_buffer(view)
            fresh = int(ring.head) != self._head
            ring.head = self._head
            del ring
        if fresh:
            self.ctx.member.wake()  # it runs now: its group holds until it waits again
            self.ctx.inject(MSG_VECTOR)

    def stop(self, now_ticks: int) -> None:
        with self._lock:
            self._stopped = True
