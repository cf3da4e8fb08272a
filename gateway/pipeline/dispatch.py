"""Stage 2: pending events → signed envelopes → DUDE → receipts (brief §4, §5).

The outbox rule: an envelope is built, validated, signed and **written with its events before it
is sent**, in one transaction (envelope ``SIGNE``, events ``ENVOYE``). Then each attempt is counted
(``ENVOYE``) before the POST. Whatever crashes, the store says what to do next:

* events still ``EN_ATTENTE`` were in no envelope: they go in a new one;
* an envelope ``SIGNE`` or ``ENVOYE`` without a receipt is sent again, byte for byte, with the same
  ``IdLot``: DUDE answers a second post of an ``IdLot`` with the first receipt and processes nothing
  twice (brief §4), so a resend can never duplicate an event.

A receipt is trusted only once its signature checks against the trust store and it names the
envelope that was sent; anything else counts as a failed attempt, and the envelope is sent again.
"""

from __future__ import annotations

import hashlib
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import sqlalchemy as sa
from lxml import etree
from sqlalchemy.engine import Connection

from adapters.dude import schema
from adapters.dude.envelope import OutgoingEvent, build_envelope
from adapters.dude.events_xml import append_event
from adapters.dude.messages import Receipt, open_signed, parse_receipt
from adapters.dude.signing import serialize
from gateway.codes import AWAITING_RECEIPT, EnvelopeState, EventState, RejectCode
from gateway.context import Gateway
from gateway.errors import (
    AccessRefused, DocumentRejected, EnvelopeRefused, GatewayError, SchemaViolation, SendingPaused, TransportError,
    UnexpectedDocument,
)
from gateway.pipeline import pause, quarantine
from gateway.pipeline.outage import Outage, unavailable
from gateway.pipeline.reading import Prepared
from gateway.pipeline.transitions import move_envelope_events, set_envelope_state, set_event_states
from gateway.store.models import DOC_LOT, DOC_RECEIPT, documents_t, envelopes_t, events_t, history_t

log = logging.getLogger("gateway.dispatch")



@dataclass(frozen=True, slots=True)
class SendResult:
    envelope_id: str
    state: str  # RECU, REJETE, ENVOYE (still unanswered after this run's attempts), QUARANTAINE, or SIGNE
    attempts: int
    error: str | None = None
    #: Not (or no longer) posted because an operator paused sending (`gateway.pipeline.pause`).
    paused: bool = False
    #: Not posted because DUDE was found unreachable earlier in the pass (`gateway.pipeline.outage`).
    deferred: bool = False
    #: Posted, and DUDE refused the gateway itself (HTTP 401/403, `AccessRefused`): no attempt more this round.
    access_refused: bool = False


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _claim_pending(conn: Connection, limit: int) -> list[sa.Row]:
    query = (sa.select(events_t.c.id, events_t.c.version, events_t.c.operation, events_t.c.payload)
             .where(events_t.c.state == EventState.EN_ATTENTE.value).order_by(events_t.c.id).limit(limit))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return conn.execute(query).all()


@dataclass(frozen=True, slots=True)
class SealedEnvelope:
    """An envelope just sealed: its ``IdLot`` and the keys of its events (a run uses them to keep two
    envelopes carrying versions of the same event in order on the wire)."""

    envelope_id: str
    keys: frozenset[str]
    event_count: int
    byte_size: int


def seal_next_envelope(gw: Gateway, *, run_id: int | None) -> str | None:
    """Put up to N pending events in a new signed envelope and store it; ``None`` when none is pending.

    Events that fail the XSD (which pre-flight should have prevented) become ``INVALIDE`` with
    ``E09`` and the path of the error, and the envelope is built without them.
    """
    sealed = seal_next(gw, run_id=run_id)
    return sealed if sealed is None or sealed == _ALL_INVALID else sealed.envelope_id


