"""``gateway check``: is this installation ready for a night? (`gateway.checks.installation`)

For the integrator, with the service's environment: after installing, before ``systemctl enable``, and when a
night said nothing. It creates and sends nothing (a missing SQLite store is said, not made; DUDE is asked for
the report of a lot that does not exist). Exit code 0 when a night would do its work (warnings included), 1
when a check fails, 2 when the settings themselves are wrong (``Erreur CONFIG``, as every command).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from gateway.cli.common import DataDirOpt, JsonOpt, console, load_settings, missing_store, print_json

_STYLE = {"ok": "green", "attention": "yellow", "échec": "bold red"}


def check(
    data_dir: DataDirOpt = None,
    no_dude: Annotated[bool, typer.Option("--no-dude", help="Do not contact DUDE (a machine that must not).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check the installation: store, keys and certificates, drop folder, sending switch, and whether DUDE
    answers at GATEWAY_DUDE_URL (nothing is sent). Exit code 1 if a night would fail."""
    import sqlalchemy as sa

    from gateway.checks import FAILING, installation
    from gateway.context import Gateway

    settings = load_settings(data_dir=data_dir)
    store_exists = missing_store(settings) is None
    # A store not made yet stays so: an engine that never connects (make_engine would make its folder).
    engine = None if store_exists else sa.create_engine(settings.db_url)
    gw = Gateway.open(settings, create=False) if engine is None else Gateway(settings=settings, engine=engine)
    try:
        checks = installation(gw, store_exists=store_exists, ask_dude=not no_dude)
    finally:
        gw.close()
    failing = [c for c in checks if c.status == FAILING]
    if json_out:
        print_json({"ok": not failing, "checks": [c.as_dict() for c in checks]})
    else:
        table = Table(title="Vérification de l'installation")
        for col in ("Vérification", "État", "Détail"):
            table.add_column(col)
        for c in checks:
            table.add_row(escape(c.label), f"[{_STYLE[c.status]}]{c.status}[/]", escape(c.detail))
        console.print(table)
        if failing:
            console.print(f"[bold red]{len(failing)} échec(s)[/] : une nuit ne ferait pas son travail "
                          f"({', '.join(c.name for c in failing)}).")
        else:
            console.print("[green]Prête pour la nuit.[/]")
    if failing:
        raise typer.Exit(code=1)
