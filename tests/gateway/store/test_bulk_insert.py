"""`BulkInsert`, ingest's insert: ``executemany`` on SQLite, ``COPY`` on PostgreSQL. Whatever the road,
the rows read back as they were given, and a duplicate key is the same `IntegrityError` (which the API's
retry and the store's error translation expect) with nothing of the chunk kept."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from gateway.context import Gateway
from gateway.settings import Settings
from gateway.store.db import BulkInsert
from gateway.store.models import events_t
from tests.backends import on_both_backends

database_url = on_both_backends()

COLUMNS = ("key", "version", "operation", "event_type", "code_ml", "identifiant_pe", "date_evenement", "payload",
           "content_hash", "state", "reject_code", "reject_message", "source_file", "source_line", "created_at",
           "updated_at")
PARIS_WINTER = timezone(timedelta(hours=1))


@pytest.fixture
def store(settings: Settings):
    gw = Gateway.open(settings)
    yield gw.engine
    gw.close()


def _row(n: int, *, at: datetime, **changes) -> tuple:
    values = {"key": f"69001-{n}", "version": 1, "operation": "C", "event_type": "ENT", "code_ml": "69001",
              "identifiant_pe": f"{n:07d}A", "date_evenement": date(2026, 11, 1 + n % 28),
              # text a COPY stream must escape: tab, newline, backslash, and non-ASCII
              "payload": json.dumps({"nom": "Lefèvre\tD’Hôte", "commentaire": "ligne 1\nligne 2 \\ fin", "n": n},
                                    ensure_ascii=False),
              "content_hash": f"{n:064x}", "state": "EN_ATTENTE", "reject_code": None, "reject_message": None,
              "source_file": "P3_69001_20261128.csv", "source_line": n + 2, "created_at": at, "updated_at": at}
    values.update(changes)
    return tuple(values[c] for c in COLUMNS)


def test_rows_read_back_as_given_and_a_duplicate_key_keeps_nothing_of_its_chunk(store) -> None:
    insert = BulkInsert(events_t, COLUMNS)
    at = datetime(2026, 11, 29, 2, 30, 15, 123456, tzinfo=PARIS_WINTER)  # stored in UTC, read back aware
    rows = [_row(n, at=at) for n in range(300)]
    rows[7] = _row(7, at=at, reject_code="E09", reject_message="Champ mal formé\u00a0: date", state="INVALIDE",
                   identifiant_pe=None, date_evenement=None)
    with store.begin() as conn:
        insert.insert(conn, rows)

    with store.connect() as conn:
        stored = conn.execute(sa.select(*(events_t.c[c] for c in COLUMNS)).order_by(events_t.c.id)).all()
    assert [tuple(r) for r in stored] == [
        tuple(v.astimezone(UTC) if isinstance(v, datetime) else v for v in row) for row in rows]
    assert stored[0].created_at.tzinfo is not None and stored[0].created_at == at

    clash = [_row(1000, at=at), _row(5, at=at)]  # the second repeats (key, version) of a stored row
    with pytest.raises(IntegrityError), store.begin() as conn:
        insert.insert(conn, clash)
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(events_t)).scalar_one() == 300
        assert conn.execute(sa.select(events_t.c.id).where(events_t.c.key == "69001-1000")).first() is None