def seal_next(gw: Gateway, *, run_id: int | None, claimed_by: str | None = None,
              records: dict[str, Prepared] | None = None) -> SealedEnvelope | str | None:
    """`seal_next_envelope`, returning what a run needs to pipeline the envelope (`SealedEnvelope`).

    ``claimed_by``: the envelope is stored already claimed by that worker (`gateway.pipeline.sending`), so
    that no other worker takes it between its sealing and its sending.

    ``records``: lines this run has just stored, by payload (`ingest.ingest`); a payload found there is
    taken out with its XML as the reader wrote it, the others' XML is written here.

    ``None`` when nothing is pending; ``_ALL_INVALID`` (``""``) when every claimed event failed the XSD.
    Where the time goes (20,000 events, 4 envelopes): building the XML, the XSD check and the signature
    are the libraries' floor; around them, one ``SELECT`` of the payloads, ``orjson.loads`` of each, and
    one transaction writing the envelope, its document and the events' move to ``ENVOYE`` with their
    history (set-based).
    """
    settings = gw.settings
    with gw.engine.begin() as conn:
        rows = _claim_pending(conn, settings.envelope_max_events)
        if not rows:
            return None
        now = gw.clock()
        envelope_id = str(uuid.uuid4())
        loads, known = orjson.loads, (records if records is not None else {})
        items = {}
        for event_id, version, operation, payload in rows:
            items[event_id] = OutgoingEvent(loads(payload), version, operation,
                                            _reader_xml(known.pop(payload, None), operation))
        produced_at = now.astimezone(ZoneInfo(settings.timezone))
        while True:
            try:
                root = build_envelope(items.values(), id_lot=envelope_id, sender=settings.sender_code,
                                      recipient=settings.recipient_code, produced_at=produced_at)
            except ValueError:  # a character XML cannot carry: find the events that hold one
                if not _invalidate_unwritable(conn, items, now=now, run_id=run_id):
                    raise
                if not items:
                    return _ALL_INVALID
                continue
            try:
                schema.validate(root)
                break
            except SchemaViolation as exc:
                bad = _invalidate_schema_failures(conn, items, exc, now=now, run_id=run_id)
                if not bad:
                    raise
                if not items:
                    return _ALL_INVALID
        body = serialize(gw.signer.sign_in_place(root))
        del root  # the envelope's tree (~20 MB for 5,000 events): the bytes are all we keep
        keys = frozenset(f"{o.record['code_ml']}-{o.record['id_evenement']}" for o in items.values())
        return _store_sealed(conn, gw, envelope_id, list(items), keys, body, now=now, run_id=run_id,
                             claimed_by=claimed_by)


def _reader_xml(line: Prepared | None, operation: str) -> str | None:
    """The XML the reader wrote for a stored line (`Prepared.xml_body`), if it fits the operation going on
    the wire: it was written for the operation read, and a cancellation must stay one (a ``C`` read may
    go out as ``M``: same body). None when there is no such line: sealing writes the XML itself."""
    if line is None or (line.operation == "A") != (operation == "A"):
        return None
    return line.xml_body


