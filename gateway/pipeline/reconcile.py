"""Stage 3: DUDE's reports → each event ``ACCEPTE`` or ``REJETE``; silence → ``SANS_REPONSE`` (brief §4, §5).

A report may come by polling or pushed to the callback, twice, late, or never:

* it is trusted only after `open_signed` (safe parse, trusted signature, XSD) and only if every
  result it carries names an event of the envelope it claims to report on; otherwise it is refused
  whole and nothing changes; a polled report must also be the one asked for (a well-signed report of
  another envelope, or one replayed from an earlier night, is refused ``DOC_MISMATCH``); each refusal is
  logged with its code, and the envelope is polled again later as if nothing had come;
* a second copy of a report already applied changes nothing (``DUPLICATE``);
* a report arriving after its envelope was given up (``SANS_REPONSE``) is still applied: it is the
  best information there is;
* an envelope without a report ``report_timeout_seconds`` after its receipt is polled
  ``report_max_polls`` more times, then it and its events become ``SANS_REPONSE``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

import sqlalchemy as sa

from adapters.dude.messages import Report, open_signed, parse_report
from gateway.codes import EnvelopeState, EventState
from gateway.context import Gateway
from gateway.errors import (
    AccessRefused, DocumentRejected, NoReport, SchemaViolation, TransportError, UnexpectedDocument,
)
from gateway.lease import ahead_of_the_clock
from gateway.pipeline.outage import Outage, unavailable
from gateway.pipeline.transitions import move_envelope_events, set_envelope_state, set_event_states
from gateway.settings import Settings
from gateway.store.models import DOC_REPORT, documents_t, envelope_history_t, envelopes_t, events_t, history_t

log = logging.getLogger("gateway.reconcile")

#: Event states a report may settle (ENVOYE: the receipt was lost but DUDE did process the envelope).
SETTLEABLE = (EventState.ENVOYE, EventState.TRANSMIS, EventState.SANS_REPONSE)
AWAITING_REPORT = (EnvelopeState.RECU.value,)
_ACCEPTE, _REJETE = EventState.ACCEPTE.value, EventState.REJETE.value


class ReportOutcome(str, Enum):
    APPLIED = "APPLIED"
    DUPLICATE = "DUPLICATE"
    NOT_READY = "NOT_READY"
    #: DUDE refused the gateway itself (HTTP 401/403) at this poll: no report, and none asked after it in the pass.
    ACCESS_REFUSED = "ACCESS_REFUSED"


@dataclass(frozen=True, slots=True)
class AppliedReport:
    envelope_id: str
    outcome: ReportOutcome
    accepted: int = 0
    rejected: int = 0


def apply_report(gw: Gateway, data: bytes, *, via: str = "polling", expected: str | None = None) -> AppliedReport:
    """Check and apply one report document. Raises (and changes nothing) when it cannot be trusted.

    ``expected``: the envelope it was asked for (polling): a report of any other one, however well signed —
    another envelope's, or a report replayed from an earlier night — is refused (``DOC_MISMATCH``).
    Every refusal is logged with its code and the envelope or event *keys* involved, never a document's
    content (it may name people: brief §6).
    """
    try:
        return _apply_report(gw, data, via=via, expected=expected)
    except (DocumentRejected, UnexpectedDocument) as exc:
        log.warning("report refused %s (%s%s): %s", exc.code, via, f", for envelope {expected}" if expected else "",
                    loggable(exc))
        raise


def loggable(exc: DocumentRejected | UnexpectedDocument) -> str:
    """What a refusal may say in a log: its message, except for the XSD's (they may quote values: only where)."""
    if isinstance(exc, SchemaViolation):
        where = exc.errors[0].path if exc.errors else "?"
        return f"{len(exc.errors)} schema error(s), the first at {where}"
    return exc.message[:300]


