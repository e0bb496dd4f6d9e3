"""One error hierarchy for everything a user can cause.

``TicklessError`` covers bad input, a machine that cannot run what was asked (no KVM, no
compiler, no stress-ng) and a guest that misbehaved. The CLI catches it alone, prints its
message on one line and exits non-zero; any other exception is a bug in tickless and keeps
its traceback.
"""

from __future__ import annotations


class TicklessError(Exception):
    """Something the user can act on; the message is one line that says what."""


class InputError(TicklessError, ValueError):
    """A setting or a combination of settings that cannot be run."""


class GuestStopped(TicklessError):
    """A guest ended without finishing its work; the message says why."""


class KvmError(TicklessError):
    """An ioctl on /dev/kvm, a VM or a vCPU failed (every layer that runs guests may catch
    it: it is vocabulary, not the KVM layer's own)."""


class KvmUnavailable(KvmError):
    """/dev/kvm is missing or not usable by this user: nothing can run on real KVM."""
