"""The ``gateway`` command: every command has ``--help``; long work shows progress; ``--json`` for scripts."""

from __future__ import annotations

from typing import Annotated

import typer

from gateway.cli.check import check
from gateway.cli.common import GatewayGroup, setup_logging, widen_when_piped
from gateway.cli.inspect import envelopes_app, rejects
from gateway.cli.night import demo, run
from gateway.cli.ops import db_app, schedule_app
from gateway.cli.sending import sending_app
from gateway.cli.server import clients_app, serve
from gateway.cli.tools import emulator_app, fixtures_app, keys_app
from gateway.gc_tuning import tune_gc

app = typer.Typer(
    name="gateway", cls=GatewayGroup, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Parcours 3 → DUDE exchange gateway. Start with `gateway demo`.",
)


@app.callback()
def _root(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress (stderr).")] = False) -> None:
    tune_gc()
    setup_logging(verbose)
    widen_when_piped()


app.command()(demo)
app.command()(run)
app.command()(rejects)
app.command()(serve)
app.command()(check)
app.add_typer(envelopes_app, name="envelopes")
app.add_typer(keys_app, name="keys")
app.add_typer(fixtures_app, name="fixtures")
app.add_typer(emulator_app, name="emulator")
app.add_typer(clients_app, name="clients")
app.add_typer(schedule_app, name="schedule")
app.add_typer(db_app, name="db")
app.add_typer(sending_app, name="sending")


def main() -> None:
    app()