def _apply_report(gw: Gateway, data: bytes, *, via: str, expected: str | None) -> AppliedReport:
    verified = open_signed(data, trust=gw.dude_trust, expected="CompteRendu",
                           max_bytes=gw.settings.max_document_bytes)
    report = parse_report(verified.root)
    if expected is not None and report.id_lot != expected:
        raise UnexpectedDocument(f"report for envelope {report.id_lot} received when polling for {expected} "
                                 "(another envelope's, or replayed)")
    now = gw.clock()
    with gw.engine.begin() as conn:
        envelope = _claim(conn, report.id_lot, now=now, via=via)
        if envelope is None:
            log.info("envelope %s: duplicate report (%s) ignored", report.id_lot, via)
            return AppliedReport(report.id_lot, ReportOutcome.DUPLICATE)
        ours = _events_of(conn, report)
        accepted, rejected = _changes(report, ours)
        cause = f"compte rendu du lot {report.id_lot} ({via})"
        applied = set_event_states(conn, rejected, now=now, envelope_id=report.id_lot, run_id=envelope.run_id,
                                   cause=cause, allowed_from=SETTLEABLE)
        named = set(accepted) | {c["id"] for c in rejected}
        if named == {event_id for event_id in ours.values() if event_id is not None}:
            # The usual report: every event of the envelope named. Accept all but the rejected ones in
            # one set-based move (one UPDATE, one INSERT … SELECT into the history), instead of one
            # UPDATE per event: a night's acceptances cost milliseconds, not seconds.
            applied += move_envelope_events(conn, report.id_lot, from_states=SETTLEABLE, to=EventState.ACCEPTE,
                                            now=now, cause=cause, run_id=envelope.run_id,
                                            except_ids={c["id"] for c in rejected})
        else:  # a report naming only some of the envelope's events: move exactly those
            applied += set_event_states(conn, [{"id": i, "state": _ACCEPTE, "code": None, "message": None}
                                               for i in accepted], now=now, envelope_id=report.id_lot,
                                        run_id=envelope.run_id, cause=cause, allowed_from=SETTLEABLE)
        conn.execute(documents_t.insert().values(envelope_id=report.id_lot, kind=DOC_REPORT, at=now,
                                                 sha256=hashlib.sha256(data).hexdigest(), body=data, note=via))
        late = envelope.state == EnvelopeState.SANS_REPONSE.value
        conn.execute(envelopes_t.update().where(envelopes_t.c.id == report.id_lot).values(
            accepted_count=report.accepted_count, rejected_count=report.rejected_count))
        conn.execute(envelope_history_t.insert().values(
            envelope_id=report.id_lot, state=EnvelopeState.TRAITE.value, at=now,
            cause=(f"compte rendu {'tardif ' if late else ''}rapproché ({via}) : "
                   f"{report.accepted_count} acceptés, {report.rejected_count} rejetés")[:255]))
    log.info("envelope %s: report applied (%s), %d events moved", report.id_lot, via, applied)
    return AppliedReport(report.id_lot, ReportOutcome.APPLIED, report.accepted_count, report.rejected_count)


#: Envelope states a report may settle: awaited (RECU), given up (SANS_REPONSE), or still unanswered
#: because the receipt was lost on the way back although DUDE processed the envelope.
_REPORTABLE = (EnvelopeState.RECU.value, EnvelopeState.SANS_REPONSE.value, EnvelopeState.ENVOYE.value,
               EnvelopeState.SIGNE.value)


#: Why a report is refused for an envelope in one of the other states (said in the log and the callback's answer).
_NOT_REPORTABLE = {
    EnvelopeState.REJETE.value: "DUDE rejected it as a whole",
    EnvelopeState.QUARANTAINE.value: "quarantined, its events were sealed again in smaller envelopes, "
                                     "whose reports settle them",
}


