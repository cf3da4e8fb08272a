"""Read-side queries shared by the command line, the API and the console."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.codes import AWAITING_RECEIPT, EventState
from gateway.domain import export_prefix
from gateway.store.models import (
    documents_t, envelope_history_t, envelopes_t, events_t, history_t, runs_t,
)

REJECTED_STATES = (EventState.REJETE.value, EventState.INVALIDE.value)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Search criteria for events; ``None`` means "any". ``code_ml_in`` restricts to a scope."""

    states: tuple[str, ...] | None = None
    reject_code: str | None = None
    code_ml: str | None = None
    code_ml_in: frozenset[str] | None = None
    key: str | None = None
    #: The beginning of a key (a whole key begins itself): a counsellor types ``03926-1001`` for ``03926-100104``.
    key_prefix: str | None = None
    #: The Parcours 3 event number alone (``id_evenement``, the key after its dash): what support staff often
    #: have in hand. Not served by an index; the rejects list, which uses it, narrows by state first.
    event_number: str | None = None
    identifiant_pe: str | None = None
    envelope_id: str | None = None
    run_id: int | None = None
    #: Event date (``date_evenement``), inclusive bounds.
    date_from: date | None = None
    date_to: date | None = None
    #: Last change of state (``updated_at``), inclusive lower bound, exclusive upper bound.
    updated_from: datetime | None = None
    updated_to: datetime | None = None

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
        if self.key_prefix:
            clauses += key_starts_with(self.key_prefix)
        if self.event_number:
            clauses.append(c.key.endswith(f"-{self.event_number}", autoescape=True))
        if self.identifiant_pe:
            clauses.append(c.identifiant_pe == self.identifiant_pe)
        if self.envelope_id:
            clauses.append(c.envelope_id == self.envelope_id)
        if self.run_id is not None:
            clauses.append(c.run_id == self.run_id)
        if self.date_from is not None:
            clauses.append(c.date_evenement >= self.date_from)
        if self.date_to is not None:
            clauses.append(c.date_evenement <= self.date_to)
        if self.updated_from is not None:
            clauses.append(c.updated_at >= self.updated_from)
        if self.updated_to is not None:
            clauses.append(c.updated_at < self.updated_to)
        return clauses


#: One past the last code point: no string starts with a character after it.
_LAST_CHAR = 0x10FFFF


def key_starts_with(prefix: str) -> list[sa.ColumnElement]:
    """Keys beginning with ``prefix``, as two bounds the key's index (``uq_events_key_version``) serves, then
    the prefix itself.

    Why not LIKE alone: SQLite's LIKE ignores case, so it never uses a binary index, and PostgreSQL uses
    one for LIKE only under the C collation. A range does use it on both, and holds every key that starts
    with ``prefix`` wherever strings sort by code point, as in SQLite, PostgreSQL's C and C.UTF-8 collations
    (and its ICU ones, for the letters, digits, dash, colon and underscore keys are made of). The LIKE
    (``%`` and ``_`` escaped) then keeps only those that really begin with it, on the few rows left.
    """
    key = events_t.c.key
    clauses = [key >= prefix]
    if ord(prefix[-1]) < _LAST_CHAR:
        clauses.append(key < prefix[:-1] + chr(ord(prefix[-1]) + 1))
    return [*clauses, key.startswith(prefix, autoescape=True)]


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


def envelope_ids_starting_with(conn: Connection, prefix: str, *, limit: int) -> list[str]:
    """IdLots beginning with ``prefix``, in order, at most ``limit``: people copy the start of an IdLot
    (a narrow terminal or a message may have cut it), and ``gateway envelopes show`` finds it from that."""
    return list(conn.execute(sa.select(envelopes_t.c.id).where(envelopes_t.c.id.startswith(prefix, autoescape=True))
                             .order_by(envelopes_t.c.id).limit(limit)).scalars())


