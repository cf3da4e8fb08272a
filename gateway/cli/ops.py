"""``gateway schedule show`` (the scheduled jobs and the run lease) and ``gateway db upgrade|current|revision``
(the schema migrations): what an integrator running the gateway as a service looks at (issue 5)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from gateway.cli.common import DataDirOpt, JsonOpt, console, fail, load_settings, print_json, require_store
from gateway.errors import GatewayError

schedule_app = typer.Typer(help="The jobs `gateway serve` runs on schedule.", no_args_is_help=True)
db_app = typer.Typer(help="The store's schema migrations (Alembic).", no_args_is_help=True)


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


@schedule_app.command("show")
def schedule_show(data_dir: DataDirOpt = None, json_out: JsonOpt = False) -> None:
    """The scheduled jobs and their next run times (from the store, where every instance keeps them), and
    who holds the run lease."""
    from gateway import lease
    from gateway.context import Gateway
    from gateway.nightly import RUN_LEASE
    from gateway.scheduler import stored_jobs

    settings = load_settings(data_dir=data_dir)
    require_store(settings)  # only looks: never makes an empty store (gateway.cli.common.open_store)
    try:
        gw = Gateway.open(settings)
        try:
            jobs = stored_jobs(gw)
            held = lease.read(gw.engine, RUN_LEASE)
            now = lease.now(gw.engine)
        finally:
            gw.close()
    except GatewayError as exc:
        raise fail(exc) from exc
    lease_info = None if held is None else {
        "holder": held.holder, "held": not held.free_at(now), "run_id": held.run_id,
        "acquired_at": _iso(held.acquired_at), "expires_at": _iso(held.expires_at),
        "released_at": _iso(held.released_at), "night": _iso(held.night), "done_until": _iso(held.done_until)}
    if json_out:
        print_json({"jobs": [{"id": j.id, "name": j.name, "what": j.what, "next_run_at": _iso(j.next_run_at),
                              "stored": j.stored} for j in jobs], "run_lease": lease_info})
        return
    table = Table(title=f"Tâches planifiées ({settings.timezone})")
    for col in ("Tâche", "Définition", "Prochaine exécution", "Rôle"):
        table.add_column(col)
    for j in jobs:
        when = f"{j.next_run_at:%Y-%m-%d %H:%M:%S %Z}" if j.next_run_at else "suspendue"
        table.add_row(j.id, j.name.split(" · ", 1)[-1], when + ("" if j.stored else " (pas encore enregistrée)"),
                      j.what)
    console.print(table)
    if lease_info is None:
        console.print("Bail d'exécution : jamais pris.")
    else:  # in the zone of the jobs' times above (it read UTC beside them)
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(settings.timezone)
        if lease_info["held"]:
            console.print(f"Bail d'exécution : tenu par {held.holder} (exécution n° {held.run_id}) "
                          f"jusqu'à {held.expires_at.astimezone(zone):%Y-%m-%d %H:%M:%S %Z}.")
        else:
            served = (f", nuit servie jusqu'au {held.done_until.astimezone(zone):%Y-%m-%d %H:%M %Z}."
                      if held.done_until else ".")
            console.print(f"Bail d'exécution : libre ; dernier détenteur {held.holder}{served}")


@db_app.command("upgrade")
def db_upgrade(
    data_dir: DataDirOpt = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Bring the store's schema to the latest revision (also done on every start)."""
    from gateway.store.db import make_engine, shown_url
    from gateway.store.migrate import upgrade

    engine = None
    settings = load_settings(data_dir=data_dir)
    try:
        engine = make_engine(settings.db_url)
        before, after = upgrade(engine, revision)
    except GatewayError as exc:
        raise fail(exc) from exc
    finally:
        if engine is not None:
            engine.dispose()
    # Which database: a misspelt GATEWAY_DATABASE_URL left this (the unit's ExecStartPre) making a SQLite file.
    console.print(f"Base : {escape(shown_url(settings.db_url))}", soft_wrap=True, highlight=False)
    console.print(f"Schéma à jour : {before or 'aucune révision'} → {after}." if before != after
                  else f"Schéma déjà à la révision {after}.")


@db_app.command("current")
def db_current(data_dir: DataDirOpt = None, json_out: JsonOpt = False) -> None:
    """The store's schema revision, and the latest one."""
    import sqlalchemy as sa

    from gateway.store.db import make_engine, shown_url
    from gateway.store.migrate import current, head

    settings = load_settings(data_dir=data_dir)
    require_store(settings)  # only looks: never makes an empty store (gateway.cli.common.open_store)
    engine = None
    try:
        engine = make_engine(settings.db_url)
        found = current(engine)
        older = found is None and sa.inspect(engine).has_table("events")  # made before the revisions existed
    except GatewayError as exc:
        raise fail(exc) from exc
    finally:
        if engine is not None:
            engine.dispose()
    if json_out:
        print_json({"current": found, "head": head(), "database": shown_url(settings.db_url)})
    else:
        console.print(f"Base : {escape(shown_url(settings.db_url))}", soft_wrap=True, highlight=False)
        none = ("aucune (un schéma d'avant les révisions : `gateway db upgrade` l'adopte, sans rien perdre)"
                if older else "aucune")
        console.print(f"Révision du schéma : {found or none} (dernière : {head()}).", soft_wrap=True)


@db_app.command("revision")
def db_revision(message: Annotated[str, typer.Option("--message", "-m", help="What the revision changes.")]) -> None:
    """Write a new revision from the difference between the models and the latest one (for developers:
    run after changing gateway/store/models.py, then read and commit the file)."""
    import tempfile
    from pathlib import Path

    from gateway.store.db import make_engine
    from gateway.store.migrate import upgrade, write_revision

    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'latest.db'}")
        try:
            upgrade(engine)
            path = write_revision(engine, message)
        except GatewayError as exc:
            raise fail(exc) from exc
        finally:
            engine.dispose()
    console.print(f"Révision écrite : {path}")
