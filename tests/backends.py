"""The two stores the tests run on: SQLite (the embedded default) and PostgreSQL (the scale-out store,
brief §8), a fresh database per test, dropped after.

PostgreSQL comes from ``GATEWAY_TEST_POSTGRES_URL`` (``scripts/postgres-for-tests`` prints one; ``.ci/run``
exports it). Without it the PostgreSQL variants are *skipped*, saying why — unless
``GATEWAY_TEST_REQUIRE_POSTGRES=1`` (``.ci/run`` sets it), where they *fail*: CI can never skip them silently.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

POSTGRES_URL_VAR = "GATEWAY_TEST_POSTGRES_URL"
REQUIRE_VAR = "GATEWAY_TEST_REQUIRE_POSTGRES"


def _unavailable(reason: str):
    if os.environ.get(REQUIRE_VAR) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_VAR}=1: the PostgreSQL tests must run (scripts/postgres-for-tests)")
    pytest.skip(f"PostgreSQL variant skipped: {reason} (scripts/postgres-for-tests prints the URL to export)")


def postgres_url() -> str:
    url = os.environ.get(POSTGRES_URL_VAR)
    if not url:
        _unavailable(f"{POSTGRES_URL_VAR} is not set")
    return url


@contextmanager
def fresh_postgres_database(server_url: str | None = None, *, prefix: str = "gwtest") -> Iterator[str]:
    """A new, empty database on the test server (or ``server_url``); its URL (password included) is
    yielded, and it is dropped afterwards, whatever still holds a connection to it (a killed
    subprocess, a leaked pool). The benchmark uses it too (``bench/night.py --database-url``)."""
    base = sa.engine.make_url(server_url or postgres_url())
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        _unavailable(f"the server at {base.render_as_string()} cannot create a database: {exc.orig}")
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        drop_database(admin, name)
        admin.dispose()


def drop_database(admin: sa.Engine, name: str) -> None:
    """Drop a database: plainly (PostgreSQL cancels an autovacuum worker in it by itself), else forcing out
    what still holds a connection (a killed subprocess's); a few tries, as a worker may come and go."""
    for attempt in range(10):
        for statement in (f'DROP DATABASE IF EXISTS "{name}"', f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'):
            try:
                with admin.connect() as conn:
                    conn.execute(sa.text(statement))
                return
            except DBAPIError:
                continue
        time.sleep(0.2 * (attempt + 1))
    with admin.connect() as conn:  # the last word, with its error
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


#: Parameters of a fixture over both stores: ``"sqlite"`` and ``"postgresql"`` (marked ``postgres``).
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def on_both_backends():
    """A ``database_url`` fixture over SQLite and PostgreSQL. In a test module whose tests must hold on
    both: ``database_url = on_both_backends()``; the ``settings`` fixture (so ``gw``) then uses it."""

    @pytest.fixture(params=BACKENDS)
    def database_url(request) -> Iterator[str | None]:
        if request.param == "sqlite":
            yield None  # the default: SQLite in the test's data folder
            return
        with fresh_postgres_database() as url:
            yield url

    return database_url
