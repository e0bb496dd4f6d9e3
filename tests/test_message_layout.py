"""Where the message device's send buffer and ring live, for each kind of guest: inside
the Linux window, clear of the results a Linux workload may write (pure Python)."""

from __future__ import annotations

import ctypes

from tickless.devices.device import GuestLayout
from tickless.guest import abi


def _ring_bytes() -> int:
    return abi.MSG_SLOTS_OFFSET + abi.MSG_RING_SLOTS * ctypes.sizeof(abi.MsgSlot)


def test_the_linux_window_holds_the_message_pages_after_the_largest_results() -> None:
    window = abi.LINUX_WINDOW_GPA
    layout = GuestLayout.linux_window(window)
    results_end = layout.results_gpa + (abi.LINUX_MAX_EVENTS + 1) * 8  # workload.c's room
    assert results_end <= layout.msg_tx_gpa
    assert layout.msg_tx_gpa + abi.MSG_MAX_BYTES <= layout.msg_ring_gpa
    assert ctypes.sizeof(abi.MsgRing) <= abi.MSG_SLOTS_OFFSET
    assert layout.msg_ring_gpa + _ring_bytes() <= window + abi.LINUX_WINDOW_BYTES


def test_the_small_guest_keeps_its_fixed_addresses() -> None:
    layout = GuestLayout.small_guest()
    assert (layout.msg_tx_gpa, layout.msg_ring_gpa) == (abi.MSG_TX_GPA, abi.MSG_RING_GPA)