def _store_sealed(conn: Connection, gw: Gateway, envelope_id: str, ids: list[int], keys: frozenset[str],
                  body: bytes, *, now: datetime, run_id: int | None, claimed_by: str | None) -> SealedEnvelope:
    """Write a signed envelope, its document and its events' move to ``ENVOYE`` (with their history), in
    ``conn``'s transaction; `_Contended` if another worker sealed some of those events meanwhile."""
    settings = gw.settings
    conn.execute(envelopes_t.insert().values(
        id=envelope_id, run_id=run_id, state=EnvelopeState.SIGNE.value, event_count=len(ids),
        byte_size=len(body), created_at=now, attempts=0, polls=0, claimed_by=claimed_by,
        claimed_until=now + timedelta(seconds=settings.send_claim_seconds) if claimed_by else None))
    conn.execute(documents_t.insert().values(envelope_id=envelope_id, kind=DOC_LOT, at=now,
                                             sha256=_sha256(body), body=body))
    updated = 0
    for start in range(0, len(ids), 900):
        part = ids[start:start + 900]
        updated += conn.execute(
            events_t.update().where(events_t.c.id.in_(part), events_t.c.state == EventState.EN_ATTENTE.value)
            .values(state=EventState.ENVOYE.value, envelope_id=envelope_id, updated_at=now)).rowcount
    if updated != len(ids):  # another worker took some of them: start again from what is left
        raise _Contended()
    conn.execute(history_t.insert().from_select(
        ["event_id", "state", "at", "cause", "code", "envelope_id", "run_id", "actor"],
        sa.select(events_t.c.id, sa.literal(EventState.ENVOYE.value),
                  sa.literal(now, type_=history_t.c.at.type), sa.literal(f"mis dans le lot {envelope_id}"),
                  sa.literal(None, type_=sa.String), sa.literal(envelope_id),
                  sa.literal(run_id, type_=sa.Integer), sa.literal(None, type_=sa.String))
        .where(events_t.c.envelope_id == envelope_id)))
    if run_id is not None:  # a resent event, or one a partner submitted, is counted in the night that sends it
        conn.execute(events_t.update().where(
            events_t.c.envelope_id == envelope_id, sa.or_(events_t.c.run_id.is_(None), events_t.c.run_id != run_id))
            .values(run_id=run_id))
    set_envelope_state(conn, envelope_id, EnvelopeState.SIGNE.value, now=now,
                       cause=f"{len(ids)} événements signés")
    log.info("envelope %s sealed: %d events, %d bytes", envelope_id, len(ids), len(body))
    return SealedEnvelope(envelope_id, keys, len(ids), len(body))


@dataclass(frozen=True, slots=True)
class Claim:
    """The first pending events, read (not moved) for an envelope sealed out of the run's thread
    (`gateway.pipeline.sealing`), then stored by `store_claim`. Each item is ``(key, version, operation,
    xml_body, payload)``: the XML after the start tag as the reader wrote it, or else (None) the stored
    payload to write it from."""

    envelope_id: str
    produced_at: datetime
    ids: list[int]
    keys: frozenset[str]
    items: list[tuple[str, int, str, str | None, str | None]]


def claim_pending(gw: Gateway, *, records: dict[str, Prepared] | None = None) -> Claim | None:
    """Read the next envelope's worth of pending events (at most ``envelope_max_events``, oldest first),
    taking their lines out of ``records`` (see `seal_next`); None when none is pending.

    Nothing is written: the events stay ``EN_ATTENTE`` until `store_claim` moves them, under the guard
    that they still are (optimistic: another instance sealing some of them meanwhile makes it fail)."""
    settings = gw.settings
    with gw.engine.connect() as conn:
        rows = conn.execute(sa.select(events_t.c.id, events_t.c.key, events_t.c.version, events_t.c.operation,
                                      events_t.c.payload)
                            .where(events_t.c.state == EventState.EN_ATTENTE.value)
                            .order_by(events_t.c.id).limit(settings.envelope_max_events)).all()
    if not rows:
        return None
    known = records if records is not None else {}
    ids, items = [], []
    for event_id, key, version, operation, payload in rows:
        body = _reader_xml(known.pop(payload, None), operation)
        ids.append(event_id)
        items.append((key, version, operation, body, None if body is not None else payload))
    now = gw.clock()
    return Claim(str(uuid.uuid4()), now.astimezone(ZoneInfo(settings.timezone)), ids,
                 frozenset(item[0] for item in items), items)


def store_claim(gw: Gateway, claim: Claim, body: bytes, *, run_id: int | None,
                claimed_by: str | None = None) -> SealedEnvelope | None:
    """Store the envelope sealed from ``claim`` (`_store_sealed`); None, and nothing written, if another
    worker sealed some of its events since they were read (they are sealed again from what is left)."""
    try:
        with gw.engine.begin() as conn:
            return _store_sealed(conn, gw, claim.envelope_id, claim.ids, claim.keys, body, now=gw.clock(),
                                 run_id=run_id, claimed_by=claimed_by)
    except _Contended:
        log.info("envelope %s not stored: another worker sealed some of its events meanwhile", claim.envelope_id)
        return None


_ALL_INVALID = ""  # every claimed event failed the XSD: nothing sealed, but more may be pending