def _claim(conn: sa.Connection, envelope_id: str, *, now, via: str):
    """Take the envelope for this report, or return None if another copy of the report already did.

    The first statement is a guarded UPDATE: it takes the write lock (SQLite) or the row lock
    (PostgreSQL) and re-checks the state under it, so a report pushed to the callback and the same
    report fetched by a poll, or by another instance, are applied exactly once. Raises for a report
    on an envelope never sent, rejected as a whole or quarantined.
    """
    for _ in range(3):
        envelope = conn.execute(sa.select(envelopes_t.c.id, envelopes_t.c.state, envelopes_t.c.run_id)
                                .where(envelopes_t.c.id == envelope_id)).first()
        if envelope is None:
            raise UnexpectedDocument(f"report for envelope {envelope_id}, which this gateway never sent")
        if envelope.state == EnvelopeState.TRAITE.value:
            return None
        if envelope.state not in _REPORTABLE:
            raise UnexpectedDocument(f"report for envelope {envelope_id}, which is {envelope.state}: "
                                     + _NOT_REPORTABLE.get(envelope.state, "no report is awaited for it"))
        moved = conn.execute(envelopes_t.update().where(
            envelopes_t.c.id == envelope_id, envelopes_t.c.state == envelope.state).values(
            state=EnvelopeState.TRAITE.value, report_at=now, next_poll_at=None)).rowcount
        if moved:
            return envelope
    raise UnexpectedDocument(f"envelope {envelope_id} kept changing while its report ({via}) was applied")


def _events_of(conn: sa.Connection, report: Report) -> dict[tuple[str, int], int | None]:
    """(key, version) → id of every event that travelled in the reported envelope: its id while it is
    still in that envelope, None when a resend has since moved it to another one.

    The events still in the envelope are found through its index; only results naming something
    else send us to the history (every envelope an event travelled in is there), a rare case: a
    resend, or a report that is a forgery or a mix-up.
    """
    ours: dict[tuple[str, int], int | None] = {
        (key, version): event_id for event_id, key, version in conn.execute(
            sa.select(events_t.c.id, events_t.c.key, events_t.c.version)
            .where(events_t.c.envelope_id == report.id_lot)).tuples()}
    others = {r.key for r in report.results if (r.key, r.version) not in ours}
    if others:
        travelled = sa.select(history_t.c.event_id).where(history_t.c.envelope_id == report.id_lot)
        for start in range(0, len(others), 500):
            part = sorted(others)[start:start + 500]
            for event_id, key, version, envelope_id in conn.execute(
                    sa.select(events_t.c.id, events_t.c.key, events_t.c.version, events_t.c.envelope_id)
                    .where(events_t.c.key.in_(part), events_t.c.id.in_(travelled))).tuples():
                ours[(key, version)] = event_id if envelope_id == report.id_lot else None
    return ours


def _changes(report: Report, ours: dict[tuple[str, int], int | None]) -> tuple[list[int], list[dict]]:
    """The state changes a report asks for: (ids accepted, changes rejected). ``ours`` maps (key, version)
    of every event that travelled in the envelope to its id, or to None when it has since been resent in
    another envelope (the newer attempt decides its state: this result is ignored)."""
    accepted: list[int] = []
    rejected: list[dict] = []
    for result in report.results:
        found = (result.key, result.version)
        if found not in ours:
            raise UnexpectedDocument(
                f"report for envelope {report.id_lot} names event {result.key} v{result.version}, "
                "which was not in that envelope")
        event_id = ours[found]
        if event_id is None:
            continue
        if result.accepted:
            accepted.append(event_id)
        else:
            rejected.append({"id": event_id, "state": _REJETE, "code": result.code.value,
                             "message": (result.message or result.code.label)[:1000]})
    return accepted, rejected


