"""The lifecycle soak, short: 100 cycles of each kind (``benchmarks/lifecycle.py`` runs
1,000). Guests booted and destroyed on one host, and whole hosts, must leave the host
process's file descriptors and threads where they were and its memory flat."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.kvm

CYCLES = 100


def _benchmark() -> ModuleType:
    """benchmarks/ is not a package: load the soak from its file."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "lifecycle.py"
    spec = importlib.util.spec_from_file_location("lifecycle_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", ["machines", "hosts"])
def test_lifecycle_soak_stays_flat(kind: str) -> None:
    lifecycle = _benchmark()
    result = lifecycle.soak(kind, CYCLES, report=lambda line: None)
    rendered = lifecycle.render(result)
    s, e = result.start, result.end
    assert e.fds == s.fds, rendered
    assert (e.py_threads, e.os_threads) == (s.py_threads, s.os_threads), rendered
    assert result.rss_growth < lifecycle.RSS_GROWTH_LIMIT, rendered


def test_a_destroyed_guest_gives_its_memory_back() -> None:
    """After ``VmmHost.destroy`` the guest's RAM is unmapped or, while a device's ctypes
    object still views it (until the garbage collector breaks its cycle), emptied: the
    pages are back with the host either way."""
    from tickless.devices.config import GuestConfig
    from tickless.vmm.host import VmmHost

    with VmmHost() as host:
        machine = host.boot(GuestConfig(interval_ns=100_000, count=20))
        machine.start()
        machine.join(120)
        assert machine.outcome.ok, machine.outcome.reason
        region = machine.vm.regions[0]
        assert any(region.mapping[:])  # the guest kernel was loaded there
        host.destroy(machine)
        assert machine not in host.machines
        assert machine.vm.fd == -1 and machine.vcpu.fd == -1
        if not region.mapping.closed:  # MADV_DONTNEED: the pages read as zeros again
            assert not any(region.mapping[:])


def test_a_closed_host_is_freed_without_the_garbage_collector() -> None:
    """No reference cycle through the host (its watchdog once closed over it): reference
    counting frees it, with its KVM objects, the moment the last user lets go."""
    import gc
    import weakref

    from tickless.vmm.host import VmmHost

    gc.disable()
    try:
        with VmmHost() as host:
            ref = weakref.ref(host)
        del host
        assert ref() is None
    finally:
        gc.enable()
