"""``gateway sending pause --reason …|resume|status``: the operator's switch on all sending to DUDE.

The switch lives in the store (`gateway.pipeline.pause`): it holds for every instance sharing it, and for
the scheduler as for ``gateway run``. Each change is in the audit log with the operator's login name.
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.markup import escape

from gateway.cli.common import DataDirOpt, JsonOpt, console, fail, load_settings, open_store, print_json
from gateway.errors import GatewayError

sending_app = typer.Typer(help="Pause or resume all sending to DUDE (every instance sharing the store).",
                          no_args_is_help=True)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container without /etc/passwd entry)
        return "cli"


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _show(state, json_out: bool, settings) -> None:
    """The switch; its time in the gateway's zone, as the console and the other commands say times."""
    from zoneinfo import ZoneInfo

    if json_out:
        print_json(state.as_dict())
        return
    colour = "yellow" if state.paused else "green"
    # escaped: the reason is the operator's text, printed as given ("[red]" in it is no markup)
    console.print(f"[bold {colour}]{escape(_upper_first(state.describe(ZoneInfo(settings.timezone))))}[/]")


@sending_app.command("pause")
def sending_pause(
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the switch and in the audit log).")],
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Pause all sending: runs still read and seal, nothing is posted until `gateway sending resume`."""
    from gateway.pipeline.pause import pause
    from gateway.store.models import utcnow

    try:
        settings = load_settings(data_dir=data_dir)
        engine = open_store(settings, existing=False)
        state = pause(engine, by=_actor(), reason=reason, now=utcnow())
    except GatewayError as exc:
        raise fail(exc) from exc
    _show(state, json_out, settings)


@sending_app.command("resume")
def sending_resume(
    reason: Annotated[str | None, typer.Option("--reason", help="Why (optional, kept in the audit log).")] = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Resume sending: the next run (or the scheduler's next round) sends what waited, same IdLot."""
    from gateway.pipeline.pause import resume
    from gateway.store.models import utcnow

    try:
        settings = load_settings(data_dir=data_dir)
        engine = open_store(settings, existing=True)
        state = resume(engine, by=_actor(), reason=reason, now=utcnow())
    except GatewayError as exc:
        raise fail(exc) from exc
    _show(state, json_out, settings)


@sending_app.command("status")
def sending_status(data_dir: DataDirOpt = None, json_out: JsonOpt = False) -> None:
    """Whether sending is paused, since when, by whom and why."""
    from gateway.pipeline.pause import current

    settings = load_settings(data_dir=data_dir)
    _show(current(open_store(settings, existing=True)), json_out, settings)
