"""Read-side queries shared by the command line, the API and the console."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.codes import EventState
from gateway.store.models import documents_t, envelopes_t, events_t

REJECTED_STATES = (EventState.REJETE.value, EventState.INVALIDE.value)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Search criteria for events; ``None`` means "any". ``code_ml_in`` restricts to a scope."""

    states: tuple[str, ...] | None = None
    reject_code: str | None = None
    code_ml: str | None = None
    code_ml_in: frozenset[str] | None = None
    key: str | None = None
    identifiant_pe: str | None = None
    envelope_id: str | None = None
    run_id: int | None = None

    def where(self) -> list[sa.ColumnElement]:
        c = events_t.c
        clauses = []
        if self.states:
            clauses.append(c.state.in_(self.states))
        if self.reject_code:
            clauses.append(c.reject_code == self.reject_code)
        if self.code_ml:
            clauses.append(c.code_ml == self.code_ml)
        if self.code_ml_in is not None:
            clauses.append(c.code_ml.in_(sorted(self.code_ml_in)))
        if self.key:
            clauses.append(c.key == self.key)
        if self.identifiant_pe:
            clauses.append(c.identifiant_pe == self.identifiant_pe)
        if self.envelope_id:
            clauses.append(c.envelope_id == self.envelope_id)
        if self.run_id is not None:
            clauses.append(c.run_id == self.run_id)
        return clauses


def list_events(conn: Connection, flt: EventFilter, *, limit: int = 100, after_id: int | None = None) -> list[sa.Row]:
    """Events matching ``flt`` in id order, ``limit`` at a time after ``after_id`` (keyset pagination)."""
    query = sa.select(events_t).where(*flt.where())
    if after_id is not None:
        query = query.where(events_t.c.id > after_id)
    return conn.execute(query.order_by(events_t.c.id).limit(limit)).all()


def count_events(conn: Connection, flt: EventFilter) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(events_t).where(*flt.where())).scalar_one()


def list_envelopes(conn: Connection, *, limit: int = 100) -> list[sa.Row]:
    return conn.execute(sa.select(envelopes_t).order_by(envelopes_t.c.created_at.desc(), envelopes_t.c.id)
                        .limit(limit)).all()


def envelope_document(conn: Connection, envelope_id: str, kind: str) -> bytes | None:
    """The latest raw document of ``kind`` for an envelope (the signed XML exactly as sent, …)."""
    return conn.execute(sa.select(documents_t.c.body).where(
        documents_t.c.envelope_id == envelope_id, documents_t.c.kind == kind)
        .order_by(documents_t.c.id.desc()).limit(1)).scalar()
