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


rdtsc, _code_page = _make_rdtsc()


class TscMonotonicMap:
    """Converts TSC ticks to CLOCK_MONOTONIC ns (to arm timerfds) from a recent pairing.

    CLOCK_MONOTONIC is slewed by NTP against the TSC (at most 500 ppm), so the pairing is
    refreshed on every use; callers still check the TSC itself before acting.
    """

    def __init__(self, tsc_hz: int) -> None:
        self.tsc_hz = tsc_hz
        self.refresh()

    def refresh(self) -> None:
        best: tuple[int, int, int] | None = None
        for _ in range(5):  # keep the tightest of a few bracketed readings
            t0 = rdtsc()
            mono = time.monotonic_ns()
            t1 = rdtsc()
            if best is None or t1 - t0 < best[0]:
                best = (t1 - t0, (t0 + t1) // 2, mono)
        assert best is not None
        _, self.tsc_ref, self.mono_ref_ns = best

    def monotonic_ns_at(self, tsc: int) -> int:
        return self.mono_ref_ns + (tsc - self.tsc_ref) * 1_000_000_000 // self.tsc_hz

    def tsc_at(self, monotonic_ns: int) -> int:
        return self.tsc_ref + (monotonic_ns - self.mono_ref_ns) * self.tsc_hz // 1_000_000_000


def calibrate_tsc_hz(seconds: float = 0.05) -> int:
    """TSC rate against CLOCK_MONOTONIC, for when KVM cannot tell us (KVM_GET_TSC_KHZ)."""
    t0, m0 = rdtsc(), time.monotonic_ns()
    time.sleep(seconds)
    t1, m1 = rdtsc(), time.monotonic_ns()
    return (t1 - t0) * 1_000_000_000 // (m1 - m0)
