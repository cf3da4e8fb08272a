"""A key found by its beginning on a PostgreSQL server initialised in a language's locale.

``initdb`` takes the server's locale: a French server often gets ``fr_FR.UTF-8``, under which punctuation is
ignored when comparing text, so ``69001-1001`` sorts as ``690011001``. The range `key_starts_with` uses to find
a key by its beginning then matched nothing, and the console's search for a key, or its beginning, answered
nothing. The test server has no glibc French locale; an ICU one that ignores punctuation the same way
(``fr-u-ka-shifted``) stands for it, as the database's own collation.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from adapters.parcours3.mapping import parse_export
from gateway.context import Gateway
from gateway.pipeline.ingest import ingest
from gateway.preflight import PreflightConfig
from gateway.store.queries import EventFilter, list_events
from tests.backends import drop_database, postgres_url
from tests.factories import p3_line, write_export

pytestmark = pytest.mark.postgres


@contextmanager
def french_collated_database() -> Iterator[str]:
    base = sa.engine.make_url(postgres_url())
    name = f"gwtest_fr_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu "
                             "ICU_LOCALE 'fr-u-ka-shifted' LOCALE 'C.UTF-8'"))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        drop_database(admin, name)
        admin.dispose()


def test_keys_are_found_by_their_beginning_whatever_the_databases_collation(settings, tmp_path) -> None:
    with french_collated_database() as url:
        gw = Gateway.open(settings.model_copy(update={"database_url": url}))
        with gw.engine.connect() as conn:  # the premise: this database ignores the dash when comparing
            assert conn.execute(sa.text("SELECT '69001-1001' < '69001.'")).scalar() is False
        export = write_export(tmp_path / "P3_69001_20261128.csv",
                              [p3_line(id_evenement=n) for n in ("1001", "1002", "2", "10010")])
        ingest(gw.engine, parse_export(export, PreflightConfig.from_settings(gw.settings)), run_id=None,
               now=gw.clock())
        with gw.engine.connect() as conn:
            def found(prefix: str) -> list[str]:
                return sorted(r.key for r in list_events(conn, EventFilter(key_prefix=prefix)))

            assert found("69001-") == ["69001-1001", "69001-10010", "69001-1002", "69001-2"]
            assert found("69001-100") == ["69001-1001", "69001-10010", "69001-1002"]
            assert found("69001-1001") == ["69001-1001", "69001-10010"]  # a whole key begins itself
            assert found("69001-3") == []
        gw.close()
