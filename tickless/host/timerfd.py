"""timerfd through ctypes (Python 3.11's os module has no timerfd)."""

from __future__ import annotations

import ctypes
import os

CLOCK_MONOTONIC = 1
TFD_CLOEXEC = 0o2000000
TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.timerfd_settime.argtypes = [
    ctypes.c_int,
    ctypes.c_int,
    ctypes.POINTER(_Itimerspec),
    ctypes.c_void_p,
]


class TimerFd:
    """A CLOCK_MONOTONIC timerfd armed with absolute times; ``wait()`` blocks in read(2)."""

    def __init__(self) -> None:
        fd = _libc.timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create: {os.strerror(err)}")
        self.fd: int = fd
        self._spec = _Itimerspec()

    def arm_at(self, monotonic_ns: int | None) -> None:
        """Expire at ``monotonic_ns`` (in the past: at once); None disarms."""
        spec = self._spec
        if monotonic_ns is None:
            spec.it_value.tv_sec = spec.it_value.tv_nsec = 0
        else:
            monotonic_ns = max(monotonic_ns, 1)
            spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(monotonic_ns, 1_000_000_000)
        if _libc.timerfd_settime(self.fd, TFD_TIMER_ABSTIME, ctypes.byref(spec), None) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")

    def wait(self) -> int:
        """Block until expiry; returns the expiration count (the GIL is released)."""
        return int.from_bytes(os.read(self.fd, 8), "little")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