class _Contended(GatewayError):
    code = "CONTENDED"

    def __init__(self):
        super().__init__("pending events were claimed by another worker")


def _invalidate_unwritable(conn: Connection, items: dict[int, OutgoingEvent], *, now: datetime,
                           run_id: int | None) -> list[int]:
    """Events holding a character XML 1.0 cannot carry (pre-flight removes them from Parcours 3 text,
    but not every way in may): ``INVALIDE`` with ``E09``, so that they never block the envelope."""
    bad = []
    for event_id, item in items.items():
        try:
            append_event(etree.Element("probe"), item.record, version=item.version, operation=item.operation)
        except ValueError:
            bad.append(event_id)
    set_event_states(conn, [{"id": i, "state": EventState.INVALIDE.value, "code": RejectCode.E09.value,
                             "message": "caractère interdit en XML dans un champ"} for i in bad],
                     now=now, envelope_id=None, run_id=run_id, cause="caractère interdit en XML",
                     allowed_from=[EventState.EN_ATTENTE])
    for i in bad:
        items.pop(i)
        log.warning("event id=%d holds a character XML cannot carry", i)
    return bad


def _invalidate_schema_failures(conn: Connection, items: dict[int, OutgoingEvent], exc: SchemaViolation, *,
                                now: datetime, run_id: int | None) -> list[int]:
    by_key = {f"{o.record['code_ml']}-{o.record['id_evenement']}": i for i, o in items.items()}
    bad: dict[int, str] = {}
    for detail in exc.errors:
        if detail.event_id in by_key:
            bad.setdefault(by_key[detail.event_id], f"{detail.path} : {detail.message}"[:500])
    set_event_states(conn, [{"id": i, "state": EventState.INVALIDE.value, "code": RejectCode.E09.value,
                             "message": f"non conforme au schéma : {msg}"} for i, msg in bad.items()],
                     now=now, envelope_id=None, run_id=run_id, cause="non conforme au schéma XSD",
                     allowed_from=[EventState.EN_ATTENTE])
    for i in bad:
        items.pop(i)
    for i, msg in bad.items():
        log.warning("event id=%d invalid against the XSD: %s", i, msg)
    return list(bad)


def seal_all(gw: Gateway, *, run_id: int | None, on_sealed: Callable[[str], None] | None = None) -> list[str]:
    """Seal envelopes until nothing is pending; calls ``on_sealed`` after each (to send it at once)."""
    return [s.envelope_id for s in seal_pending(gw, run_id=run_id,
                                                on_sealed=(lambda s: on_sealed(s.envelope_id)) if on_sealed else None)]


def seal_pending(gw: Gateway, *, run_id: int | None, at_least: int = 1,
                 on_sealed: Callable[[SealedEnvelope], None] | None = None,
                 claimed_by: str | None = None, records: dict[str, Prepared] | None = None) -> list[SealedEnvelope]:
    """Seal envelopes while at least ``at_least`` events are pending (``at_least`` = N: full envelopes
    only, what a run does while it is still reading); calls ``on_sealed`` after each."""
    sealed: list[SealedEnvelope] = []
    while at_least <= 1 or pending_count(gw) >= at_least:
        envelope = seal_one(gw, run_id=run_id, claimed_by=claimed_by, records=records)
        if envelope is None:
            break
        sealed.append(envelope)
        if on_sealed:
            on_sealed(envelope)
    return sealed


def seal_one(gw: Gateway, *, run_id: int | None, claimed_by: str | None = None,
             records: dict[str, Prepared] | None = None) -> SealedEnvelope | None:
    """`seal_next` until it stores an envelope (past claims lost to another worker, and claims whose
    events all failed the XSD); None when nothing is pending."""
    while True:
        try:
            envelope = seal_next(gw, run_id=run_id, claimed_by=claimed_by, records=records)
        except _Contended:
            continue
        if envelope != _ALL_INVALID:
            return envelope


def pending_count(gw: Gateway) -> int:
    """How many events are ``EN_ATTENTE`` (in no envelope yet), all runs together."""
    with gw.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(events_t).where(
            events_t.c.state == EventState.EN_ATTENTE.value)).scalar_one()


