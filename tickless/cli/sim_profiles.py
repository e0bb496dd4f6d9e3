"""Commands of the ``tickless sim`` group (filled in by the simulator work)."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
