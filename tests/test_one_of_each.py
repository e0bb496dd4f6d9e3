"""Rules written once and used everywhere they apply (issue 17, "one of each")."""

from __future__ import annotations

from fractions import Fraction

import pytest

from tickless.axes import TimerPath, check_dilation
from tickless.devices.config import GuestConfig
from tickless.errors import InputError
from tickless.results.spec import MeasureSpec


def test_the_spec_and_the_guest_config_refuse_a_dilated_lapic_with_one_message() -> None:
    with pytest.raises(InputError) as direct:
        check_dilation(TimerPath.LAPIC, Fraction(2))
    with pytest.raises(InputError) as spec:
        MeasureSpec(timer=TimerPath.LAPIC, interval_ns=100_000, count=10, rate=Fraction(2))
    with pytest.raises(InputError) as config:
        GuestConfig(timer=TimerPath.LAPIC, count=10, rate=Fraction(2))
    assert str(spec.value) == str(config.value) == str(direct.value)
    check_dilation(TimerPath.LAPIC, Fraction(1))  # undilated: fine
    check_dilation(TimerPath.PV, Fraction(2))