def unanswered_envelopes(gw: Gateway) -> list[str]:
    """Envelopes written but never acknowledged (a crash, or DUDE unreachable): to be sent again."""
    with gw.engine.connect() as conn:
        return list(conn.execute(sa.select(envelopes_t.c.id).where(envelopes_t.c.state.in_(AWAITING_RECEIPT))
                                 .order_by(envelopes_t.c.created_at, envelopes_t.c.id)).scalars())


def _backoff(gw: Gateway, attempt: int) -> float:
    s = gw.settings
    base = min(s.retry_backoff_max_seconds, s.retry_backoff_seconds * (2 ** (attempt - 1)))
    return base * (0.5 + random.random() / 2)  # "equal jitter": spreads retries, keeps a floor


def send_envelope(gw: Gateway, envelope_id: str, *, run_id: int | None = None) -> SendResult:
    """Send (or send again) a sealed envelope until DUDE acknowledges it or attempts run out."""
    outcome = transmit(gw, envelope_id, run_id=run_id)
    return apply_answer(gw, outcome, run_id=run_id) if isinstance(outcome, Acknowledged) else outcome


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """DUDE's receipt for an envelope, checked (signature, XSD, ``IdLot``) but not yet applied."""

    envelope_id: str
    receipt: Receipt
    receipt_bytes: bytes
    attempts: int


def hold_waiting_until(gw: Gateway, until: datetime, *, envelope_id: str | None = None) -> None:
    """DUDE found down (`gateway.pipeline.outage`): every envelope waiting to be sent (or ``envelope_id``,
    one sealed since) is due at the outage's end at the soonest, not only those this pass had in hand, so
    that the scheduler's next ticks (which take only envelopes past ``next_attempt_at``:
    `gateway.pipeline.sending.send_waiting`) post nothing before. Before, the envelopes a pass had not
    reached kept their earlier time, so every tick found one due and claimed the oldest ones, those the
    outage held, for a whole round each: with a 15 s tick and a 60 s outage, two full rounds every tick."""
    e = envelopes_t.c
    held = envelopes_t.update().where(
        e.state.in_(AWAITING_RECEIPT), sa.or_(e.next_attempt_at.is_(None), e.next_attempt_at < until))
    if envelope_id is not None:
        held = held.where(e.id == envelope_id)
    with gw.engine.begin() as conn:
        conn.execute(held.values(next_attempt_at=until))


def transmit(gw: Gateway, envelope_id: str, *, run_id: int | None = None,
             outage: Outage | None = None) -> Acknowledged | SendResult:
    """The network half of `send_envelope`: count each attempt, post, check the receipt; retry with
    back-off. Returns the checked receipt (`Acknowledged`), for `apply_answer` to record, or the final
    `SendResult` when there is none (refused without a receipt, or attempts exhausted).

    Split so that a run's sender threads only post and check while the run's own thread writes the
    receipts (and everything else) to the store: one writer, no waiting on SQLite's write lock. Safe
    at any crash point: until the receipt is recorded the envelope stays ``ENVOYE`` and is sent again
    with the same ``IdLot``, to which DUDE answers with the same receipt.

    ``outage``, the sending pass's (`gateway.pipeline.outage`): while it is on, the envelope is not posted, or
    not again (`SendResult.deferred`); a round that finds DUDE unavailable at every attempt turns it on.
    Without one (`send_envelope`), this call's own, which only its own round could open.
    """
    outage = outage or Outage.of(gw)
    try:
        return _round(gw, envelope_id, run_id=run_id, outage=outage)
    finally:
        outage.round_over(envelope_id)  # if it was the probe, the next one may probe (or all go)


