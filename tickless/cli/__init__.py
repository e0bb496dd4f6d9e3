"""The ``tickless`` command line: one module per command group.

Errors: a ``TicklessError`` (bad input, no KVM, a guest that misbehaved, an unwritable
file) is the user's to fix, so every command reports it as one line and exits 1; it is
caught once, here, for all commands. Anything else is a bug in tickless and keeps its
traceback. Bad command-line values (and output paths that cannot be written, checked
before anything runs) are click usage errors: one "Error:" line, exit 2.

Interruptions: SIGTERM is turned into the KeyboardInterrupt Ctrl-C raises, so a command
keeps its partial result either way; it then exits 130 after Ctrl-C and 143 after SIGTERM
(``tickless.cli.common.exit_interrupted``). A command with nothing to keep just exits.
"""

from __future__ import annotations

from typing import Any

import click

from tickless.cli.common import err_console, exit_interrupted, sigterm_as_interrupt
from tickless.errors import TicklessError


class TicklessGroup(click.Group):
    """The root group: turns a ``TicklessError`` from any command into click's one-line
    "Error: ..." and exit status 1, and an interruption no command kept anything from into
    exit status 130 or 143 (click's own handling would print "Aborted!" and exit 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        with sigterm_as_interrupt():
            try:
                return super().invoke(ctx)
            except TicklessError as exc:
                raise click.ClickException(str(exc)) from None
            except KeyboardInterrupt:
                err_console.print("interrupted")
                exit_interrupted()


@click.group(cls=TicklessGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tickless")
def main() -> None:
    """tickless: tickless, high-resolution paravirtual timers for KVM guests, measured.

    \b
    Start here:
      tickless measure                      4500 PV timer events every 50 us in a real guest
      tickless measure --timer lapic        the same through KVM's LAPIC timer (the paper's KVM)
      tickless measure --timer host         the same method on the host itself (the floor)
      tickless idle --mode periodic         what 10 idle 1000 HZ guests cost the host
      tickless console --guest linux        boot Linux on our PV timer, stream its console
      tickless cosim pingpong               guests in lockstep with a SimPy network
    """


def _register() -> None:
    from tickless.cli.console import console_command
    from tickless.cli.cosim import cosim
    from tickless.cli.cron import cron
    from tickless.cli.fuzz import fuzz
    from tickless.cli.idle import idle
    from tickless.cli.measure import measure
    from tickless.cli.report import report
    from tickless.cli.sim import sim
    from tickless.cli.sweep import sweep
    from tickless.cli.table1 import table1

    main.add_command(measure)
    main.add_command(idle)
    main.add_command(cron)
    main.add_command(sim)
    main.add_command(table1)
    main.add_command(report)
    main.add_command(console_command)
    main.add_command(fuzz)
    main.add_command(sweep)
    main.add_command(cosim)


_register()
