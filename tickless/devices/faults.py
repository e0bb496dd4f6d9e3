"""How a device reports a misbehaving guest."""


class GuestFault(Exception):
    """The guest broke the device ABI; the VMM stops it and reports this message."""
