"""The KVM system object: /dev/kvm, its API version, capabilities and supported CPUID."""

from __future__ import annotations

import errno
import fcntl
import os
from functools import cached_property

from tickless.errors import KvmError, KvmUnavailable
from tickless.kvm import abi

KVM_PATH = "/dev/kvm"
KVM_API_VERSION = 12


def kvm_problem(path: str = KVM_PATH) -> str | None:
    """Why KVM cannot be used here, as one line saying what to do; None when it can."""
    if not os.path.exists(path):
        return (
            f"{path} does not exist: this machine has no KVM (load the kvm module, or enable "
            "nested virtualisation); use --backend sim to run the simulator instead"
        )
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except PermissionError:
        return (
            f"no permission to open {path}: run as root or add this user to the 'kvm' group "
            f"(sudo usermod -aG kvm $USER, then log in again)"
        )
    except OSError as exc:
        return f"cannot open {path}: {exc.strerror}"
    try:
        version = fcntl.ioctl(fd, abi.GET_API_VERSION, 0)
    except OSError as exc:
        return f"{path} does not answer KVM_GET_API_VERSION: {exc.strerror}"
    finally:
        os.close(fd)
    if version != KVM_API_VERSION:
        return f"{path} speaks KVM API {version}, tickless needs {KVM_API_VERSION}"
    return None


class KvmSystem:
    """An open /dev/kvm: creates VMs and answers questions about the host's KVM."""

    def __init__(self, path: str = KVM_PATH) -> None:
        problem = kvm_problem(path)
        if problem is not None:
            raise KvmUnavailable(problem)
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        # A closed machine's device graph is cyclic and reaches this object (through its
        # Vm) until the garbage collector runs: let it hold 10 KiB less meanwhile.
        self.__dict__.pop("supported_cpuid", None)

    def __enter__(self) -> KvmSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_extension(self, cap: int) -> int:
        return int(fcntl.ioctl(self.fd, abi.CHECK_EXTENSION, cap))

    @cached_property
    def vcpu_mmap_size(self) -> int:
        return int(fcntl.ioctl(self.fd, abi.GET_VCPU_MMAP_SIZE, 0))

    @cached_property
    def supported_cpuid(self) -> abi.Cpuid2:
        """KVM_GET_SUPPORTED_CPUID: what this host's KVM can offer a guest."""
        cpuid = abi.Cpuid2()
        cpuid.nent = abi.MAX_CPUID_ENTRIES
        buf = bytearray(cpuid)
        try:
            fcntl.ioctl(self.fd, abi.GET_SUPPORTED_CPUID, buf, True)
        except OSError as exc:
            raise KvmError(f"KVM_GET_SUPPORTED_CPUID failed: {exc.strerror}") from exc
        return abi.Cpuid2.from_buffer_copy(buf)

    def create_vm_fd(self) -> int:
        for _ in range(100):
            try:
                return int(fcntl.ioctl(self.fd, abi.CREATE_VM, 0))
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise KvmError(f"KVM_CREATE_VM failed: {exc.strerror}") from exc
        raise KvmError("KVM_CREATE_VM kept being interrupted")
