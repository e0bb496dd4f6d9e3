"""KVM plumbing: the system (/dev/kvm), VMs, vCPUs and their exits, over plain ioctls.

Nothing here knows about timers or guests' workloads; it is the layer kvmtool keeps in
``kvm.c``/``kvm-cpu.c`` and Firecracker in ``vstate/``.
"""

from tickless.errors import KvmError, KvmUnavailable
from tickless.kvm.system import KvmSystem
from tickless.kvm.vcpu import Vcpu
from tickless.kvm.vm import Vm

__all__ = ["KvmError", "KvmSystem", "KvmUnavailable", "Vcpu", "Vm"]