def envelope_document(conn: Connection, envelope_id: str, kind: str) -> bytes | None:
    """The latest raw document of ``kind`` for an envelope (the signed XML exactly as sent, …)."""
    return conn.execute(sa.select(documents_t.c.body).where(
        documents_t.c.envelope_id == envelope_id, documents_t.c.kind == kind)
        .order_by(documents_t.c.id.desc()).limit(1)).scalar()


# --- scoped reads for the API and the console (issue 3) -------------------------------------------
# ``scope`` is the set of mission locale codes a caller may see, None for all (`gateway.api.auth`).


def _in_scope(scope: frozenset[str] | None) -> list[sa.ColumnElement]:
    return [] if scope is None else [events_t.c.code_ml.in_(sorted(scope))]


def event_versions(conn: Connection, key: str, scope: frozenset[str] | None) -> list[sa.Row]:
    """Every version of ``key`` the caller may see, oldest first (empty: missing or out of scope)."""
    return conn.execute(sa.select(events_t).where(events_t.c.key == key, *_in_scope(scope))
                        .order_by(events_t.c.version)).all()


def event_history(conn: Connection, event_ids: list[int]) -> list[sa.Row]:
    h = history_t
    return conn.execute(sa.select(h, events_t.c.version).join(events_t, events_t.c.id == h.c.event_id)
                        .where(h.c.event_id.in_(event_ids)).order_by(h.c.id)).all()


def _envelope_visible(scope: frozenset[str] | None) -> list[sa.ColumnElement]:
    if scope is None:
        return []
    return [sa.exists().where(events_t.c.envelope_id == envelopes_t.c.id, *_in_scope(scope))]


def _run_visible(scope: frozenset[str] | None) -> list[sa.ColumnElement]:
    """A scoped caller sees the runs that read or sent one of its events, and those given an export named for
    one of its missions locales (``P3_<code>_…``): one refused whole read nothing of it, and the run, with the
    reason of the refusal (`gateway.console.runnotes`), was then hidden from the very people it concerns."""
    if scope is None:
        return []
    read = sa.exists().where(events_t.c.run_id == runs_t.c.id, *_in_scope(scope))
    sent = sa.exists().where(envelopes_t.c.run_id == runs_t.c.id, *_envelope_visible(scope))
    named = [runs_t.c.inputs.contains(export_prefix(code), autoescape=True) for code in sorted(scope)]
    return [sa.or_(read, sent, *named)]


def list_runs(conn: Connection, scope: frozenset[str] | None, *, limit: int, before_id: int | None) -> list[sa.Row]:
    """Runs newest first (keyset on id)."""
    query = sa.select(runs_t).where(*_run_visible(scope))
    if before_id is not None:
        query = query.where(runs_t.c.id < before_id)
    return conn.execute(query.order_by(runs_t.c.id.desc()).limit(limit)).all()


def get_run(conn: Connection, run_id: int, scope: frozenset[str] | None) -> sa.Row | None:
    return conn.execute(sa.select(runs_t).where(runs_t.c.id == run_id, *_run_visible(scope))).first()


def run_counts(conn: Connection, run_ids: list[int], scope: frozenset[str] | None) -> tuple[dict, dict]:
    """Per run: events it read, by state; envelopes it sealed, by state (both within ``scope``)."""
    states: dict[int, dict[str, int]] = {i: {} for i in run_ids}
    envelopes: dict[int, dict[str, int]] = {i: {} for i in run_ids}
    if not run_ids:
        return states, envelopes
    for run_id, state, count in conn.execute(
            sa.select(events_t.c.run_id, events_t.c.state, sa.func.count())
            .where(events_t.c.run_id.in_(run_ids), *_in_scope(scope)).group_by(events_t.c.run_id, events_t.c.state)):
        states[run_id][state] = count
    for run_id, state, count in conn.execute(
            sa.select(envelopes_t.c.run_id, envelopes_t.c.state, sa.func.count())
            .where(envelopes_t.c.run_id.in_(run_ids), *_envelope_visible(scope))
            .group_by(envelopes_t.c.run_id, envelopes_t.c.state)):
        envelopes[run_id][state] = count
    return states, envelopes


