"""``gateway demo`` and ``gateway run``: the night, for a newcomer and for the integrator."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape

from gateway.cli.common import (
    DataDirOpt, JsonOpt, console, err_console, fail, load_settings, print_json, progress_bars, store_lost,
    warn_unsafe_keys,
)
from gateway.errors import GatewayError, KeyMaterialError

# The pipeline, the store and the signing libraries are imported by the commands that use them, not here:
# `gateway --help`, `gateway sending status` and the like start in a third of the time.


def demo(
    events: Annotated[int, typer.Option(min=1, help="Events in the generated night.")] = 20_000,
    data_dir: DataDirOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the generated night (same seed, same night).")] = 1,
    port: Annotated[int | None, typer.Option(help="Loopback port of the emulator (default: a free one).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Start over even in a folder whose store holds runs "
                                        "other than demos (it is deleted).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run a whole realistic night from nothing: keys, exports, emulator, batch, reports, summary. Each demo
    starts over: it deletes the store, the emulator's ledger and the exports of its data folder (never a store
    that holds runs other than demos, unless --force)."""
    from gateway.cli.report import fr, render_summary
    from gateway.demo import run_demo

    settings = load_settings(data_dir=data_dir)
    warn_unsafe_keys(settings)
    try:
        with progress_bars(not json_out) as progress:
            result = run_demo(settings, events=events, seed=seed, port=port, progress=progress, force=force)
    except GatewayError as exc:
        raise fail(exc) from exc
    summary = result.summary
    if json_out:
        print_json({**summary.as_dict(), "data_dir": str(settings.data_dir),
                    "exports": [str(p) for p in result.night.export_files],
                    "emulator_ledger": result.ledger, "reports_via": result.reports_via})
        return
    render_summary(summary, console, title=f"Démonstration : {fr(events)} événements",
                   tz=ZoneInfo(settings.timezone))
    via = result.reports_via
    console.print(f"Comptes rendus : {fr(via.get('callback', 0))} reçus par le rappel de l'API "
                  f"(POST /api/v1/dude/comptes-rendus), {fr(via.get('polling', 0))} par relève")
    gw_cmd = _typed_command()
    console.print(
        "\n[bold]Et ensuite ?[/]\n"
        f"  {gw_cmd} rejects --data-dir {settings.data_dir}            les rejets, avec leur explication\n"
        f"  {gw_cmd} rejects --code E03 --data-dir {settings.data_dir}  un seul motif\n"
        f"  {gw_cmd} envelopes list --data-dir {settings.data_dir}     les lots signés envoyés\n"
        f"  {gw_cmd} run --input {result.night.export_files[0]} --dry-run --data-dir {settings.data_dir}\n"
        "                                                     ce qu'un nouvel envoi ferait (rien : déjà transmis)",
        soft_wrap=True)


def _typed_command() -> str:
    """How to type the ``gateway`` command here: ``gateway`` when the shell finds this one, else its path
    (``.venv/bin/gateway`` after ``scripts/demo``, whose venv is not activated): the hints printed after the
    demo answered "command not found" when copied."""
    own = Path(sys.executable).parent / "gateway"
    found = shutil.which("gateway")
    if not own.exists() or (found and Path(found).resolve() == own.resolve()):
        return "gateway"
    relative = os.path.relpath(own)
    return relative if not relative.startswith("..") else str(own)


