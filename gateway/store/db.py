"""Opening the store: one engine per process, SQLite (WAL) by default, PostgreSQL by URL (brief §8)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from gateway.errors import StoreError
from gateway.store import models  # noqa: F401  (registers the tables on SQLModel.metadata)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets readers (the console, the API) work while a night is written; NORMAL sync is
    # durable at every checkpoint and safe against application crashes, which is what the
    # outbox needs; foreign keys are off by default in SQLite.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


#: How long a connection to a PostgreSQL server may take (libpq's ``connect_timeout``), unless the URL says
#: (``?connect_timeout=N``). Without it, a server that accepts the connection and never answers (a firewall
#: that drops, a host half down) held a night, or each ``/readyz``, for as long as the system's TCP time-out.
CONNECT_TIMEOUT_SECONDS = 10


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for ``url``; creates the SQLite file's folder if needed; a PostgreSQL connection that does not
    come within `CONNECT_TIMEOUT_SECONDS` fails."""
    try:
        if url.startswith("sqlite"):
            path = sa.engine.make_url(url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})
            sa_event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = sa.create_engine(url, echo=echo, pool_pre_ping=True, connect_args=server_connect_args(url))
    except (SQLAlchemyError, ValueError) as exc:
        raise StoreError(f"base {shown_url(url)} impossible à ouvrir : {store_problem(exc)}") from exc
    except ImportError as exc:  # a driver named in the URL (postgresql+psycopg2://…) that is not installed
        raise StoreError(f"cannot open the database {shown_url(url)}: its driver is not installed ({exc.name}); "
                         "the gateway installs psycopg: postgresql+psycopg://… or postgresql://…") from exc
    return engine


def server_connect_args(url: str) -> dict[str, int]:
    """A server's connection arguments: `CONNECT_TIMEOUT_SECONDS`, unless the URL gives its own."""
    return {} if "connect_timeout" in sa.engine.make_url(url).query else {"connect_timeout": CONNECT_TIMEOUT_SECONDS}


def driver_says(exc: BaseException) -> str:
    """What the database driver said of a failure, for an operator: its class and first line, never the SQL
    SQLAlchemy adds (it may hold values)."""
    driver = getattr(exc, "orig", None) or exc
    return f"{type(driver).__name__} : {next(iter(str(driver).strip().splitlines()), '')[:200]}"


#: PostgreSQL's SQLSTATEs an operator meets, in French with what to do (`store_problem`).
_SQLSTATES = {
    "53100": "disque plein sur le serveur PostgreSQL : y libérer de la place",
    "57P01": "connexion coupée par le serveur PostgreSQL (arrêté ou redémarré)",
    "57P02": "connexion coupée par le serveur PostgreSQL (arrêté ou redémarré)",
    "57P03": "le serveur PostgreSQL démarre ou s'arrête : réessayer dans un instant",
    "28P01": "mot de passe refusé par PostgreSQL : vérifier GATEWAY_DATABASE_URL",
    "28000": "connexion refusée par PostgreSQL (utilisateur, ou pg_hba.conf) : vérifier GATEWAY_DATABASE_URL",
    "3D000": "cette base n'existe pas sur le serveur PostgreSQL : vérifier le nom de base de GATEWAY_DATABASE_URL",
    "53300": "trop de connexions ouvertes sur le serveur PostgreSQL",
}
#: What the drivers say without a SQLSTATE (SQLite; a PostgreSQL server never reached), lowercased, in French.
_SAID = (
    ("database or disk is full", "disque plein : libérer de la place sur le disque de la base (GATEWAY_DATA_DIR)"),
    ("no space left on device", "disque plein : libérer de la place sur le disque de la base"),
    ("readonly database", "base en lecture seule : l'utilisateur du service doit pouvoir écrire le fichier et son "
                          "dossier"),
    ("unable to open database file", "fichier de la base impossible à ouvrir : dossier absent, ou droits "
                                     "(GATEWAY_DATA_DIR)"),
    ("database is locked", "base verrouillée trop longtemps par un autre processus"),
    ("disk i/o error", "erreur d'entrée-sortie sur le disque de la base"),
    ("connection refused", "serveur de base injoignable (connexion refusée) : PostgreSQL tourne-t-il, à l'adresse "
                           "et au port de GATEWAY_DATABASE_URL ?"),
    # psycopg gives a connection that failed no SQLSTATE: the server's words, then
    ("password authentication failed", "mot de passe refusé par PostgreSQL : vérifier GATEWAY_DATABASE_URL"),
    ("no pg_hba.conf entry", "connexion refusée par PostgreSQL (pg_hba.conf) : vérifier GATEWAY_DATABASE_URL"),
    ('" does not exist', "base ou utilisateur inconnu du serveur PostgreSQL : vérifier GATEWAY_DATABASE_URL"),
    ("could not translate host name", "nom d'hôte du serveur de base inconnu (DNS) : vérifier GATEWAY_DATABASE_URL"),
    ("name or service not known", "nom d'hôte du serveur de base inconnu (DNS) : vérifier GATEWAY_DATABASE_URL"),
    ("timeout expired", "serveur de base muet (délai dépassé) : vérifier GATEWAY_DATABASE_URL et le réseau"),
    ("server closed the connection", "connexion coupée par le serveur de base (arrêté ou redémarré ?)"),
    ("terminating connection", "connexion coupée par le serveur de base (arrêté ou redémarré ?)"),
)


