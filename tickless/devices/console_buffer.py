"""What a guest printed: one bounded buffer per machine, fed by its console devices (the
debug port, LOG, PANIC, the UART) and echoed live where someone watches."""

from __future__ import annotations

from collections.abc import Callable

MAX_CONSOLE_BYTES = 256 * 1024


class Console:
    """Collects what the guest prints, bounded so a chatty guest cannot eat host memory:
    past the bound the oldest bytes go (a stopped guest's last words matter most)."""

    def __init__(self, echo: Callable[[str], None] | None = None) -> None:
        self.buffer = bytearray()
        self.dropped = 0
        self.echo = echo

    def write(self, data: bytes) -> None:
        self.buffer += data
        excess = len(self.buffer) - MAX_CONSOLE_BYTES
        if excess > 0:
            del self.buffer[:excess]
            self.dropped += excess
        if self.echo is not None:
            self.echo(data.decode("utf-8", "replace"))

    def text(self) -> str:
        return self.buffer.decode("utf-8", "replace")