def _round(gw: Gateway, envelope_id: str, *, run_id: int | None, outage: Outage) -> Acknowledged | SendResult:
    """`transmit`'s attempts at one envelope."""
    with gw.engine.connect() as conn:
        body = conn.execute(sa.select(documents_t.c.body).where(
            documents_t.c.envelope_id == envelope_id, documents_t.c.kind == DOC_LOT)).scalar_one()
        state = conn.execute(sa.select(envelopes_t.c.state).where(envelopes_t.c.id == envelope_id)).scalar_one()
    if state not in AWAITING_RECEIPT:
        return SendResult(envelope_id, state, 0)
    error = None
    statuses: list[int | None] = []  # of the failed attempts: all 500 is a strike (gateway.pipeline.quarantine)
    unreached = 0  # failed attempts that found DUDE unavailable (gateway.pipeline.outage)
    refused = False  # DUDE refused the gateway itself (401/403): no attempt more (`Outage.refused_access`)
    attempts = gw.settings.send_attempts
    for attempt in range(1, attempts + 1):
        outage.take_turn(envelope_id)  # until DUDE has answered, one envelope's round at a time (the probe)
        if pause.is_paused(gw.engine):  # checked before every post: a pause holds from the next attempt on
            log.warning("envelope %s not sent: %s (sent with the same IdLot once resumed)", envelope_id,
                        SendingPaused.code)
            return SendResult(envelope_id, state, attempt - 1, f"[{SendingPaused.code}] envoi suspendu", paused=True)
        if (until := outage.defer(envelope_id)) is not None:  # found down by another round
            hold_waiting_until(gw, until, envelope_id=envelope_id)  # the scheduler's ticks leave it until then too
            return SendResult(envelope_id, state, attempt - 1, error or f"[{TransportError.code}] DUDE injoignable",
                              deferred=True)
        now = gw.clock()
        e = envelopes_t.c
        # Inside COALESCE and CASE a bare datetime skips `UTCDateTime`: typed as the columns, stored as UTC.
        with gw.engine.begin() as conn:
            conn.execute(envelopes_t.update().where(e.id == envelope_id).values(
                attempts=e.attempts + 1,
                first_sent_at=sa.func.coalesce(e.first_sent_at, sa.literal(now, type_=e.first_sent_at.type)),
                claimed_until=sa.case(  # our claim, if we hold one, lasts this attempt (gateway.pipeline.sending)
                    (e.claimed_by == gw.instance_id,
                     sa.literal(now + timedelta(seconds=gw.settings.send_claim_seconds), type_=e.claimed_until.type)),
                    else_=e.claimed_until)))
            if state == EnvelopeState.SIGNE.value:
                set_envelope_state(conn, envelope_id, EnvelopeState.ENVOYE.value, now=now, cause="premier envoi")
                state = EnvelopeState.ENVOYE.value
        try:
            receipt_bytes = gw.client.post_envelope(body)
            receipt_root = open_signed(receipt_bytes, trust=gw.dude_trust, expected="AccuseReception",
                                       max_bytes=gw.settings.max_document_bytes)
            receipt = parse_receipt(receipt_root.root)
            if receipt.id_lot != envelope_id:
                raise UnexpectedDocument(f"receipt for envelope {receipt.id_lot}, not {envelope_id} (replayed?)")
        except EnvelopeRefused as exc:
            outage.answered()
            _record_rejected_without_receipt(gw, envelope_id, exc, run_id=run_id)
            return SendResult(envelope_id, EnvelopeState.REJETE.value, attempt, str(exc))
        except DocumentRejected as exc:  # DUDE's receipt failed our checks: do not trust it, send again
            outage.reached()
            error = f"accusé de réception refusé : {exc}"
            statuses.append(None)
        except AccessRefused as exc:  # the gateway refused, not (we think) this envelope: posting again is vain
            error, refused = str(exc), True
            statuses.append(exc.status_code)
        except (TransportError, UnexpectedDocument) as exc:
            error = str(exc)
            statuses.append(getattr(exc, "status_code", None))
            if isinstance(exc, TransportError) and unavailable(statuses[-1]):
                unreached += 1
            else:  # a 500, a receipt for another envelope: DUDE is there
                outage.reached()
        else:
            outage.answered()
            return Acknowledged(envelope_id, receipt, receipt_bytes, attempt)
        log.warning("envelope %s attempt %d/%d failed: %s", envelope_id, attempt, attempts, error)
        delay = _backoff(gw, attempt)  # one draw: the time recorded is the time waited
        with gw.engine.begin() as conn:
            conn.execute(envelopes_t.update().where(envelopes_t.c.id == envelope_id).values(
                last_error=error[:1000], next_attempt_at=gw.clock() + timedelta(seconds=delay)))
        if refused:
            break
        if attempt < attempts:
            gw.sleep(delay)
    if refused:
        if (until := outage.refused_access(envelope_id, error)) is not None:
            hold_waiting_until(gw, until)
    elif unreached == attempts and (until := outage.round_failed(error)) is not None:
        hold_waiting_until(gw, until)  # this one and every other waiting one: the scheduler's ticks too
    state = quarantine.after_failed_round(gw, envelope_id, statuses, run_id=run_id, refused=refused)
    return SendResult(envelope_id, state, len(statuses), error, access_refused=refused)


