"""tickless sim: the simulator's own commands (fleets, platform profiles, Table 1)."""

from __future__ import annotations

import click


@click.group()
def sim() -> None:
    """The timer system in virtual time: fleets of guests, platform profiles, Table 1."""


def _register() -> None:
    from tickless.cli.sim_fleet import register as register_fleet
    from tickless.cli.sim_profiles import register as register_profiles

    register_fleet(sim)
    register_profiles(sim)


_register()