def store_problem(exc: BaseException) -> str:
    """What went wrong with the store, in French with what to do when it is known (a full disk, a server down or
    restarted, a password refused…), then what the driver said (`driver_says`). The store's errors said
    SQLAlchemy's English text whole, its documentation link included ("cannot take the lease run:
    (sqlite3.OperationalError) database or disk is full (Background on this error at: https://sqlalche.me/…)"),
    and a full disk was said as a database "lost"."""
    driver = getattr(exc, "orig", None) or exc
    sqlstate = getattr(driver, "sqlstate", None)
    if sqlstate:  # the server's own code: its words are matched only when it gave none (a table missing is not these)
        known = _SQLSTATES.get(sqlstate)
    else:
        text = str(driver).lower()
        known = next((french for words, french in _SAID if words in text), None)
    said = driver_says(exc)
    return f"{known} ({said})" if known else said


def shown_url(url: str) -> str:
    """``url`` with its password masked, or a placeholder when it is not even a URL (which could hold one)."""
    try:
        return sa.engine.make_url(url).render_as_string()
    except (SQLAlchemyError, ValueError):
        return "(URL illisible : vérifier GATEWAY_DATABASE_URL)"


def create_schema(engine: Engine) -> None:
    """Bring the store to the latest schema revision (`gateway.store.migrate`: Alembic, on start)."""
    from gateway.store.migrate import upgrade

    upgrade(engine)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session in one transaction: committed if the block succeeds, rolled back otherwise."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise StoreError(f"erreur de la base : {store_problem(exc)}") from exc
        except BaseException:
            session.rollback()
            raise


class BulkInsert:
    """``INSERT`` of many rows given as tuples, through the driver's ``executemany`` (``COPY`` on
    PostgreSQL): the ingest hot path.

    ``BulkInsert(table, columns)`` once, then ``insert(conn, rows)`` per chunk. Why not
    ``conn.execute(table.insert(), dicts)``: SQLAlchemy then converts every value of every row in
    Python (~20 µs a row for ``events``, mostly formatting the two timestamps and the date one by
    one), about as long as SQLite takes to store the row. Here each column's value goes through the
    same converter SQLAlchemy would use (the dialect's bind processor, time zone check included), but
    once per *distinct* value: a chunk shares one ``now``, and a night has a few hundred dates.
    Columns without a converter (text, integers on SQLite) pass as they are.
    """

    def __init__(self, table: sa.Table, columns: tuple[str, ...]):
        self.table, self.columns = table, columns
        self._compiled: dict[str, tuple[str, bool, tuple]] = {}

    def _prepare(self, dialect: sa.Dialect) -> tuple[str, bool, tuple]:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.table.insert().compile(dialect=dialect, column_keys=list(self.columns))
            processors = tuple(self.table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                               for name in self.columns)
            if compiled.positional:  # bind names in statement order (our column order, but be sure)
                order = [self.columns.index(name) for name in compiled.positiontup]
                if order != list(range(len(self.columns))):
                    raise StoreError(f"unexpected bind order for {self.table.name}: {compiled.positiontup}")
            found = self._compiled[dialect.name] = (compiled.string, compiled.positional, processors)
        return found

    def insert(self, conn: sa.Connection, rows: list[tuple]) -> None:
        if not rows:
            return
        sql, positional, processors = self._prepare(conn.dialect)
        converted = [column for column, proc in enumerate(processors) if proc is not None]
        if converted:
            memo: list[dict] = [{} for _ in processors]
            out = []
            for row in rows:
                row = list(row)
                for column in converted:
                    value = row[column]
                    if value is not None:
                        seen = memo[column]
                        done = seen.get(value, _MISSING)
                        if done is _MISSING:
                            done = seen[value] = processors[column](value)
                        row[column] = done
                out.append(tuple(row))
            rows = out
        if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":  # the documented driver
            self._copy(conn, rows)
            return
        if not positional:
            rows = [dict(zip(self.columns, row, strict=True)) for row in rows]
        conn.exec_driver_sql(sql, rows)

    def _copy(self, conn: sa.Connection, rows: list[tuple]) -> None:
        """PostgreSQL: ``COPY … FROM STDIN`` (psycopg's ``Copy.write_row``) rather than ``executemany``.
        The rows go as one stream instead of one ``INSERT`` each; constraints, defaults, indexes and
        foreign keys apply as for an ``INSERT``, and a failure aborts the transaction the same way. A
        driver error is wrapped as SQLAlchemy wraps it (``IntegrityError`` for a duplicate key), so
        that callers see the same exceptions on both stores (a connection lost meanwhile is found by
        the engine's ``pool_pre_ping`` at its next checkout). 20,000 ``events`` rows: 1.6 s → 0.6 s."""
        quote = conn.dialect.identifier_preparer.quote
        statement = (f"COPY {conn.dialect.identifier_preparer.format_table(self.table)} "
                     f"({', '.join(quote(name) for name in self.columns)}) FROM STDIN")
        dbapi = conn.dialect.loaded_dbapi
        cursor = conn.connection.cursor()
        try:
            with cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        except dbapi.Error as exc:
            raise sa.exc.DBAPIError.instance(statement, None, exc, dbapi.Error, dialect=conn.dialect) from exc
        finally:
            cursor.close()


_MISSING = object()


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def db_now(conn: sa.Connection) -> datetime:
    """The database server's clock on PostgreSQL (one clock for every instance sharing it, whatever their
    own drift), the process clock on SQLite (one machine). Leases are timed by it (`gateway.lease`)."""
    if conn.dialect.name == "postgresql":
        return conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one().astimezone(UTC)
    return datetime.now(UTC)
