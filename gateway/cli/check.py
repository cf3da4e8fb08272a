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

from gateway.cli.common import DataDirOpt, JsonOpt, console, fail, load_settings, missing_store, print_json

#: How each status reads in the table (``--json`` keeps the ASCII ones, for scripts).
_SHOWN = {"ok": "[green]ok[/]", "warning": "[yellow]attention[/]", "failing": "[bold red]échec[/]",
          "skipped": "[dim]non vérifié[/]"}


def check(
    data_dir: DataDirOpt = None,
    no_dude: Annotated[bool, typer.Option("--no-dude", help="Do not contact DUDE (a machine that must not).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check the installation: store, keys and certificates, drop folder, sending switch, and whether DUDE
    answers at GATEWAY_DUDE_URL (nothing is sent). Exit code 1 if a night would fail."""
    from gateway.checks import FAILING, SKIPPED, WARNING, installation, looking_engine
    from gateway.context import Gateway
    from gateway.errors import StoreError

    settings = load_settings(data_dir=data_dir)
    try:
        gw = Gateway(settings=settings, engine=looking_engine(settings))
    except Exception as exc:  # noqa: BLE001  (a URL SQLAlchemy cannot use, or whose driver is not installed)
        from gateway.store.db import shown_url

        raise fail(StoreError(f"base {shown_url(settings.db_url)} impossible à ouvrir ({type(exc).__name__}) : "
                              "vérifier GATEWAY_DATABASE_URL")) from None
    try:
        checks = installation(gw, store_exists=missing_store(settings) is None, ask_dude=not no_dude)
    finally:
        gw.close()
    failing = [c.name for c in checks if c.status == FAILING]
    if json_out:
        print_json({"ok": not failing, "checks": [c.as_dict() for c in checks]})
    else:
        table = Table(title="Vérification de l'installation")
        for col in ("Vérification", "État", "Détail"):
            table.add_column(col)
        for c in checks:
            table.add_row(escape(c.label), _SHOWN[c.status], escape(c.detail))
        console.print(table)
        look = [c.name for c in checks if c.status == WARNING]
        skipped = [c.name for c in checks if c.status == SKIPPED]
        if failing:
            console.print(f"[bold red]{len(failing)} échec(s)[/] : une nuit ne ferait pas son travail "
                          f"({', '.join(failing)}).")
        else:
            console.print("[green]Prête pour la nuit[/]" + (f", avec {len(look)} point(s) d'attention "
                                                             f"({', '.join(look)})" if look else "")
                          + (f" ; non vérifié : {', '.join(skipped)}" if skipped else "") + ".")
    if failing:
        raise typer.Exit(code=1)