def run(
    inputs: Annotated[list[Path] | None, typer.Option("--input", "-i", exists=True, dir_okay=False, readable=True,
                                                      help="Parcours 3 export(s) to send (repeat the option).")] = None,
    now: Annotated[bool, typer.Option("--now", help="Run the night at once, as the scheduler would: every export "
                                      "of the drop folder (GATEWAY_INPUT_DIR) not yet imported.")] = False,
    data_dir: DataDirOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be sent, skipped and rejected; "
                                          "send nothing.")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Do not wait for DUDE's reports "
                                          "(later polls pick them up).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run a batch over Parcours 3 exports against the configured DUDE endpoint (GATEWAY_DUDE_URL).

    One run at a time across every instance sharing the store: while another holds the run lease, this
    one is refused (RUN_IN_PROGRESS).

    Exit code: 0 done; 1 an export was refused whole; 2 the run could not go on (an error, said on
    stderr); 3 done, but some envelopes got no receipt from DUDE after every attempt: they are kept and
    sent again (same IdLot) by the next run or the scheduler; 4 done, but sending is paused (`gateway
    sending pause`): the night's envelopes are sealed and go once it is resumed."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    from gateway.cli.report import render_summary
    from gateway.context import Gateway
    from gateway.nightly import list_drop_folder, run_exclusive, run_night

    if now == bool(inputs):
        raise typer.BadParameter("either --now (the drop folder) or --input FILE…", param_hint="--input/--now")
    if now and dry_run:
        raise typer.BadParameter("--dry-run needs --input", param_hint="--dry-run")
    settings = load_settings(data_dir=data_dir)
    warn_unsafe_keys(settings)
    # Listed once for the night, here, before the store: a folder it cannot read is refused before anything is
    # made; the night then reads the exports of this listing.
    listing = list_drop_folder(settings) if now else None
    if listing is not None and listing.problem:
        from gateway.errors import ConfigurationError

        raise fail(ConfigurationError(f"{listing.problem['file']} : {listing.problem['message']}."))
    try:
        from gateway.keys import check_key_material

        signer = None
        if not dry_run:  # before the store: a mistyped --data-dir must not leave an empty store behind
            signer = check_key_material(settings)
        else:  # a dry run says what tonight would do: that it would stop on the keys too, though it goes on
            try:
                check_key_material(settings)
            except KeyMaterialError as exc:
                err_console.print(f"[bold yellow]Attention[/] : la vraie nuit s'arrêterait là, {exc.code} : "
                                  f"{escape(exc.message)}", soft_wrap=True)
        gw = Gateway.open(settings)
        if signer is not None:  # the run signs with the key just checked, rather than reading it again
            gw.signer = signer
        try:
            with progress_bars(not json_out) as progress:
                if now:
                    night = run_night(gw, trigger="cli", wait_for_reports=not no_wait, listing=listing)
                    if night.summary is None:  # HELD: another instance runs; DONE: this night is served already
                        from gateway.errors import NightServed, RunInProgress

                        if night.status == "DONE":
                            raise NightServed(f"{night.detail} : rien à faire (`gateway run --input FICHIER` lit "
                                              "un export précis)")
                        raise RunInProgress(night.detail)
                    summary = night.summary
                else:
                    summary = run_exclusive(gw, list(inputs or []), trigger="cli", dry_run=dry_run, progress=progress,
                                            wait_for_reports=not no_wait)
        finally:
            gw.close()
    except GatewayError as exc:
        raise fail(exc) from exc
    except (OperationalError, InterfaceError) as exc:  # the database lost mid-run: said, not 266 lines of traceback
        raise fail(store_lost(exc, "rien n'est perdu : le prochain lancement reprend l'exécution interrompue et "
                                   "renvoie ses lots avec le même IdLot", during="l'exécution")) from exc
    if json_out:
        print_json(summary.as_dict())
    else:
        render_summary(summary, console, title="Exécution", tz=ZoneInfo(settings.timezone))
    if summary.undelivered:
        err_console.print(f"[yellow]{summary.undelivered} lot(s) non acquitté(s) par le DUDE.[/]")
    if summary.file_errors:
        err_console.print(f"[yellow]{len(summary.file_errors)} fichier(s) refusé(s).[/]")
        raise typer.Exit(code=1)
    if summary.undelivered:  # a night DUDE never saw must not look like a good one to cron or systemd
        raise typer.Exit(code=3)
    if summary.sending_paused and not summary.dry_run:  # nor one held by a pause someone forgot to lift
        raise typer.Exit(code=4)