def apply_answer(gw: Gateway, answer: Acknowledged, *, run_id: int | None = None) -> SendResult:
    """Record a checked receipt: the envelope ``RECU`` (its events ``TRANSMIS``) or ``REJETE``."""
    _apply_receipt(gw, answer.envelope_id, answer.receipt, answer.receipt_bytes, run_id=run_id)
    return SendResult(answer.envelope_id, answer.receipt.status, answer.attempts)


def _record_rejected_without_receipt(gw: Gateway, envelope_id: str, exc: DocumentRejected, *,
                                     run_id: int | None) -> None:
    now = gw.clock()
    code = exc.code
    with gw.engine.begin() as conn:
        set_envelope_state(conn, envelope_id, EnvelopeState.REJETE.value, now=now,
                           cause=f"refusé par le DUDE sans accusé de réception ({code})",
                           reject_code=code, reject_message=exc.message[:1000], receipt_at=now)
        move_envelope_events(conn, envelope_id, from_states=[EventState.ENVOYE], to=EventState.REJETE, now=now,
                             cause=f"lot {envelope_id} refusé ({code})", run_id=run_id, code=code,
                             message=exc.message[:1000])


def _apply_receipt(gw: Gateway, envelope_id: str, receipt, receipt_bytes: bytes, *, run_id: int | None) -> None:
    now = gw.clock()
    with gw.engine.begin() as conn:
        conn.execute(documents_t.insert().values(envelope_id=envelope_id, kind=DOC_RECEIPT, at=now,
                                                 sha256=_sha256(receipt_bytes), body=receipt_bytes))
        if receipt.accepted:
            poll_at = now + timedelta(seconds=gw.settings.report_poll_interval_seconds)
            # Only from SIGNE/ENVOYE: a report pushed before this receipt was recorded has already
            # settled the envelope (TRAITE), which a late receipt must not undo.
            set_envelope_state(conn, envelope_id, EnvelopeState.RECU.value, now=now,
                               cause=f"accusé de réception : {receipt.events_received} événements reçus",
                               from_states=AWAITING_RECEIPT, receipt_at=now, next_poll_at=poll_at, last_error=None)
            move_envelope_events(conn, envelope_id, from_states=[EventState.ENVOYE], to=EventState.TRANSMIS,
                                 now=now, cause=f"accusé de réception du lot {envelope_id}", run_id=run_id)
        else:
            code = receipt.reject_code.value if receipt.reject_code else RejectCode.L04.value
            message = receipt.reject_message or RejectCode(code).label
            set_envelope_state(conn, envelope_id, EnvelopeState.REJETE.value, now=now,
                               cause=f"lot rejeté par le DUDE ({code})", from_states=AWAITING_RECEIPT, receipt_at=now,
                               reject_code=code, reject_message=message[:1000], last_error=None)
            move_envelope_events(conn, envelope_id, from_states=[EventState.ENVOYE], to=EventState.REJETE,
                                 now=now, cause=f"lot {envelope_id} rejeté en bloc ({code})", run_id=run_id,
                                 code=code, message=message[:1000])
    log.info("envelope %s: receipt %s", envelope_id, receipt.status)

