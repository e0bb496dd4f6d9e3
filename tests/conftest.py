"""Shared fixtures. Tests that need KVM skip without it, unless TICKLESS_REQUIRE_KVM=1
(CI sets it) turns a missing /dev/kvm into a failure."""

from __future__ import annotations

import os

import pytest

from tickless.kvm.system import kvm_problem


@pytest.fixture(scope="session")
def kvm() -> None:
    problem = kvm_problem()
    if problem is None:
        return
    if os.environ.get("TICKLESS_REQUIRE_KVM") == "1":
        pytest.fail(f"TICKLESS_REQUIRE_KVM=1 but KVM is unusable: {problem}")
    pytest.skip(problem)
