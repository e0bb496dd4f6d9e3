"""Host timer logic, pure Python and free of KVM calls, shared by the KVM backend and the
simulator (the way Linux keeps ``kernel/time/`` apart from the drivers that feed it).

* ``clock``: the guest's PV clock (pvclock scale arithmetic, time dilation) and its
  mapping to host clock ticks.
* ``hrtimer``: host high-resolution timers in a queue with Xen-style slop (coalescing,
  never early).
* ``clockevents``: the host side of a guest's paravirtual clock-event device.
* ``precise``: the host side of the dedicated precise timer channel.
* ``pv_deadline``: the PV deadline device's host rules (its advance, when the host looks
  at the guest's page) and the deadline loop's PAGE channel, as the simulator runs it.
* ``injection``: when an expired timer's interrupt may be injected.
* ``policy``: the decision arithmetic all of these call, which the simulator compiles.
"""
