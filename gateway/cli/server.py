"""``gateway serve`` (the partner API) and ``gateway clients`` (its bearer tokens)."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer
from rich.table import Table

from gateway.cli.common import (
    DataDirOpt, JsonOpt, console, fail, load_settings, open_store, print_json, warn_unsafe_keys,
)
from gateway.errors import ConfigurationError, GatewayError

clients_app = typer.Typer(help="API clients: bearer tokens bound to a role and missions locales.",
                          no_args_is_help=True)


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on "
                                             "(default: GATEWAY_API_HOST or 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: GATEWAY_API_PORT or 8780).")] = None,
    workers: Annotated[int | None, typer.Option(min=1, max=64, help="Processes serving requests (default: "
                                                "GATEWAY_API_WORKERS or 1); the schedule runs once whatever "
                                                "their number.")] = None,
    root_path: Annotated[str | None, typer.Option(help="Path prefix a reverse proxy serves the gateway under and "
                                                  "strips before passing requests on, e.g. /passerelle: links, "
                                                  "redirects, cookies and Location headers carry it (default: "
                                                  "GATEWAY_API_ROOT_PATH or none).")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Serve the partner HTTP API (/api/v1, OpenAPI at /openapi.json, docs at /docs) and the console (/console)."""
    import uvicorn

    from gateway.api.main import create_app
    from gateway.api.serving import UVICORN_OPTIONS, cannot_listen
    from gateway.api.worker import serve_workers
    from gateway.context import Gateway
    from gateway.scheduler import GatewayScheduler

    settings = load_settings(data_dir=data_dir, api_host=host, api_port=port, api_workers=workers,
                             api_root_path=root_path)
    warn_unsafe_keys(settings)
    logging.getLogger("gateway.night").setLevel(logging.INFO)  # a service says what each night did, even without -v
    problem = cannot_listen(settings.api_host, settings.api_port, what="gateway serve",
                            port_hint="--port (ou GATEWAY_API_PORT)", host_hint="--host (ou GATEWAY_API_HOST)")
    if problem:  # said before "API … sur http://…", which would announce a server that never starts
        raise fail(ConfigurationError(f"impossible d'écouter sur {settings.api_host}:{settings.api_port} : "
                                      f"{problem}."))
    try:
        gw = Gateway.open(settings)
    except GatewayError as exc:
        raise fail(exc) from exc
    console.print(f"API de la passerelle sur http://{settings.api_host}:{settings.api_port}/api/v1 "
                  f"(documentation : /docs)" + (f", {settings.api_workers} processus" if settings.api_workers > 1
                                                else ""))
    console.print(f"Console support sur http://{settings.api_host}:{settings.api_port}/console/ "
                  f"(connexion avec un jeton support ou admin)")
    if root := settings.api_root_path:  # the addresses a browser or a partner uses, through the proxy
        console.print(f"Derrière le proxy, sous le préfixe {root} (qu'il retire avant de transmettre) : {root}/api/v1, "
                      f"{root}/docs, {root}/console/")
    console.print("Tâches planifiées : " + ("actives (gateway schedule show)" if settings.schedule_enabled
                                            else "désactivées (GATEWAY_SCHEDULE_ENABLED=false)"))
    try:
        # No uvicorn access log (UVICORN_OPTIONS). uvicorn parses HTTP with httptools (a dependency):
        # with pure-Python h11, a 5,000-event bulk body costs the server ~60 % more CPU (bench/api.py).
        scheduler = GatewayScheduler(gw) if settings.schedule_enabled else None
        if settings.api_workers == 1:  # the schedule (issue 5) runs inside the app's lifespan
            uvicorn.run(create_app(gw, scheduler=scheduler), host=settings.api_host, port=settings.api_port,
                        **UVICORN_OPTIONS)
        else:
            # Each worker reads its settings anew (`gateway.api.worker`) and applies the prefix itself
            # (`create_app`): --root-path goes to them as the setting, empty meaning none.
            os.environ["GATEWAY_API_ROOT_PATH"] = settings.api_root_path
            serve_workers(settings, scheduler=scheduler)
    except GatewayError as exc:
        raise fail(exc) from exc
    finally:
        gw.close()


@clients_app.command("create")
def clients_create(
    name: Annotated[str, typer.Option(help="A name for the client (unique), e.g. the partner system's.")],
    role: Annotated[str, typer.Option(help="admin, support or partner.")],
    ml: Annotated[list[str] | None, typer.Option("--ml", help="Mission locale code it may see (repeat; "
                                                  "required for support and partner).")] = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a client and print its token, once: only its hash is kept."""
    from gateway.api.auth import Role, create_client
    from gateway.store.models import utcnow

    try:
        chosen = Role(role)
    except ValueError:
        raise typer.BadParameter("admin, support ou partner", param_hint="--role") from None
    try:
        engine = open_store(load_settings(data_dir=data_dir), existing=False)
        info, token = create_client(engine, name=name, role=chosen, ml_codes=ml or [], now=utcnow())
    except GatewayError as exc:
        raise fail(exc) from exc
    if json_out:
        print_json({**info.as_dict(), "token": token})
        return
    console.print(f"Client n° {info.id} « {info.name} » ({info.role}"
                  f"{', ' + ', '.join(info.ml_codes) if info.ml_codes else ''}) créé.")
    console.print("Jeton (affiché une seule fois, à conserver en lieu sûr) :")
    typer.echo(token)


@clients_app.command("list")
def clients_list(data_dir: DataDirOpt = None, json_out: JsonOpt = False) -> None:
    """Clients, with their role, missions locales and whether they are revoked (never their token)."""
    from gateway.api.auth import list_clients

    settings = load_settings(data_dir=data_dir)
    with open_store(settings, existing=True).connect() as conn:
        clients = list_clients(conn)
    if json_out:
        print_json({"count": len(clients), "clients": [c.as_dict() for c in clients]})
        return
    from zoneinfo import ZoneInfo

    from gateway.cli.report import when, zone_note

    tz = ZoneInfo(settings.timezone)  # as the console and `envelopes list` show times
    table = Table(title="Clients de l'API", caption=zone_note(tz))
    for col in ("N°", "Nom", "Rôle", "Missions locales", "Créé le", "Révoqué le"):
        table.add_column(col)
    for c in clients:
        table.add_row(str(c.id), c.name, c.role, ", ".join(c.ml_codes) or "toutes", when(c.created_at, tz),
                      when(c.revoked_at, tz))
    console.print(table)


@clients_app.command("revoke")
def clients_revoke(
    client_id: Annotated[int, typer.Argument(help="The client's number (see `gateway clients list`).")],
    data_dir: DataDirOpt = None,
) -> None:
    """Revoke a client's token: refused from its next request on."""
    from gateway.api.auth import revoke_client
    from gateway.store.models import utcnow

    try:
        changed = revoke_client(open_store(load_settings(data_dir=data_dir), existing=True), client_id, now=utcnow())
    except GatewayError as exc:
        raise fail(exc) from exc  # Erreur NOT_FOUND, exit code 2, as the command line's other errors
    console.print(f"Client n° {client_id} révoqué." if changed else f"Client n° {client_id} déjà révoqué.")
