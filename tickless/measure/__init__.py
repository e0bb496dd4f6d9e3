"""The real backends: a measurement in a KVM guest (``kvm``), the same method on the bare
host (``host``) and idle guests (``idle``).
Registered, with the simulator, in ``tickless.backends``."""
