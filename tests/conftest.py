"""Shared test set-up. Tests marked ``kvm`` (``@pytest.mark.kvm``, or a module's
``pytestmark``) skip when /dev/kvm is unusable, unless TICKLESS_REQUIRE_KVM=1 (CI sets it)
turns that into a failure."""

from __future__ import annotations

import functools
import os
import signal

import pytest

from tickless.kvm.system import kvm_problem


@functools.cache
def _kvm_problem() -> str | None:
    return kvm_problem()


def _require_kvm() -> None:
    problem = _kvm_problem()
    if problem is None:
        return
    if os.environ.get("TICKLESS_REQUIRE_KVM") == "1":
        pytest.fail(f"TICKLESS_REQUIRE_KVM=1 but KVM is unusable: {problem}")
    pytest.skip(problem)


def pytest_configure(config: pytest.Config) -> None:
    """A suite started in the background by a non-interactive shell (``bash -c '...' &``)
    inherits SIGINT ignored, and Python then installs no Ctrl-C handler: the tests of
    Ctrl-C would see nothing. Give this process, and through it every ``tickless`` it
    starts (a handler resets to the default across exec), the ordinary Ctrl-C."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("kvm") is not None:
        _require_kvm()


@pytest.fixture(scope="session")
def kvm() -> None:
    """The marker's check as a fixture, for a test that would rather request one."""
    _require_kvm()