def poll_reports(gw: Gateway, *, envelope_ids: list[str] | None = None, force: bool = False,
                 outage: Outage | None = None) -> list[AppliedReport]:
    """Ask DUDE for the reports that are due (or all awaited ones with ``force``); apply what comes.

    Once a poll finds DUDE unavailable (no answer, 502/503/504: `gateway.pipeline.outage`), the others are not
    asked, and one line says how many. Before, each one was asked and logged in turn, and a run waiting for its
    reports did that every half-second: 205 warnings in 20 s for 5 envelopes while DUDE was down.

    ``outage``, the caller's pass's: while sending found DUDE down, nothing is polled (`Outage.polling_stopped`);
    after a poll found it unavailable, the next call is a probe (`Outage.poll_failed`; the caller says when,
    `Outage.probe_in`): it asks the oldest awaited report, due or not (the question is DUDE's, not that
    report's), and the others only if DUDE answered it, which one line says. A probe that finds DUDE still
    unavailable is said at debug level only; no poll that found DUDE unavailable counts against its envelope
    (`_not_yet`): a run probing
    through an outage would otherwise give up an overdue envelope (``SANS_REPONSE``) for DUDE's absence."""
    if outage is not None and outage.polling_stopped():
        return []
    probing = outage is not None and outage.probe_in() is not None
    now = gw.clock()
    awaited = sa.select(envelopes_t.c.id).where(envelopes_t.c.state.in_(AWAITING_REPORT))
    if envelope_ids is not None:
        awaited = awaited.where(envelopes_t.c.id.in_(envelope_ids))
    next_poll = envelopes_t.c.next_poll_at
    query = awaited if force else awaited.where(sa.or_(
        next_poll.is_(None), next_poll <= now,
        # set by a clock that was ahead (a run made while it was): past, not hours of silence (a drill)
        ahead_of_the_clock(next_poll, now, timedelta(seconds=poll_spacing(gw.settings)))))
    with gw.engine.connect() as conn:
        due = list(conn.execute(query.order_by(envelopes_t.c.receipt_at, envelopes_t.c.id)).scalars())
        if probing:
            probe = conn.execute(awaited.order_by(envelopes_t.c.receipt_at, envelopes_t.c.id).limit(1)).scalar()
            due = [probe, *(i for i in due if i != probe)] if probe is not None else []
    results = []
    for position, envelope_id in enumerate(due):
        try:
            data = gw.client.get_report(envelope_id)
        except NoReport:
            data = None
        except AccessRefused as exc:  # not this report's doing: the others would be refused alike
            _refused_access(gw, envelope_id, exc, others=len(due) - position - 1, outage=outage, probe=probing)
            results.append(AppliedReport(envelope_id, ReportOutcome.ACCESS_REFUSED))
            break
        except TransportError as exc:
            if unavailable(getattr(exc, "status_code", None)):
                _found_unavailable(gw, envelope_id, exc, others=len(due) - position - 1, outage=outage,
                                   probe=probing)
                results.append(AppliedReport(envelope_id, ReportOutcome.NOT_READY))
                break
            log.warning("envelope %s: report poll failed: %s", envelope_id, exc)
            data = None
        if probing:  # DUDE answered the probe, whatever it said: it is there, the others are asked now
            probing = False
            outage.poll_answered()
            # At the level of the line that said DUDE unavailable: whoever saw that one sees this one.
            log.warning("envelope %s: DUDE answers report polls again; %d other report(s) due polled now",
                        envelope_id, len(due) - 1)
        if data is not None:
            try:
                results.append(apply_report(gw, data, via="polling", expected=envelope_id))
                continue
            except (DocumentRejected, UnexpectedDocument):  # refused and logged: as if nothing had come
                pass
        _not_yet(gw, envelope_id)
        results.append(AppliedReport(envelope_id, ReportOutcome.NOT_READY))
    return results


def _found_unavailable(gw: Gateway, envelope_id: str, exc: TransportError, *, others: int, outage: Outage | None,
                       probe: bool) -> None:
    """A poll found DUDE unavailable: said once (a probe finding it still so, at debug level only), and the
    pass's polling held back until its probe (`Outage.poll_failed`)."""
    backoff = outage.poll_failed() if outage is not None else None
    if probe:
        log.debug("envelope %s: report probe failed: %s; DUDE still unavailable, next probe in %.2f s",
                  envelope_id, exc, backoff)
        return
    log.warning("envelope %s: report poll failed: %s; DUDE unavailable: %d other report(s) due not polled until "
                "it answers again", envelope_id, exc, others)
    _not_yet(gw, envelope_id, answered=False)


