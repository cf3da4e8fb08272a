"""What the console reads from the store, always within the user's scope (issue 4).

The filters are `gateway.store.queries.EventFilter`'s (the API's), the runs and envelopes visible to a
scope are `gateway.store.queries`' own rules; what is here is only what the console adds: the newest-first
keyset page of the rejects list, the export's order, and the dashboard's aggregates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.codes import ACTIONABLE_EVENT_STATES, AWAITING_RECEIPT, EnvelopeState, EventState
from gateway.console.chart import NightCounts
from gateway.console.runnotes import run_notes
from gateway.store.models import envelopes_t, events_t, history_t
from gateway.store.queries import EventFilter, list_runs, run_counts, unacknowledged

ACTIONABLE = tuple(sorted(s.value for s in ACTIONABLE_EVENT_STATES))
#: Envelopes whose report is still to come, or never came.
WITHOUT_REPORT = (EnvelopeState.SIGNE.value, EnvelopeState.ENVOYE.value, EnvelopeState.RECU.value,
                  EnvelopeState.SANS_REPONSE.value)
_REJECTED = (EventState.REJETE.value, EventState.INVALIDE.value)


# --- the rejects list ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[sa.Row]
    newer: int | None  # ``avant=`` for the previous (newer) page, if any
    older: int | None  # ``apres=`` for the next (older) page, if any


def rejects_page(conn: Connection, flt: EventFilter, *, limit: int, after: int | None = None,
                 before: int | None = None) -> Page:
    """Newest first (by id), ``limit`` at a time: ``after`` an id goes to older events, ``before`` to newer ones.

    Keyset on the primary key, so a page stays right while a night adds events (they come first and
    never shift the pages already read).
    """
    c = events_t.c
    query = sa.select(events_t).where(*flt.where())
    if before is not None:
        rows = conn.execute(query.where(c.id > before).order_by(c.id).limit(limit + 1)).all()
        more_newer = len(rows) > limit
        rows = list(reversed(rows[:limit]))
        older = rows[-1].id if rows else None
        return Page(rows, rows[0].id if more_newer and rows else None, older)
    if after is not None:
        query = query.where(c.id < after)
    rows = conn.execute(query.order_by(c.id.desc()).limit(limit + 1)).all()
    more_older = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[0].id if after is not None and rows else None,
                rows[-1].id if more_older and rows else None)


def newer_than(conn: Connection, flt: EventFilter, event_id: int) -> int:
    """How many events of the filter come before ``event_id`` in the list (newer, by id): where a keyset page
    starts, for its "51–100 sur 242", which the keyset itself does not know."""
    c = events_t.c
    return conn.execute(sa.select(sa.func.count()).select_from(events_t)
                        .where(*flt.where(), c.id > event_id)).scalar_one()


def export_rows(conn: Connection, flt: EventFilter) -> Iterator[sa.Row]:
    """Every event of the filter, by mission locale, then reject code, then file order: a counsellor's
    work list. Streamed in chunks, so a large export never sits whole in memory."""
    c = events_t.c
    query = sa.select(events_t).where(*flt.where()).order_by(c.code_ml, c.reject_code, c.source_file,
                                                             c.source_line, c.id)
    yield from conn.execution_options(yield_per=500).execute(query)


def ml_choices(conn: Connection, scope: frozenset[str] | None) -> list[str]:
    if scope is not None:
        return sorted(scope)
    return list(conn.execute(sa.select(events_t.c.code_ml).where(events_t.c.code_ml.is_not(None))
                             .distinct().order_by(events_t.c.code_ml)).scalars())


# --- the dashboard ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunLine:
    run: sa.Row
    states: dict[str, int]
    envelopes: dict[str, int]
    #: What its figures cannot say, in French (a catch-up's reports, a refused export…: `gateway.console.runnotes`).
    notes: tuple[str, ...] = ()

    @property
    def read(self) -> int:
        return sum(self.states.values())

    def count(self, state: str) -> int:
        return self.states.get(state, 0)

    @property
    def handled(self) -> int:
        """Closed by support, or replaced by a newer version."""
        return self.count(EventState.CLOS.value) + self.count(EventState.CORRIGE.value)

    @property
    def in_progress(self) -> int:
        """On their way: waiting to be sent (a resend, say), sent, or acknowledged and waiting for the report."""
        settled = {EventState.ACCEPTE.value, EventState.REJETE.value, EventState.INVALIDE.value,
                   EventState.SANS_REPONSE.value, EventState.CLOS.value, EventState.CORRIGE.value}
        return sum(n for s, n in self.states.items() if s not in settled)

    @property
    def envelope_total(self) -> int:
        return sum(self.envelopes.values())

    @property
    def without_report(self) -> int:
        return sum(self.envelopes.get(s, 0) for s in WITHOUT_REPORT)

    @property
    def envelopes_rejected(self) -> int:
        return self.envelopes.get(EnvelopeState.REJETE.value, 0)

    @property
    def caught_up(self) -> bool:
        """A run that ended with envelopes DUDE had not acknowledged (``TERMINE_SANS_ACCUSE``: DUDE was down),
        none of which waits any more: the scheduler or a later run got them through. Its outcome is what it
        was at its end; said alone, beside counts that are all settled, it read as a night still owed. The API
        says the same with the count it gives (`gateway.store.queries.unacknowledged`)."""
        return (self.run.outcome == "TERMINE_SANS_ACCUSE" and self.envelope_total > 0
                and unacknowledged(self.envelopes) == 0)


def last_runs(conn: Connection, scope: frozenset[str] | None, *, limit: int = 7) -> list[RunLine]:
    runs = list_runs(conn, scope, limit=limit, before_id=None)
    states, envelopes = run_counts(conn, [r.id for r in runs], scope)
    return [RunLine(r, states[r.id], envelopes[r.id], run_notes(r.counts, scope)) for r in runs]


def _scope(scope: frozenset[str] | None) -> list[sa.ColumnElement]:
    return [] if scope is None else [events_t.c.code_ml.in_(sorted(scope))]


@dataclass(frozen=True, slots=True)
class CodeCount:
    code: str | None  # None: SANS_REPONSE (no code)
    state: str
    count: int


def open_rejects(conn: Connection, scope: frozenset[str] | None) -> list[CodeCount]:
    """Events waiting for someone (``INVALIDE``, ``REJETE``, ``SANS_REPONSE``), by code and state, most first."""
    c = events_t.c
    rows = conn.execute(sa.select(c.reject_code, c.state, sa.func.count())
                        .where(c.state.in_(ACTIONABLE), *_scope(scope))
                        .group_by(c.reject_code, c.state)).all()
    return sorted((CodeCount(code, state, n) for code, state, n in rows), key=lambda x: (-x.count, x.code or ""))


def rejects_per_night(conn: Connection, scope: frozenset[str] | None, *, today: date, tz: ZoneInfo,
                      nights: int = 30) -> list[NightCounts]:
    """Rejects recorded each night (day in ``tz``) over the last ``nights``, from the history: a reject
    stays counted on its night after the event is resent or closed, and a reject after a resend counts again.
    Only the gateway's own (``actor`` empty): a person's resend of an invalid event that fails pre-flight again
    writes an INVALIDE row too, and each press of "Renvoyer" was counted as one more reject of the day.

    History rows of a night share a handful of timestamps (each set-based move writes one), so grouping
    by timestamp first makes the database return a few rows, bucketed by day here in any dialect.
    """
    first = today - timedelta(days=nights - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=tz)
    h, e = history_t.c, events_t.c
    query = (sa.select(h.at, h.state, h.code, sa.func.count())
             .select_from(history_t.join(events_t, e.id == h.event_id))
             .where(h.state.in_(_REJECTED), h.at >= since, h.actor.is_(None), *_scope(scope))
             .group_by(h.at, h.state, h.code))
    buckets: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for at, state, code, count in conn.execute(query):
        day = at.astimezone(tz).date()
        if state == EventState.INVALIDE.value:
            series = "preflight"
        else:
            series = "envelope" if (code or "").startswith("L") else "business"
        buckets[day][series] += count
    days = [first + timedelta(days=i) for i in range(nights)]
    return [NightCounts(d, **buckets.get(d, {})) for d in days]


def envelopes_undelivered(conn: Connection, scope: frozenset[str] | None) -> tuple[int, datetime | None]:
    """Envelopes holding one of the scope's events that the gateway could not hand to DUDE yet: still
    ``SIGNE`` or ``ENVOYE`` after a failed post (``last_error``), or held until DUDE's outage ends
    (``next_attempt_at``); and the soonest next attempt. A night's envelopes in flight have neither."""
    env = envelopes_t.c
    query = sa.select(sa.func.count(), sa.func.min(env.next_attempt_at)).where(
        env.state.in_(AWAITING_RECEIPT), sa.or_(env.last_error.is_not(None), env.next_attempt_at.is_not(None)))
    if scope is not None:
        query = query.where(sa.exists().where(events_t.c.envelope_id == env.id, *_scope(scope)))
    count, soonest = conn.execute(query).one()
    return count, soonest


def envelopes_unsent(conn: Connection, scope: frozenset[str] | None) -> int:
    """Envelopes holding one of the scope's events that were sealed and never posted, nothing having failed:
    a night's in flight, or those sealed while sending was paused, which wait for the next run or round after
    the resume. They were counted as waiting for DUDE's report, which DUDE could not owe."""
    env = envelopes_t.c
    query = sa.select(sa.func.count()).where(env.state == EnvelopeState.SIGNE.value, env.last_error.is_(None),
                                              env.next_attempt_at.is_(None))
    if scope is not None:
        query = query.where(sa.exists().where(events_t.c.envelope_id == env.id, *_scope(scope)))
    return conn.execute(query).scalar_one()


def envelopes_waiting(conn: Connection, scope: frozenset[str] | None) -> dict[str, int]:
    """Envelopes holding one of the scope's events and still without report, by state."""
    env = envelopes_t.c
    query = sa.select(env.state, sa.func.count()).where(env.state.in_(WITHOUT_REPORT))
    if scope is not None:
        query = query.where(sa.exists().where(events_t.c.envelope_id == env.id, *_scope(scope)))
    return dict(conn.execute(query.group_by(env.state)).all())
