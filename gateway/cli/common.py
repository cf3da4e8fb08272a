"""What every command shares: settings, output (rich for people, ``--json`` for scripts), logging."""

from __future__ import annotations

import json
import logging
import os
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gateway.errors import ConfigurationError, GatewayError, StoreError, StoreMissing

try:  # Typer 0.2x carries its own copy of click, whose exceptions are not click's
    from typer._click.exceptions import UsageError
except ImportError:  # older Typer, on click itself
    from click.exceptions import UsageError

if TYPE_CHECKING:  # pydantic-settings is imported when settings are read, not by `gateway --help`
    from gateway.settings import Settings

console = Console(stderr=False)
err_console = Console(stderr=True)

#: Whether the command running was given ``--json`` (set by `_json_errors`, read by `fail`).
_json_errors_on: ContextVar[bool] = ContextVar("gateway_cli_json_errors", default=False)


def _json_errors(ctx: typer.Context, value: bool) -> bool:
    """Note ``--json`` for `fail`, until the command ends.

    Why here: errors are said by `fail`, often from `load_settings` or `open_store`, which do not know the
    command's options; every command with ``--json`` takes it through `JsonOpt`, so none is forgotten."""
    if value:
        token = _json_errors_on.set(True)
        ctx.call_on_close(lambda: _json_errors_on.reset(token))
    return value


JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON summary on stdout "
                                       "(an error too: {\"error\": {\"code\": …, \"message\": …}}).",
                                       callback=_json_errors)]
