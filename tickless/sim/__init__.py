"""The simulator: the same host timer logic (``tickless.timers``) under a virtual clock, for
fleets of guests and for machines without KVM."""
