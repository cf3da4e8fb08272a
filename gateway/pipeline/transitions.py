"""Moving many events from one state to the next, with their history, in set-based statements.

A night moves ~20,000 events through four or five states. Doing it row by row through the ORM
would cost seconds; here each move of one envelope's events is one ``UPDATE … WHERE envelope_id``
plus one ``INSERT … SELECT`` into the history, whatever the number of events.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.codes import EventState
from gateway.store.models import envelope_history_t, envelopes_t, events_t, history_t


def move_envelope_events(conn: Connection, envelope_id: str, *, from_states: Iterable[EventState],
                         to: EventState, now: datetime, cause: str, run_id: int | None = None,
                         code: str | None = None, message: str | None = None,
                         except_ids: Collection[int] = ()) -> int:
    """Move every event of ``envelope_id`` that is in ``from_states`` (and not in ``except_ids``) to
    ``to``; returns the count. A report uses ``except_ids`` to accept all but its rejected events in
    one statement."""
    from_values = [s.value for s in from_states]
    where = sa.and_(events_t.c.envelope_id == envelope_id, events_t.c.state.in_(from_values))
    if except_ids:
        where = sa.and_(where, events_t.c.id.not_in(list(except_ids)))
    # History first, while the WHERE still selects the rows about to move.
    conn.execute(history_t.insert().from_select(
        ["event_id", "state", "at", "cause", "code", "envelope_id", "run_id", "actor"],
        sa.select(events_t.c.id, sa.literal(to.value), sa.literal(now, type_=history_t.c.at.type),
                  sa.literal(cause[:255]), sa.literal(code, type_=sa.String), sa.literal(envelope_id),
                  sa.literal(run_id, type_=sa.Integer), sa.literal(None, type_=sa.String)).where(where),
    ))
    values = {"state": to.value, "updated_at": now}
    if code is not None or to in (EventState.ACCEPTE, EventState.TRANSMIS):
        values.update(reject_code=code, reject_message=message)
    return conn.execute(events_t.update().where(where).values(**values)).rowcount


def set_event_states(conn: Connection, changes: Sequence[dict], *, now: datetime, envelope_id: str | None,
                     run_id: int | None, cause: str, allowed_from: Iterable[EventState]) -> int:
    """Per-event moves (a report: each event its own outcome). ``changes``: dicts with ``id``,
    ``state``, ``code``, ``message``. Only events currently in ``allowed_from`` move."""
    if not changes:
        return 0
    allowed = {s.value for s in allowed_from}
    ids = [c["id"] for c in changes]
    current = {}
    for start in range(0, len(ids), 900):
        current.update(conn.execute(sa.select(events_t.c.id, events_t.c.state)
                                    .where(events_t.c.id.in_(ids[start:start + 900]))).all())
    todo = [c for c in changes if current.get(c["id"]) in allowed]
    if not todo:
        return 0
    conn.execute(
        events_t.update().where(events_t.c.id == sa.bindparam("b_id"))
        .values(state=sa.bindparam("b_state"), reject_code=sa.bindparam("b_code"),
                reject_message=sa.bindparam("b_message"), updated_at=now),
        [{"b_id": c["id"], "b_state": c["state"], "b_code": c.get("code"), "b_message": c.get("message")}
         for c in todo],
    )
    conn.execute(history_t.insert(), [
        # A reject's own message goes into its history row: once the event is resent and its
        # reject_message cleared, the history still says what DUDE answered.
        {"event_id": c["id"], "state": c["state"], "at": now,
         "cause": (f"{cause} : {c['message']}" if c.get("message") else cause)[:255], "code": c.get("code"),
         "envelope_id": envelope_id, "run_id": run_id, "actor": None} for c in todo])
    return len(todo)


def set_envelope_state(conn: Connection, envelope_id: str, state: str, *, now: datetime, cause: str,
                       from_states: Iterable[str] | None = None, **values) -> bool:
    """Move an envelope to ``state`` (only from ``from_states`` when given) and record why.

    The guard is evaluated by the UPDATE itself, under the database's lock, so two writers racing
    on one envelope (a receipt and a pushed report, two instances) cannot both move it. Returns
    whether it moved.
    """
    where = envelopes_t.c.id == envelope_id
    if from_states is not None:
        where = sa.and_(where, envelopes_t.c.state.in_(list(from_states)))
    if not conn.execute(envelopes_t.update().where(where).values(state=state, **values)).rowcount:
        return False
    conn.execute(envelope_history_t.insert().values(envelope_id=envelope_id, state=state, at=now,
                                                    cause=cause[:255]))
    return True
