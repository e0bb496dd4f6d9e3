"""Errors of the KVM layer, each carrying a message a user can act on."""

from tickless.errors import TicklessError


class KvmError(TicklessError):
    """An ioctl on /dev/kvm, a VM or a vCPU failed."""


class KvmUnavailable(KvmError):
    """/dev/kvm is missing or not usable by this user: nothing can run on real KVM."""
