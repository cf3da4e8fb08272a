"""Schema migrations: the store's tables are created and changed by Alembic revisions, on SQLite and
PostgreSQL alike (brief §8: PostgreSQL is the scale-out store; issue 5).

`upgrade` runs on start (`Gateway.open`, so `gateway serve`, `gateway run`…) and as ``gateway db upgrade``;
once the store is at the latest revision it costs one ``SELECT``. The revisions live in
``gateway/store/migrations/versions/``: whoever changes `gateway.store.models` adds one
(``gateway db revision -m "…"`` writes it from the difference), and ``tests/gateway/store/test_migrations.py``
fails until the migrations and the models describe the same schema on both backends.

Why an advisory lock on PostgreSQL: several instances started together would each try to create the
same tables; the first migrates while the others wait on the lock, then find nothing left to do.

A store created before migrations existed (``create_all`` in the spine) is adopted: the baseline tables it
lacks are created, it is stamped at the baseline revision, then upgraded like any other.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

from gateway.errors import StoreError
from gateway.store.models import UTCDateTime
from gateway.store.db import store_problem

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: Tables in the store that no SQLModel class describes: APScheduler's job store (its definition is
#: APScheduler's; revision 0002 creates it so that the scheduler needs no DDL right at run time).
FOREIGN_TABLES = frozenset({"apscheduler_jobs"})

#: The first revision: the spine's schema as ``create_all`` made it before migrations existed.
BASELINE = "0001"
BASELINE_TABLES = ("runs", "envelopes", "events", "event_history", "envelope_history", "documents",
                   "api_clients", "audit_log", "controls")

_LOCK_KEY = 0x70336475  # pg_advisory_xact_lock key of the gateway's migrations ("p3du")


def compare_type(context, inspected_column, metadata_column, inspected_type, metadata_type) -> bool | None:
    """Autogenerate's type comparison, but for text lengths on SQLite, which keeps none (a ``VARCHAR(255)``
    holds any text): widening a column there needs no revision, nor the copy of a whole table that a
    batch ``ALTER`` would make. None: Alembic's own comparison."""
    metadata_impl = getattr(metadata_type, "impl", metadata_type)  # sqlmodel's AutoString decorates a String
    if (context.dialect.name == "sqlite" and isinstance(inspected_type, sa.String)
            and isinstance(metadata_impl, sa.String)):
        return False
    return None


def include_name(name: str | None, type_: str, parent_names: dict) -> bool:
    """Autogenerate compares only the gateway's own tables."""
    return not (type_ == "table" and name in FOREIGN_TABLES)


def render_item(type_: str, obj, autogen_context):
    """Revisions name the gateway's column types plainly (``UTCDateTime()``, ``sa.String(n)``)."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        autogen_context.imports.add("from gateway.store.models import UTCDateTime")
        return "UTCDateTime()"
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def head() -> str:
    """The latest revision."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise StoreError(f"the migrations have {len(heads)} heads ({', '.join(heads)}): merge them")
    return heads[0]


def known_revision(revision: str) -> bool:
    """Whether this version's migrations know ``revision`` (a store migrated by a newer version holds one they
    do not: neither this version's start nor ``gateway db upgrade`` can do anything with it)."""
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def current(engine: Engine) -> str | None:
    """The store's revision (None: never migrated)."""
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise StoreError(f"{store_problem(exc)} (à la lecture de la révision du schéma)") from exc


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the store to ``revision`` (default: the latest); returns (revision before, revision after)."""
    target = head() if revision == "head" else revision
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            before = MigrationContext.configure(conn).get_current_revision()
            if before == target:
                return before, before
            if before is None and sa.inspect(conn).has_table("runs"):
                _adopt(conn)
            command.upgrade(alembic_config(conn), target)
            after = MigrationContext.configure(conn).get_current_revision()
    except (SQLAlchemyError, CommandError) as exc:
        raise StoreError(f"{store_problem(exc)} (à la mise à jour du schéma, révision {target})") from exc
    return before, after


def _adopt(conn: Connection) -> None:
    """A store ``create_all`` made before migrations existed: create the baseline tables it lacks (those the
    spine added later), then say it is at the baseline. Right as long as no revision after the baseline
    changes a baseline table that an old store may lack (``test_migrations`` checks it for ``controls``)."""
    existing = set(sa.inspect(conn).get_table_names())
    missing = [SQLModel.metadata.tables[name] for name in BASELINE_TABLES if name not in existing]
    if missing:
        SQLModel.metadata.create_all(conn, tables=missing)
    command.stamp(alembic_config(conn), BASELINE)


def differences(engine: Engine) -> list:
    """What autogenerate would change to make the store match the models (empty: they agree)."""
    from alembic.autogenerate import compare_metadata

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": compare_type, "include_name": include_name})
        return compare_metadata(context, SQLModel.metadata)


def write_revision(engine: Engine, message: str) -> str | None:
    """Autogenerate a revision from the difference between ``engine``'s store (at the latest revision)
    and the models; returns the new file's path."""
    with engine.begin() as conn:
        script = command.revision(alembic_config(conn), message=message, autogenerate=True,
                                  rev_id=_next_id())
    if isinstance(script, list):
        script = script[0]
    return script.path if script is not None else None


def _next_id() -> str:
    revisions = [r.revision for r in ScriptDirectory.from_config(alembic_config()).walk_revisions()]
    numbers = [int(r) for r in revisions if r.isdigit()]
    return f"{max(numbers, default=0) + 1:04d}"
