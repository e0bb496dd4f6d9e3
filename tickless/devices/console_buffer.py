"""What a guest printed: one bounded buffer per machine, fed by its console devices (the
debug port, LOG, PANIC, the UART) and echoed live where someone watches."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

MAX_CONSOLE_BYTES = 256 * 1024
MAX_STAMPED_LINES = 4096  # the latest lines keep their arrival time
MAX_LINE_BYTES = 512  # of each, what is kept to parse


class Console:
    """Collects what the guest prints, bounded so a chatty guest cannot eat host memory:
    past the bound the oldest bytes go (a stopped guest's last words matter most)."""

    def __init__(self, echo: Callable[[str], None] | None = None) -> None:
        self.buffer = bytearray()
        self.dropped = 0
        self.echo = echo
        # Each line with the host's monotonic time its first byte came: what the guest's
        # own time stamps on it (printk's) are checked against (console_time_ratio).
        self.lines: deque[tuple[int, str]] = deque(maxlen=MAX_STAMPED_LINES)
        self._line = bytearray()
        self._line_start_ns = 0

    def write(self, data: bytes) -> None:
        self._stamp_lines(data)
        self.buffer += data
        excess = len(self.buffer) - MAX_CONSOLE_BYTES
        if excess > 0:
            del self.buffer[:excess]
            self.dropped += excess
        if self.echo is not None:
            self.echo(data.decode("utf-8", "replace"))

    def _stamp_lines(self, data: bytes) -> None:
        now = time.monotonic_ns()
        start = 0
        while start <= len(data):
            end = data.find(b"\n", start)
            piece = data[start : len(data) if end < 0 else end]
            if piece and not self._line:
                self._line_start_ns = now
            self._line += piece[: max(0, MAX_LINE_BYTES - len(self._line))]
            if end < 0:
                return
            self.lines.append((self._line_start_ns, self._line.decode("utf-8", "replace")))
            self._line.clear()
            start = end + 1

    def text(self) -> str:
        return self.buffer.decode("utf-8", "replace")
