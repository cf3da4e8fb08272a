"""A poison envelope or event never blocks the others (brief §5: "retries are bounded with backoff, a poison
event or envelope never blocks the others").

The danger: an envelope DUDE cannot digest — one event in it makes DUDE fail — is answered HTTP 500 at every
attempt, stays unanswered, and is sent again by every run for ever, its 4,999 good events with it.

What is counted. A *sending round* (one `gateway.pipeline.dispatch.transmit`: ``send_attempts`` posts with
back-off) that ends without a receipt leaves an ``ENVOYE`` row in the envelope's history saying why. It is a
*strike* against the envelope only when **every** attempt of the round was answered HTTP 500: DUDE was there
and this request broke it. Time-outs, cut connections, 502/503/504 ("unavailable, come back later") and
untrustworthy receipts say nothing about the envelope — DUDE down for a day must not dismantle the night —
and never count.

What is done, after ``poison_after_failed_runs`` strikes (a persistent failure, not a bad minute):

* the envelope goes to ``QUARANTAINE`` (it is never posted again) and its events are split by halves into
  two new envelopes, signed and stored in the same transaction as the quarantine (the outbox rule holds:
  they are ``SIGNE`` before anything is posted), each remembering its parent (the note of its ``LOT``
  document: ``isolement du lot <IdLot>``); every version of one event key stays in the same half, so DUDE
  still never gets an ``M`` before its ``C``;
* a half already born of an isolation needs **one** strike to be split again: the search for the poison is
  a bisection, done within the same sending loop (`gateway.pipeline.sending.send_waiting` claims the new
  halves as they appear), about log2(N) rounds for an envelope of N events;
* an envelope left with a single event key that still strikes is the poison itself: the envelope stays in
  ``QUARANTAINE`` and its event(s) become ``SANS_REPONSE`` with a message saying so, for support staff to
  fix and resend or close (brief §5); the good events went through in the other halves.

Why re-sealing is safe: a half carries the same events (same ``id``, ``version`` and content) under a new
``IdLot``; if DUDE did process the parent after all, it answers each of them as an accepted duplicate and
applies nothing twice (brief §4). A late report of the quarantined parent is refused whole (its events
travel in the halves now, whose reports decide).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from adapters.dude import schema
from adapters.dude.envelope import OutgoingEvent, build_envelope
from adapters.dude.signing import serialize
from gateway.codes import AWAITING_RECEIPT, EnvelopeState, EventState
from gateway.context import Gateway
from gateway.errors import GatewayError
from gateway.pipeline.transitions import set_envelope_state, set_event_states
from gateway.store.models import DOC_LOT, documents_t, envelope_history_t, envelopes_t, events_t, history_t

log = logging.getLogger("gateway.quarantine")

#: The cause of a strike in the envelope's history (what `strikes` counts): keep it stable.
STRIKE = "HTTP 500 à chaque tentative"
#: The note of the ``LOT`` document of an envelope born of an isolation, followed by its parent's IdLot.
ISOLATION_NOTE = "isolement du lot "
POISON_MESSAGE = ("Événement isolé : le DUDE répond HTTP 500 (erreur interne) à chaque envoi de cet événement "
                  "seul. Vérifier ses champs dans Parcours 3 et le renvoyer, ou le clore ; prévenir l'intégrateur.")

_QUARANTAINE = EnvelopeState.QUARANTAINE.value
_CHUNK = 900


def after_failed_round(gw: Gateway, envelope_id: str, statuses: Sequence[int | None], *,
                       run_id: int | None, refused: bool = False) -> str:
    """Record a sending round that ended without a receipt (``statuses``: the HTTP status of each failed
    attempt, None when there was none; ``refused``: it ended on DUDE refusing the gateway itself, 401/403);
    isolate the envelope when it has struck out. Returns the envelope's state afterwards: ``ENVOYE`` (sent
    again later, same IdLot) or ``QUARANTAINE``."""
    strike = bool(statuses) and all(status == 500 for status in statuses)
    now = gw.clock()
    cause = (f"{STRIKE} ({len(statuses)}) : le DUDE ne parvient pas à traiter ce lot" if strike
             else f"le DUDE refuse l'accès à la passerelle (HTTP {statuses[-1]}) : renvoyé plus tard, même IdLot"
             if refused
             else f"sans accusé de réception après {len(statuses)} tentative(s) : renvoyé plus tard, même IdLot")
    with gw.engine.begin() as conn:
        conn.execute(envelope_history_t.insert().values(envelope_id=envelope_id, state=EnvelopeState.ENVOYE.value,
                                                        at=now, cause=cause[:255]))
        if not strike:
            return EnvelopeState.ENVOYE.value
        count, threshold = strikes(conn, envelope_id), _threshold(gw, conn, envelope_id)
    if count < threshold:
        log.warning("envelope %s: DUDE answered HTTP 500 to every attempt (strike %d of %d before quarantine)",
                    envelope_id, count, threshold)
        return EnvelopeState.ENVOYE.value
    try:
        return isolate(gw, envelope_id, run_id=run_id, reason=f"{count} tour(s) d'envoi en échec ({STRIKE})")
    except GatewayError as exc:  # e.g. the schema changed since it was sealed: leave it as it is, say so
        log.error("envelope %s: could not be isolated (%s); sent again as it is", envelope_id, exc)
        return EnvelopeState.ENVOYE.value


def strikes(conn: Connection, envelope_id: str) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(envelope_history_t).where(
        envelope_history_t.c.envelope_id == envelope_id,
        envelope_history_t.c.cause.like(f"{STRIKE}%"))).scalar_one()


def parent_of(conn: Connection, envelope_id: str) -> str | None:
    """The quarantined envelope this one was split from, if any."""
    note = conn.execute(sa.select(documents_t.c.note).where(
        documents_t.c.envelope_id == envelope_id, documents_t.c.kind == DOC_LOT,
        documents_t.c.note.like(f"{ISOLATION_NOTE}%"))).scalar()
    return note[len(ISOLATION_NOTE):] if note else None


def _threshold(gw: Gateway, conn: Connection, envelope_id: str) -> int:
    return 1 if parent_of(conn, envelope_id) else gw.settings.poison_after_failed_runs


def isolate(gw: Gateway, envelope_id: str, *, run_id: int | None, reason: str) -> str:
    """Quarantine an unanswered envelope: split its events into two new signed envelopes, or, when one event
    key is left, set its events ``SANS_REPONSE`` (the poison, found). One transaction; returns the state."""
    now = gw.clock()
    with gw.engine.begin() as conn:
        rows = conn.execute(
            sa.select(events_t.c.id, events_t.c.key, events_t.c.version, events_t.c.operation, events_t.c.payload)
            .where(events_t.c.envelope_id == envelope_id, events_t.c.state == EventState.ENVOYE.value)
            .order_by(events_t.c.id)).all()
        halves = _halves(rows)
        ids = [str(uuid.uuid4()) for _ in halves]
        cause = (f"quarantaine ({reason}) : événements répartis dans les lots "
                 + ", ".join(f"{i} ({len(h)})" for i, h in zip(ids, halves, strict=True)) if len(halves) > 1
                 else f"quarantaine ({reason}) : événement isolé, le DUDE le refuse seul")
        if not set_envelope_state(conn, envelope_id, _QUARANTAINE, now=now, cause=cause, from_states=AWAITING_RECEIPT,
                                  claimed_by=None, claimed_until=None):
            return conn.execute(sa.select(envelopes_t.c.state).where(envelopes_t.c.id == envelope_id)).scalar_one()
        if len(halves) > 1:
            for new_id, half in zip(ids, halves, strict=True):
                _reseal(conn, gw, half, new_id=new_id, parent=envelope_id, run_id=run_id, now=now)
        else:
            set_event_states(conn, [{"id": r.id, "state": EventState.SANS_REPONSE.value, "code": None,
                                     "message": POISON_MESSAGE} for r in rows],
                             now=now, envelope_id=envelope_id, run_id=run_id, allowed_from=[EventState.ENVOYE],
                             cause=f"isolé : le DUDE refuse le lot {envelope_id} qui ne contient que lui")
    if len(halves) > 1:
        log.warning("QUARANTINE envelope %s (%s): its %d events re-sealed in %s", envelope_id, reason, len(rows),
                    ", ".join(f"{i} ({len(h)} events)" for i, h in zip(ids, halves, strict=True)))
    else:
        log.error("POISON event %s isolated in envelope %s: DUDE answers HTTP 500 to it alone; SANS_REPONSE, "
                  "for support staff", ", ".join(sorted({f'{r.key} v{r.version}' for r in rows})), envelope_id)
    return _QUARANTAINE


def _halves(rows: Sequence[sa.Row]) -> list[list[sa.Row]]:
    """Two halves of about the same number of events, every version of one key in the same half; one part
    when a single key is left (or nothing)."""
    groups: dict[str, list[sa.Row]] = {}
    for row in rows:
        groups.setdefault(row.key, []).append(row)
    if len(groups) < 2:
        return [list(rows)] if rows else []
    first: list[sa.Row] = []
    ordered = list(groups.values())
    while ordered and (not first or len(first) + len(ordered[0]) <= len(rows) / 2) and len(ordered) > 1:
        first += ordered.pop(0)
    return [first, [row for group in ordered for row in group]]


def _reseal(conn: Connection, gw: Gateway, rows: Sequence[sa.Row], *, new_id: str, parent: str,
            run_id: int | None, now: datetime) -> None:
    """Seal ``rows`` (events of ``parent``, ``ENVOYE``) in a new signed envelope ``new_id`` and move them to it.

    The same steps as `gateway.pipeline.dispatch.seal_next` (XML, XSD, signature, stored before it is
    posted), on events that passed them once already: nothing is invalidated here."""
    s = gw.settings
    items = [OutgoingEvent(json.loads(r.payload), r.version, r.operation) for r in rows]
    root = build_envelope(items, id_lot=new_id, sender=s.sender_code, recipient=s.recipient_code,
                          produced_at=now.astimezone(ZoneInfo(s.timezone)))
    schema.validate(root)
    body = serialize(gw.signer.sign_in_place(root))
    del root
    conn.execute(envelopes_t.insert().values(id=new_id, run_id=run_id, state=EnvelopeState.SIGNE.value,
                                             event_count=len(rows), byte_size=len(body), created_at=now,
                                             attempts=0, polls=0))
    conn.execute(documents_t.insert().values(envelope_id=new_id, kind=DOC_LOT, at=now,
                                             sha256=hashlib.sha256(body).hexdigest(), body=body,
                                             note=f"{ISOLATION_NOTE}{parent}"))
    ids = [r.id for r in rows]
    for start in range(0, len(ids), _CHUNK):
        part = ids[start:start + _CHUNK]
        conn.execute(events_t.update().where(events_t.c.id.in_(part), events_t.c.envelope_id == parent,
                                             events_t.c.state == EventState.ENVOYE.value)
                     .values(envelope_id=new_id, updated_at=now))
    conn.execute(history_t.insert(), [
        {"event_id": i, "state": EventState.ENVOYE.value, "at": now, "code": None, "envelope_id": new_id,
         "run_id": run_id, "actor": None, "cause": f"remis dans le lot {new_id} (isolement du lot {parent})"[:255]}
        for i in ids])
    set_envelope_state(conn, new_id, EnvelopeState.SIGNE.value, now=now,
                       cause=f"{len(rows)} événements du lot {parent} mis en quarantaine, scellés à nouveau")