def _refused_access(gw: Gateway, envelope_id: str, exc: AccessRefused, *, others: int, outage: Outage | None,
                    probe: bool) -> None:
    """A poll DUDE answered by refusing the gateway itself (HTTP 401/403, `AccessRefused`). The pass asks no other
    report before a probe after a back-off (`Outage.poll_failed`), as for DUDE unavailable: the others would be
    refused alike, and a run waiting for its reports asked every one of them every half-second, 720 refused polls
    in its minute (a drill found it), each a warning. A poll of a report that was due counts against its envelope
    (`_not_yet`: DUDE, or what stands before it, answered; an overdue envelope is given up in time); a probe does
    not: it asks the oldest report, due or not, every few seconds, and counted, it gave an overdue envelope up
    (``SANS_REPONSE``) within seconds rather than ``report_max_polls`` spaced polls."""
    backoff = outage.poll_failed() if outage is not None else None
    if probe:
        log.debug("envelope %s: report probe refused: %s; next probe in %.2f s", envelope_id, exc, backoff)
    else:
        log.warning("envelope %s: report poll refused: %s; DUDE refuses the gateway: %d other report(s) due not "
                    "polled before a probe", envelope_id, exc, others)
    _not_yet(gw, envelope_id, answered=not probe)


def poll_spacing(settings: Settings) -> float:
    """Seconds between two polls of an overdue report (its ``report_max_polls`` spread over a quarter of the
    time-out): the longest any poll is put off."""
    return max(settings.report_poll_interval_seconds,
               settings.report_timeout_seconds / (4 * settings.report_max_polls))


def _not_yet(gw: Gateway, envelope_id: str, *, answered: bool = True) -> None:
    """No report for ``envelope_id`` this time: its next poll is set, and past ``report_timeout_seconds`` the poll
    is counted, ``report_max_polls`` of them making it ``SANS_REPONSE``. Not ``answered`` (DUDE unavailable: no
    answer, 502/503/504), it is not counted: DUDE said nothing of that report, and each pass of the scheduler
    through an outage of an hour or two used to spend one of an overdue envelope's polls, and give it up."""
    now = gw.clock()
    s = gw.settings
    with gw.engine.begin() as conn:
        env = conn.execute(sa.select(envelopes_t.c.receipt_at, envelopes_t.c.polls)
                           .where(envelopes_t.c.id == envelope_id)).one()
        overdue = env.receipt_at is not None and now - env.receipt_at >= timedelta(seconds=s.report_timeout_seconds)
        if not overdue:
            conn.execute(envelopes_t.update().where(envelopes_t.c.id == envelope_id).values(
                next_poll_at=now + timedelta(seconds=s.report_poll_interval_seconds)))
            return
        polls = env.polls + 1
        spacing = poll_spacing(s)
        if not answered:
            conn.execute(envelopes_t.update().where(envelopes_t.c.id == envelope_id).values(
                next_poll_at=now + timedelta(seconds=spacing)))
            return
        if polls < s.report_max_polls:
            conn.execute(envelopes_t.update().where(envelopes_t.c.id == envelope_id).values(
                polls=polls, next_poll_at=now + timedelta(seconds=spacing)))
            log.warning("envelope %s: no report after the time-out, polled again (%d/%d)",
                        envelope_id, polls, s.report_max_polls)
            return
        set_envelope_state(conn, envelope_id, EnvelopeState.SANS_REPONSE.value, now=now, polls=polls,
                           next_poll_at=None,
                           cause=f"pas de compte rendu {s.report_timeout_seconds:.0f} s après l'accusé "
                                 f"de réception, ni après {polls} relances")
        moved = move_envelope_events(conn, envelope_id, from_states=[EventState.TRANSMIS],
                                     to=EventState.SANS_REPONSE, now=now,
                                     cause=f"lot {envelope_id} sans compte rendu")
    log.warning("envelope %s: SANS_REPONSE, %d events without an answer", envelope_id, moved)


def awaiting(gw: Gateway, envelope_ids: list[str] | None = None) -> int:
    """How many envelopes still await their report."""
    query = sa.select(sa.func.count()).select_from(envelopes_t).where(envelopes_t.c.state.in_(AWAITING_REPORT))
    if envelope_ids is not None:
        query = query.where(envelopes_t.c.id.in_(envelope_ids))
    with gw.engine.connect() as conn:
        return conn.execute(query).scalar_one()