def unacknowledged(envelopes: Mapping[str, int]) -> int:
    """How many of a run's envelopes (by state, as `run_counts` gives them) DUDE has not acknowledged *now*.

    A run's outcome is what it was when it ended: ``TERMINE_SANS_ACCUSE`` stays, after the scheduler or a later
    run got its envelopes through. This is what tells that night caught up (0) from one still owed, the one
    reading for the console's dashboard and the API's run; taken from counts already read, it costs no query.
    """
    return sum(envelopes.get(state, 0) for state in AWAITING_RECEIPT)


def envelopes_page(conn: Connection, scope: frozenset[str] | None, *, limit: int,
                   after: tuple[datetime, str] | None = None, envelope_id: str | None = None) -> list[sa.Row]:
    """Envelopes newest first (keyset on creation time, then id); a scoped caller sees those holding
    one of its events."""
    e = envelopes_t.c
    query = sa.select(envelopes_t).where(*_envelope_visible(scope))
    if envelope_id is not None:
        query = query.where(e.id == envelope_id)
    if after is not None:
        query = query.where(sa.or_(e.created_at < after[0], sa.and_(e.created_at == after[0], e.id > after[1])))
    return conn.execute(query.order_by(e.created_at.desc(), e.id).limit(limit)).all()


def envelope_event_states(conn: Connection, envelope_ids: list[str],
                          scope: frozenset[str] | None) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {i: {} for i in envelope_ids}
    if envelope_ids:
        for envelope_id, state, count in conn.execute(
                sa.select(events_t.c.envelope_id, events_t.c.state, sa.func.count())
                .where(events_t.c.envelope_id.in_(envelope_ids), *_in_scope(scope))
                .group_by(events_t.c.envelope_id, events_t.c.state)):
            out[envelope_id][state] = count
    return out


@dataclass(frozen=True, slots=True)
class EnvelopeStep:
    """One line of an envelope's history, as a caller may read it."""

    state: str
    at: datetime
    cause: str


#: The causes of an envelope's history that count the whole envelope (`gateway.pipeline.dispatch`,
#: `reconcile`, `quarantine`), and their wording without the figures.
_ENVELOPE_TOTALS = (
    (re.compile(r"\d+ événements signés"), "lot signé"),
    (re.compile(r"accusé de réception : \d+ événements reçus"), "accusé de réception"),
    (re.compile(r"(compte rendu (?:tardif )?rapproché \(\w+\)) : \d+ acceptés, \d+ rejetés"), r"\1"),
    (re.compile(r"\d+ (événements du lot \S+ mis en quarantaine, scellés à nouveau)"), r"\1"),
)


def without_totals(cause: str) -> str:
    """``cause`` without the whole envelope's figures, if it has any."""
    for pattern, wording in _ENVELOPE_TOTALS:
        if pattern.fullmatch(cause):
            return pattern.sub(wording, cause)
    return cause


def envelope_history(conn: Connection, envelope_id: str, *, whole: bool = True) -> list[EnvelopeStep]:
    """An envelope's states, oldest first. ``whole=False`` for a caller scoped to some missions locales: an
    envelope holds other missions locales' events too, and the figures the history gave ("585 événements
    signés", "560 acceptés, 25 rejetés") told what the envelope's summary keeps for admin."""
    rows = conn.execute(sa.select(envelope_history_t.c.state, envelope_history_t.c.at, envelope_history_t.c.cause)
                        .where(envelope_history_t.c.envelope_id == envelope_id).order_by(envelope_history_t.c.id))
    return [EnvelopeStep(state, at, cause if whole else without_totals(cause)) for state, at, cause in rows]
