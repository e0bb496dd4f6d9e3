"""Devices a tickless guest sees: the hypercall port, the PV clock page, the PV
clock-event timer, and a console. Every value a guest hands them is validated; a guest
that breaks the rules raises ``GuestFault`` and is stopped with that message."""
