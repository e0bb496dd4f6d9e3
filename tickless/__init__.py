"""tickless: tickless, high-resolution paravirtual timers for KVM guests, and their measurement."""

__version__ = "0.1.0"
