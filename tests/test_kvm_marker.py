"""The ``kvm`` marker: skip without a usable /dev/kvm, fail instead under
TICKLESS_REQUIRE_KVM=1, run otherwise."""

from __future__ import annotations

import conftest
import pytest


@pytest.fixture
def no_kvm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "_kvm_problem", lambda: "/dev/kvm does not exist")


@pytest.mark.usefixtures("no_kvm")
def test_skips_without_kvm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TICKLESS_REQUIRE_KVM", raising=False)
    with pytest.raises(pytest.skip.Exception, match="/dev/kvm does not exist"):
        conftest._require_kvm()


@pytest.mark.usefixtures("no_kvm")
def test_fails_without_kvm_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKLESS_REQUIRE_KVM", "1")
    with pytest.raises(pytest.fail.Exception, match="TICKLESS_REQUIRE_KVM=1"):
        conftest._require_kvm()


def test_runs_with_kvm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "_kvm_problem", lambda: None)
    monkeypatch.setenv("TICKLESS_REQUIRE_KVM", "1")
    conftest._require_kvm()


def test_the_marker_is_declared(pytestconfig: pytest.Config) -> None:
    """An undeclared marker would only warn; the declaration carries the env switch."""
    assert any(m.startswith("kvm:") for m in pytestconfig.getini("markers"))
