"""Reading the host TSC from Python, and mapping it to CLOCK_MONOTONIC.

The guest's clock is TSC-based and guest and host TSC agree on this host, so the host
must read the same counter to decide, exactly, whether a guest deadline has passed.
Python has no rdtsc; a six-instruction function placed in executable memory gives one
(``lfence; rdtsc; shl $32, %rdx; or %rdx, %rax; ret``), called through ctypes.
"""

from __future__ import annotations

import ctypes
import mmap
import time
from collections.abc import Callable

_RDTSC_CODE = bytes.fromhex("0faee80f3148c1e2204809d0c3")


def _make_rdtsc() -> tuple[Callable[[], int], mmap.mmap]:
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(_RDTSC_CODE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    # PyDLL-style call without releasing the GIL: the call is ~100 ns.
    func = ctypes.PYFUNCTYPE(ctypes.c_uint64)(address)
    return func, page


rdtsc, _code_page = _make_rdtsc()  # the page must live as long as the function


class TscMonotonicMap:
    """Converts TSC ticks to CLOCK_MONOTONIC ns (to arm timerfds) from a recent pairing.

    CLOCK_MONOTONIC is slewed by NTP against the TSC (at most 500 ppm), so the timer thread
    refreshes the pairing often (every 64 wake-ups, and whenever it woke too early) and
    still checks the TSC itself before running a timer.
    """

    def __init__(self, tsc_hz: int) -> None:
        self.tsc_hz = tsc_hz
        self.refresh()

    def refresh(self) -> None:
        """Pair the two clocks again, from the tightest of a few bracketed readings."""
        best: tuple[int, int, int] | None = None
        for _ in range(5):
            t0 = rdtsc()
            mono = time.monotonic_ns()
            t1 = rdtsc()
            if best is None or t1 - t0 < best[0]:
                best = (t1 - t0, (t0 + t1) // 2, mono)
        assert best is not None
        _, self.tsc_ref, self.mono_ref_ns = best

    def monotonic_ns_at(self, tsc: int) -> int:
        """When CLOCK_MONOTONIC reads what the TSC reads at ``tsc`` (to arm a timerfd)."""
        return self.mono_ref_ns + (tsc - self.tsc_ref) * 1_000_000_000 // self.tsc_hz