DataDirOpt = Annotated[Path | None,
                       typer.Option("--data-dir", help="Data folder (default: GATEWAY_DATA_DIR or ./gateway-data).")]


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (``GATEWAY_*``, ``.env``), with command-line options on top.

    A value that does not fit ends the command with ``Erreur CONFIG``, naming each variable and what it
    must be (never the value given: it may be a secret), and exit code 2, for every command alike."""
    from pydantic import ValidationError

    from gateway.settings import Settings, unknown_variables

    overrides = {k: v for k, v in overrides.items() if v is not None}
    for name in unknown_variables(os.environ):
        err_console.print(f"[bold yellow]Attention[/] : variable inconnue, ignorée : {escape(name)}", highlight=False,
                          soft_wrap=True)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"GATEWAY_{'_'.join(str(part) for part in error['loc']).upper()} : {error['msg']}"
                             for error in exc.errors())
        raise fail(ConfigurationError(f"réglages invalides : {problems}")) from None


def open_store(settings: Settings, *, existing: bool):
    """The store's engine (``--data-dir``, ``GATEWAY_DATA_DIR`` or ``GATEWAY_DATABASE_URL``, as ``settings`` read
    them once with `load_settings`), its schema up to date.

    Why ``existing``: SQLite creates a database wherever it is pointed, so a mistyped ``--data-dir`` used to
    answer "0 rejects", "no envelope" or "sending active" from an empty store made on the spot, which at
    2 a.m. reads like a quiet night. Commands that only look or undo (``rejects``, ``envelopes``,
    ``sending status`` and ``resume``, ``clients list`` and ``revoke``; ``schedule show`` and ``db current``
    through `require_store`) pass ``existing=True`` and end with ``Erreur STORE_MISSING`` (exit code 2)
    naming the file they looked for. Commands that set something up before a first night (``sending
    pause``, ``clients create``) may create the store, and say so on stderr with its path. A server
    database (PostgreSQL) is the operator's to create; the commands that only look do not lay the schema in
    an empty one either (``Erreur STORE_MISSING``).
    """
    from gateway.store.db import create_schema, make_engine
    from gateway.store.migrate import current

    if existing:
        require_store(settings)
    missing = missing_store(settings)
    try:
        engine = make_engine(settings.db_url)
        if existing and not missing and current(engine) is None:  # a server database never set up
            engine.dispose()
            raise StoreMissing(f"la base {engine.url.render_as_string()} n'a pas le schéma de la passerelle : "
                               "vérifier GATEWAY_DATABASE_URL ; gateway db upgrade le crée.")
        create_schema(engine)
    except GatewayError as exc:  # a server down, a wrong password, a URL that is not one: said, not a traceback
        raise fail(exc) from exc
    if missing:
        err_console.print(f"[yellow]Base créée[/] : {escape(missing)} (il n'y en avait pas : si la passerelle "
                          "en a une ailleurs, vérifier --data-dir)", highlight=False, soft_wrap=True)
    return engine


def missing_store(settings: Settings) -> str | None:
    """The SQLite file the settings name, if it does not exist (None for a server database)."""
    from sqlalchemy.engine import make_url

    url = settings.db_url
    database = make_url(url).database if url.startswith("sqlite") else None
    return database if database and database != ":memory:" and not Path(database).exists() else None


def require_store(settings: Settings) -> None:
    """End the command with ``Erreur STORE_MISSING`` if the settings name a SQLite file that does not exist."""
    missing = missing_store(settings)
    if missing:
        raise fail(StoreMissing(f"aucune base de la passerelle à {missing} : vérifier --data-dir (ou "
                                "GATEWAY_DATA_DIR, GATEWAY_DATABASE_URL) ; la première nuit la crée "
                                "(gateway run, gateway demo), ou gateway db upgrade."))


#: The width of the tables when the output is no terminal (cron's mail, a file, a pipe), unless ``COLUMNS``.
PIPED_WIDTH = 200


def widen_when_piped() -> None:
    """Rich lays tables out in 80 columns when the output is not a terminal: ``gateway rejects`` in cron's
    mail came out with each row wrapped over four lines. A pipe has no width to respect; ``COLUMNS`` still
    sets one."""
    for each in (console, err_console):
        if not each.is_terminal and "COLUMNS" not in os.environ:
            each.width = PIPED_WIDTH


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def warn_unsafe_keys(settings: Settings) -> None:
    """On start (``run``, ``serve``, ``demo``): say so if the private key or its password file is readable by
    others, naming the file and the fix (`gateway.keys.unsafe_key_files`). The password itself is never shown."""
    from gateway.keys import unsafe_key_files

    for warning in unsafe_key_files(settings):
        err_console.print(f"[bold yellow]Attention[/] : {escape(warning)}", highlight=False,
                          soft_wrap=True)  # one line: the chmod command stays copiable


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2, default=str) + "\n")
    sys.stdout.flush()


def fail(exc: GatewayError) -> typer.Exit:
    """Print ``Erreur CODE : message`` on stderr, on one line (paths and commands in it stay whole, to copy),
    and return the exit (code 2) to raise.

    Run with ``--json``, the same code and message are also written on stdout as one JSON object,
    ``{"error": {"code": …, "message": …}}``: a script parsing stdout used to find nothing there to parse."""
    err_console.print(f"[bold red]Erreur {exc.code}[/] : {escape(exc.message)}", soft_wrap=True)
    if _json_errors_on.get():
        print_json({"error": {"code": exc.code, "message": exc.message}})
    return typer.Exit(code=2)


def store_lost(exc: BaseException, consequence: str, *, during: str = "la commande") -> StoreError:
    """The `StoreError` to say for a database lost in the middle of a command (SQLAlchemy's
    ``OperationalError`` or ``InterfaceError``: a server restarted, a network cut, a file gone): the driver's
    first line, never the SQL (it may hold values), then ``consequence``."""
    from gateway.store.db import store_problem

    return StoreError(f"base de données en échec pendant {during} : {store_problem(exc)} ; {consequence}")


class GatewayGroup(typer.core.TyperGroup):
    """The ``gateway`` command itself: what no single command should have to remember.

    * A usage error (an unknown option, a bad value) under ``--json`` is also written on stdout as
      ``{"error": {"code": "USAGE", …}}``, as `fail` does for the gateway's own errors: a script parsing
      stdout found nothing there. Click still prints its usage text on stderr, exit code 2.
    * A database lost in the middle of a command that only looks or changes a setting (``rejects``,
      ``envelopes``, ``sending``, ``clients``…) ends with ``Erreur STORE`` (exit code 2), not a traceback of
      the driver's internals. ``gateway run`` says more (what happens to the night) on its own.
    """

    def invoke(self, ctx: typer.Context) -> Any:
        wanted = (*getattr(ctx, "_protected_args", ()), *ctx.args)  # the rest of the line, before it is parsed
        token = _json_errors_on.set("--json" in wanted)
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            if _json_errors_on.get():
                print_json({"error": {"code": "USAGE", "message": exc.format_message()}})
            raise
        except Exception as exc:
            from sqlalchemy.exc import InterfaceError, OperationalError

            if not isinstance(exc, (OperationalError, InterfaceError)):
                raise
            raise fail(store_lost(exc, "vérifier que la base répond (GATEWAY_DATABASE_URL, --data-dir), puis "
                                       "relancer la commande")) from exc
        finally:
            _json_errors_on.reset(token)


@contextmanager
def progress_bars(enabled: bool):
    """Yield a ``progress(stage, done, total)`` callback drawing one bar per stage (stderr)."""
    if not enabled:
        yield lambda stage, done, total: None
        return
    bars = Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=False)
    tasks: dict[str, int] = {}

    def progress(stage: str, done: int, total: int | None) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total)
        bars.update(tasks[stage], completed=done, total=total)

    with bars:
        yield progress
