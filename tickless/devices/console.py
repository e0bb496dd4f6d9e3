"""The guest's console: bytes on the debug port, and LOG hypercall buffers."""

from __future__ import annotations

from collections.abc import Callable

MAX_CONSOLE_BYTES = 64 * 1024


class Console:
    """Collects what the guest prints, bounded so a chatty guest cannot eat host memory."""

    def __init__(self, echo: Callable[[str], None] | None = None) -> None:
        self.buffer = bytearray()
        self.dropped = 0
        self.echo = echo

    def write(self, data: bytes) -> None:
        room = MAX_CONSOLE_BYTES - len(self.buffer)
        self.buffer += data[:room]
        self.dropped += max(0, len(data) - room)
        if self.echo is not None:
            self.echo(data.decode("utf-8", "replace"))

    def text(self) -> str:
        return self.buffer.decode("utf-8", "replace")
