"""How a device reports a misbehaving guest."""

from tickless.errors import TicklessError


class GuestFault(TicklessError):
    """The guest broke the device ABI; the VMM stops it and reports this message."""
